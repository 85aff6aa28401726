use super::*;

struct Tree {
    _t: tempfile::TempDir,
    main: PathBuf,
    dirs: [PathBuf; 3],
}

fn tree(main: &str) -> Tree {
    let t = tempfile::tempdir().unwrap();
    let dirs = ["usr", "etc", "run"].map(|d| t.path().join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let main_path = t.path().join("holdfast.toml");
    let dirs_toml = dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(&main_path, format!("config_dirs = [{dirs_toml}]\n{main}")).unwrap();
    Tree {
        _t: t,
        main: main_path,
        dirs,
    }
}

#[test]
fn defaults_when_nothing_is_there() {
    let t = tempfile::tempdir().unwrap();
    let s = load(&t.path().join("absent.toml"), false).unwrap();
    assert_eq!(s.settings.lock_root, Path::new("/run/holdfast/locks"));
    assert_eq!(s.settings.inhibit_what, vec![InhibitWhat::Shutdown]);
    assert_eq!(s.source("lock_root"), &Source::Default);
    let err = load(&t.path().join("absent.toml"), true).unwrap_err();
    assert!(
        err.to_string().ends_with("absent.toml: file not found"),
        "{err}"
    );
}

#[test]
fn later_dropins_win_and_dev_null_masks() {
    let t = tree("lock_root = \"/run/a\"\nstate_dir = \"/var/a\"\n");
    std::fs::write(
        t.dirs[0].join("10-x.toml"),
        "lock_root = \"/run/b\"\n[inhibit]\nwhat = [\"sleep\", \"shutdown\"]\n",
    )
    .unwrap();
    std::fs::write(t.dirs[0].join("20-y.toml"), "lock_root = \"/run/c\"\n").unwrap();
    // /etc's 20-y.toml replaces /usr/lib's; /run masks 30-z.
    std::fs::write(t.dirs[1].join("20-y.toml"), "state_dir = \"/var/d\"\n").unwrap();
    std::fs::write(t.dirs[1].join("30-z.toml"), "lock_root = \"/run/z\"\n").unwrap();
    std::os::unix::fs::symlink("/dev/null", t.dirs[2].join("30-z.toml")).unwrap();
    let s = load(&t.main, true).unwrap();
    assert_eq!(s.settings.lock_root, Path::new("/run/b"));
    assert_eq!(s.settings.state_dir, Path::new("/var/d"));
    assert_eq!(
        s.settings.inhibit_what,
        vec![InhibitWhat::Shutdown, InhibitWhat::Sleep]
    );
    assert_eq!(s.settings.inhibit_what_arg(), "shutdown:sleep");
    assert_eq!(
        s.source("lock_root"),
        &Source::File(t.dirs[0].join("10-x.toml"))
    );
    assert_eq!(
        s.source("state_dir"),
        &Source::File(t.dirs[1].join("20-y.toml"))
    );
    let shown = s.render();
    assert!(shown.contains("lock_root = \"/run/b\""), "{shown}");
    assert!(shown.contains("10-x.toml"), "{shown}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let t = tree("lock_root = \"/run/a\"\nlok_root = \"/x\"\n");
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.file, t.main);
    assert_eq!(err.line, Some(3));
    assert!(err.reason.contains("unknown field `lok_root`"), "{err}");
}

#[test]
fn wrong_type_and_bad_values() {
    let t = tree("lock_root = 5\n");
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.line, Some(2));
    assert!(err.reason.contains("invalid type"), "{err}");

    let t = tree("[inhibit]\nwhat = [\"reboot\"]\n");
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("inhibit.what"));
    assert_eq!(err.line, Some(3));
    assert!(
        err.to_string().contains("\"reboot\" is not one of"),
        "{err}"
    );

    let t = tree("lock_root = \"relative/dir\"\n");
    let err = load(&t.main, true).unwrap_err();
    assert!(
        err.to_string()
            .contains(":2: lock_root: \"relative/dir\" is not an absolute path"),
        "{err}"
    );

    let t = tree("[api]\ntcp = \"nowhere\"\n");
    assert_eq!(
        load(&t.main, true).unwrap_err().key.as_deref(),
        Some("api.tcp")
    );
}

#[test]
fn dropin_errors_name_the_dropin() {
    let t = tree("");
    std::fs::write(
        t.dirs[1].join("50-bad.toml"),
        "[engine]\nsocket = \"/s\"\nspeed = 3\n",
    )
    .unwrap();
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.file, t.dirs[1].join("50-bad.toml"));
    assert_eq!(err.line, Some(3));
    std::fs::write(t.dirs[1].join("50-bad.toml"), "config_dirs = [\"/x\"]\n").unwrap();
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("config_dirs"));
}

#[test]
fn syntax_error_has_a_line() {
    let t = tree("lock_root = \"/a\n");
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.line, Some(2));
}

/// Loads off the test thread so a blocking read fails the test instead
/// of hanging it.
fn load_soon(main: &Path) -> Result<Sourced, ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let main = main.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(load(&main, true));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("load returns at once")
}

#[test]
fn dropin_that_is_not_a_file_is_refused() {
    let t = tree("");
    let zero = t.dirs[1].join("50-zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = load_soon(&t.main).unwrap_err();
    assert_eq!(err.file, zero);
    assert!(err.reason.contains("character device"), "{err}");
    std::fs::remove_file(&zero).unwrap();

    let fifo = t.dirs[2].join("60-fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = load_soon(&t.main).unwrap_err();
    assert_eq!(err.file, fifo);
    assert_eq!(
        err.to_string(),
        format!("{}: is a FIFO, not a regular file", fifo.display())
    );
}

#[test]
fn oversized_file_is_refused() {
    let t = tree("");
    let big = t.dirs[0].join("10-big.toml");
    let mut text = "# padding\n".repeat((MAX_FILE / 10) as usize + 1);
    text.push_str("lock_root = \"/run/big\"\n");
    std::fs::write(&big, text).unwrap();
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.file, big);
    assert!(err.reason.contains("larger than"), "{err}");
}

#[test]
fn non_utf8_file_is_refused_with_its_line() {
    let t = tree("");
    let bad = t.dirs[1].join("20-latin1.toml");
    std::fs::write(&bad, b"# ok\n# caf\xe9\n").unwrap();
    let err = load(&t.main, true).unwrap_err();
    assert_eq!(err.file, bad);
    assert_eq!(err.line, Some(2));
    assert!(err.reason.contains("not UTF-8"), "{err}");
}

#[test]
fn dev_null_symlink_still_masks() {
    let t = tree("lock_root = \"/run/a\"\n");
    std::fs::write(t.dirs[0].join("10-x.toml"), "lock_root = \"/run/x\"\n").unwrap();
    std::os::unix::fs::symlink("/dev/null", t.dirs[2].join("10-x.toml")).unwrap();
    // A mask with nothing under it is fine too.
    std::os::unix::fs::symlink("/dev/null", t.dirs[2].join("99-none.toml")).unwrap();
    let s = load(&t.main, true).unwrap();
    assert_eq!(s.settings.lock_root, Path::new("/run/a"));
    assert_eq!(s.files, vec![t.main.clone()]);
}

#[test]
fn fleet_identity_keys() {
    let t = tree("[fleet]\nid = \"dev-7\"\ngroup = \"eu-west.1\"\n");
    let s = load(&t.main, true).unwrap();
    assert_eq!(s.settings.fleet.id.as_deref(), Some("dev-7"));
    assert_eq!(s.settings.fleet.group, "eu-west.1");
    assert_eq!(s.settings.fleet.lock, None);
    let t = tree("");
    assert_eq!(load(&t.main, true).unwrap().settings.fleet.group, "default");
    let t = tree("[fleet]\ngroup = \"a_b\"\n");
    let e = load(&t.main, true).unwrap_err().to_string();
    assert!(
        e.ends_with(
            ":3: fleet.group: \"a_b\" does not match ^[a-zA-Z0-9.-]+$ (1 to 128 characters)"
        ),
        "{e}"
    );
    let t = tree("[fleet]\nname = \"x\"\n");
    let e = load(&t.main, true).unwrap_err().to_string();
    assert!(e.contains(":3: unknown field `name`"), "{e}");
}

#[cfg(not(feature = "fleet"))]
#[test]
fn fleet_lock_needs_the_feature() {
    let t = tree("[fleet.lock]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n");
    let e = load(&t.main, true).unwrap_err().to_string();
    assert!(
        e.contains(": fleet.lock: holdfast was built without fleet support"),
        "{e}"
    );
}

#[cfg(feature = "fleet")]
#[test]
fn fleet_lock_backends() {
    use crate::config::{LockBackend, TlsFiles};
    let t = tree(
        "[fleet.lock]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"http://10.0.0.2:2379/\"]\nstale_after = \"1h\"\n",
    );
    let l = load(&t.main, true).unwrap().settings.fleet.lock.unwrap();
    assert_eq!(
        l.backend,
        LockBackend::Etcd {
            endpoints: vec![
                "http://127.0.0.1:2379".into(),
                "http://10.0.0.2:2379".into()
            ],
            user: None,
            password_file: None,
            tls: Default::default(),
        }
    );
    assert!(l.reboots && !l.updates);
    assert_eq!(l.stale_after, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(l.lease_ttl, std::time::Duration::from_secs(30));
    let t = tree(
        "[fleet.lock]\nbackend = \"fleetlock\"\nurl = \"http://airlock:3333\"\nreboots = false\nupdates = true\n",
    );
    let l = load(&t.main, true).unwrap().settings.fleet.lock.unwrap();
    assert_eq!(
        l.backend,
        LockBackend::Fleetlock {
            url: "http://airlock:3333".into(),
            tls: Default::default(),
        }
    );
    assert!(!l.reboots && l.updates);
    let t = tree(
        "[fleet.lock]\nbackend = \"etcd\"\nendpoints = [\"https://10.0.0.2:2379\", \"http://127.0.0.1:2379\"]\nca_file = \"/etc/holdfast/etcd-ca.pem\"\ncert_file = \"/etc/holdfast/etcd.pem\"\nkey_file = \"/etc/holdfast/etcd.key\"\n",
    );
    let l = load(&t.main, true).unwrap().settings.fleet.lock.unwrap();
    assert_eq!(
        l.backend,
        LockBackend::Etcd {
            endpoints: vec![
                "https://10.0.0.2:2379".into(),
                "http://127.0.0.1:2379".into()
            ],
            user: None,
            password_file: None,
            tls: TlsFiles {
                ca_file: Some("/etc/holdfast/etcd-ca.pem".into()),
                cert_file: Some("/etc/holdfast/etcd.pem".into()),
                key_file: Some("/etc/holdfast/etcd.key".into()),
            },
        }
    );
    let t = tree(
        "[fleet.lock]\nbackend = \"fleetlock\"\nurl = \"https://airlock.example/\"\nca_file = \"/etc/holdfast/ca.pem\"\n",
    );
    let l = load(&t.main, true).unwrap().settings.fleet.lock.unwrap();
    assert_eq!(
        l.backend,
        LockBackend::Fleetlock {
            url: "https://airlock.example".into(),
            tls: TlsFiles {
                ca_file: Some("/etc/holdfast/ca.pem".into()),
                ..Default::default()
            },
        }
    );
    for (text, want) in [
        (
            "backend = \"zk\"",
            "fleet.lock.backend: \"zk\" is not one of",
        ),
        ("backend = \"etcd\"", "fleet.lock.endpoints: is required"),
        (
            "backend = \"fleetlock\"\nendpoints = [\"http://a:1\"]",
            "fleet.lock.endpoints: is not a key of backend = \"fleetlock\"",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\nca_file = \"/etc/ca.pem\"",
            "fleet.lock.ca_file: is for https, but every endpoint is http://",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"https://a:1\"]\ncert_file = \"/etc/c.pem\"",
            "fleet.lock.cert_file: cert_file and key_file go together",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"https://a:1\"]\nkey_file = \"/etc/k.pem\"",
            "fleet.lock.cert_file: cert_file and key_file go together",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"https://a:1\"]\nca_file = \"ca.pem\"",
            "fleet.lock.ca_file: \"ca.pem\" is not an absolute path",
        ),
        (
            "backend = \"fleetlock\"\nurl = \"https://a\"\ncert_file = \"/c\"\nkey_file = \"/k\"",
            "fleet.lock.cert_file: is not a key of backend = \"fleetlock\"",
        ),
        (
            "backend = \"fleetlock\"\nurl = \"http://a\"\nca_file = \"/etc/ca.pem\"",
            "fleet.lock.ca_file: is for https, but url is http://",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"https://a:1/?x\"]",
            "fleet.lock.endpoints: \"https://a:1/?x\": has a query",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\nlease_ttl = \"1s\"",
            "fleet.lock.lease_ttl: \"1s\" is not a duration",
        ),
        (
            "backend = \"etcd\"\nendpoints = []",
            "fleet.lock.endpoints: names no endpoint",
        ),
        (
            "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\nuser = \"u\"",
            "user and password_file go together",
        ),
        (
            "backend = \"fleetlock\"\nurl = \"ftp://x\"",
            "fleet.lock.url: \"ftp://x\": is not an http:// or https:// URL",
        ),
        (
            "backend = \"etcd\"\nendpoint = []",
            "unknown field `endpoint`",
        ),
    ] {
        let t = tree(&format!("[fleet.lock]\n{text}\n"));
        let e = load(&t.main, true).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.contains("holdfast.toml:"), "{e}");
    }
}

#[cfg(not(feature = "fleet"))]
#[test]
fn fleet_hawkbit_needs_the_feature() {
    let t = tree("[fleet.hawkbit]\nurl = \"http://127.0.0.1:8080\"\n");
    let e = load(&t.main, true).unwrap_err().to_string();
    assert!(
        e.contains(": fleet.hawkbit: holdfast was built without fleet support"),
        "{e}"
    );
}

#[cfg(feature = "fleet")]
#[test]
fn fleet_hawkbit_settings() {
    use crate::config::{HawkbitAuth, LocalTarget};
    let t = tree("[fleet.hawkbit]\nurl = \"http://127.0.0.1:8080/\"\n");
    let h = load(&t.main, true).unwrap().settings.fleet.hawkbit.unwrap();
    assert_eq!(h.url, "http://127.0.0.1:8080");
    assert_eq!(h.tenant, "DEFAULT");
    assert_eq!(h.controller_id, None);
    assert_eq!(h.auth, HawkbitAuth::None);
    assert_eq!(h.local_target, LocalTarget::Refuse);
    assert_eq!(h.max_download, 2 << 30);
    let t = tree(
        "[fleet.hawkbit]\nurl = \"http://hawkbit:8080\"\ntenant = \"t1\"\ncontroller_id = \"dev-1\"\ntoken_file = \"/etc/holdfast/hawkbit-token\"\nlocal_target = \"allow\"\nmax_download = \"512MiB\"\n",
    );
    let h = load(&t.main, true).unwrap().settings.fleet.hawkbit.unwrap();
    assert_eq!(
        (h.tenant.as_str(), h.controller_id.as_deref()),
        ("t1", Some("dev-1"))
    );
    assert_eq!(
        h.auth,
        HawkbitAuth::TargetToken("/etc/holdfast/hawkbit-token".into())
    );
    assert_eq!(
        (h.local_target, h.max_download),
        (LocalTarget::Allow, 512 << 20)
    );
    for (text, want) in [
        ("tenant = \"x\"", "fleet.hawkbit.url: is required"),
        ("url = \"ftp://h\"", "fleet.hawkbit.url: \"ftp://h\""),
        (
            "url = \"http://h\"\ntenant = \"a/b\"",
            "fleet.hawkbit.tenant: \"a/b\" is not",
        ),
        (
            "url = \"http://h\"\ntoken_file = \"/a\"\ngateway_token_file = \"/b\"",
            "give token_file or gateway_token_file, not both",
        ),
        (
            "url = \"http://h\"\ntoken_file = \"token\"",
            "fleet.hawkbit.token_file: \"token\" is not an absolute path",
        ),
        (
            "url = \"http://h\"\nlocal_target = \"merge\"",
            "fleet.hawkbit.local_target: \"merge\" is not one of",
        ),
        (
            "url = \"http://h\"\nmax_download = \"1KiB\"",
            "fleet.hawkbit.max_download: \"1KiB\" is not a size",
        ),
        ("url = \"http://h\"\ntoken = \"x\"", "unknown field `token`"),
    ] {
        let t = tree(&format!("[fleet.hawkbit]\n{text}\n"));
        let e = load(&t.main, true).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.contains("holdfast.toml:"), "{e}");
    }
}

#[test]
fn a_lock_root_that_is_not_holdfasts_is_refused_with_its_line() {
    let t = tree("state_dir = \"/var/a\"\n");
    std::fs::write(t.dirs[1].join("50-root.toml"), "\n\nlock_root = \"/\"\n").unwrap();
    let e = load(&t.main, true).unwrap_err();
    assert_eq!(e.file, t.dirs[1].join("50-root.toml"));
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("lock_root")));
    assert!(e.reason.starts_with("/: / is a system directory"), "{e}");
    // A populated directory that is not a lock tree.
    let data = t._t.path().join("data");
    std::fs::create_dir_all(data.join("tmp/qahx")).unwrap();
    std::fs::write(data.join("tmp/qahx/key"), b"secret").unwrap();
    let line = format!("lock_root = {:?}\n", data.display().to_string());
    std::fs::write(t.dirs[1].join("50-root.toml"), line).unwrap();
    let e = load(&t.main, true).unwrap_err().to_string();
    assert!(e.contains(":1: lock_root: "), "{e}");
    assert!(e.contains("not empty and not holdfast's"), "{e}");
    // The state dir above it.
    let line = format!("lock_root = {:?}\n", "/var/a/locks");
    std::fs::write(t.dirs[1].join("50-root.toml"), line).unwrap();
    let e = load(&t.main, true).unwrap_err().to_string();
    assert!(e.contains("inside holdfast's state_dir /var/a"), "{e}");
}
