use super::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn made_once_then_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let k = load_or_create_key(&state).unwrap();
    assert_eq!(k.len(), 32);
    assert_eq!(mode(&state.join("api-key")), 0o600);
    assert_eq!(load_or_create_key(&state).unwrap(), k);
    // Only the key is left in the directory.
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
}

#[test]
fn a_hand_written_key_is_used_and_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("api-key");
    std::fs::write(&p, "my-own-key_0123456789\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        load_or_create_key(dir.path()).unwrap(),
        "my-own-key_0123456789"
    );
    assert_eq!(mode(&p), 0o600);
}

#[test]
fn a_bad_key_file_is_an_error_and_is_left_alone() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty"),
        (b" \n", "empty"),
        (b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "not a key"),
        (b"\xff\xfe0123456789abcdef", "not text"),
        (b"0123", "too short"),
        (b"0123456789abcdef&x=1", "not a key"),
    ];
    for (content, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api-key");
        std::fs::write(&p, content).unwrap();
        let e = load_or_create_key(dir.path()).unwrap_err();
        assert!(matches!(e, KeyError::Damaged { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(why) && msg.contains("api-key"), "{msg}");
        assert_eq!(&std::fs::read(&p).unwrap(), content);
    }
}

#[test]
fn links_and_other_files_are_not_followed_nor_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("api-key");
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "0123456789abcdef0123").unwrap();
    std::os::unix::fs::symlink(&target, &p).unwrap();
    let e = load_or_create_key(dir.path()).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(&p).unwrap();
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = load_or_create_key(dir.path()).unwrap_err();
    assert!(e.to_string().contains("special file"), "{e}");
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    let e = load_or_create_key(dir.path()).unwrap_err();
    assert!(e.to_string().contains("a directory"), "{e}");
}

#[test]
fn a_read_error_is_an_error_not_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    // The "state dir" is a file: ENOTDIR, not "no key yet".
    let state = dir.path().join("state");
    std::fs::write(&state, "a file").unwrap();
    let e = load_or_create_key(&state).unwrap_err();
    assert!(matches!(e, KeyError::Read { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "a file");
}

#[test]
fn app_keys_are_made_once_apart_from_the_device_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let app = AppName::new("app1").unwrap();
    let device = load_or_create_key(&state).unwrap();
    let k = load_or_create_app_key(&state, &app).unwrap();
    assert_ne!(k, device);
    let p = state.join("api-keys/app1");
    assert_eq!(mode(&p), 0o600);
    assert_eq!(mode(&state.join("api-keys")), 0o700);
    assert_eq!(load_or_create_app_key(&state, &app).unwrap(), k);
    // Damaged: an error, the file left alone.
    std::fs::write(&p, "short").unwrap();
    let e = load_or_create_app_key(&state, &app).unwrap_err();
    assert!(e.to_string().contains("api-keys/app1"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "short");
}

#[test]
fn rotating_replaces_the_file_and_follows_no_link() {
    let dir = tempfile::tempdir().unwrap();
    let app = AppName::new("app1").unwrap();
    let old = load_or_create_app_key(dir.path(), &app).unwrap();
    let p = app_key_path(dir.path(), &app);
    let new = rotate_key(&p).unwrap();
    assert_ne!(new, old);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), new);
    assert_eq!(mode(&p), 0o600);
    assert_eq!(load_or_create_app_key(dir.path(), &app).unwrap(), new);
    // A symlink is replaced, its target untouched.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "0123456789abcdef0123").unwrap();
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
    let k = rotate_key(&p).unwrap();
    assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), k);
    assert_eq!(
        std::fs::read_to_string(&elsewhere).unwrap(),
        "0123456789abcdef0123"
    );
    // Nothing but the keys is left behind.
    let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["app1"]);
    remove_app_key(dir.path(), &app).unwrap();
    remove_app_key(dir.path(), &app).unwrap();
    assert!(!p.exists());
}

#[test]
fn each_key_reaches_what_it_should_and_debug_hides_them() {
    let mut keys = ApiKeys::new(Some("device-key-0123456789".into()));
    let app1 = AppName::new("app1").unwrap();
    keys.set_app(app1.clone(), "app1-key-0123456789".into());
    keys.set_app(AppName::new("app2").unwrap(), "app2-key-0123456789".into());
    assert_eq!(keys.scope_of("device-key-0123456789"), Some(Scope::Device));
    assert_eq!(
        keys.scope_of("app1-key-0123456789"),
        Some(Scope::App(app1.clone()))
    );
    assert_eq!(keys.scope_of("app1-key-012345678"), None);
    assert_eq!(keys.scope_of(""), None);
    assert!(ApiKeys::new(None).scope_of("").is_none());
    let shown = format!("{keys:?}");
    assert!(!shown.contains("key-0123"), "{shown}");
    assert!(keys.remove_app(&app1));
    assert_eq!(keys.scope_of("app1-key-0123456789"), None);
}

#[test]
fn a_key_someone_else_owns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("api-key");
    std::fs::write(&p, "0123456789abcdef0123").unwrap();
    let other = nix::unistd::geteuid().as_raw() + 1;
    if std::os::unix::fs::chown(&p, Some(other), None).is_err() {
        return; // only root can give a file away
    }
    let e = load_or_create_key(dir.path()).unwrap_err();
    assert!(matches!(e, KeyError::Owner { .. }), "{e}");
}

#[test]
fn the_app_key_directory_is_made_private_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(!app_key_dir(&state, false).unwrap(), "missing, not made");
    assert!(app_key_dir(&state, true).unwrap());
    assert_eq!(mode(&state.join("api-keys")), 0o700);
    // Writable by others: refused, named, with what to do.
    let keys = state.join("api-keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o777)).unwrap();
    let app = AppName::new("app1").unwrap();
    let e = load_or_create_app_key(&state, &app).unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, KeyError::Dir { .. }), "{e}");
    assert!(
        shown.contains("api-keys") && shown.contains("chmod 0700"),
        "{shown}"
    );
    assert!(!keys.join("app1").exists(), "no key made there");
    // Not a directory.
    std::fs::remove_dir(&keys).unwrap();
    std::fs::write(&keys, "").unwrap();
    let e = load_or_create_app_key(&state, &app).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn a_linked_app_key_directory_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&elsewhere)
        .unwrap();
    std::os::unix::fs::symlink(&elsewhere, state.join("api-keys")).unwrap();
    let app = AppName::new("app1").unwrap();
    let e = load_or_create_app_key(&state, &app).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    // Nor is anything removed or replaced through it.
    std::fs::write(elsewhere.join("app1"), "0123456789abcdef0123").unwrap();
    assert!(remove_app_key(&state, &app).is_err());
    assert!(elsewhere.join("app1").exists());
}

#[test]
fn an_app_key_directory_someone_else_owns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&keys)
        .unwrap();
    let other = nix::unistd::geteuid().as_raw() + 1;
    if std::os::unix::fs::chown(&keys, Some(other), None).is_err() {
        return; // only root can give a directory away
    }
    let e = app_key_dir(dir.path(), true).unwrap_err();
    assert!(e.to_string().contains("belongs to uid"), "{e}");
}

#[test]
fn a_rotated_app_key_is_accepted_until_dropped() {
    let app1 = AppName::new("app1").unwrap();
    let mut keys = ApiKeys::new(Some("device-key-0123456789".into()));
    keys.set_app(app1.clone(), "first-key-0123456789".into());
    keys.rotate_app(app1.clone(), "second-key-0123456789".into());
    keys.rotate_app(app1.clone(), "third-key-0123456789".into());
    let app = Some(Scope::App(app1.clone()));
    assert_eq!(keys.scope_of("third-key-0123456789"), app);
    // What the containers were made with, not the one between.
    assert_eq!(keys.scope_of("first-key-0123456789"), app);
    assert_eq!(keys.scope_of("second-key-0123456789"), None);
    assert_eq!(keys.previous_apps().collect::<Vec<_>>(), [&app1]);
    assert!(!format!("{keys:?}").contains("first-key"));
    assert!(keys.drop_previous(&app1));
    assert_eq!(keys.scope_of("first-key-0123456789"), None);
    assert_eq!(keys.scope_of("third-key-0123456789"), app);
    // Gone with its app.
    keys.rotate_app(app1.clone(), "fourth-key-0123456789".into());
    assert!(keys.remove_app(&app1));
    assert_eq!(keys.scope_of("third-key-0123456789"), None);
}
