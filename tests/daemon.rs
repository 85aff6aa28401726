//! holdfastd as a whole: self-locking, crash leftovers, config handling,
//! the D-Bus contract and policy, journald output.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{ok, wait_for, Env, REPO};
use nix::sys::signal::Signal;

#[tokio::test]
async fn self_locking_is_all_or_nothing_against_a_contended_service() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.service_dir("app1/worker");
    ok(&env.sh("lockfile -r0 $L/app1/worker/updates.lock"));
    env.start_daemon().await;

    let out = env.cli(&["take", "app1"]);
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app1/worker is locked (updates.lock exists); no lock of app app1 was taken"),
        "{err}"
    );
    for f in ["updates.lock", "resin-updates.lock"] {
        assert!(
            !env.locks().join("app1/main").join(f).exists(),
            "partial own lock {f} left behind"
        );
    }
    let e = env
        .supervisor()
        .await
        .take_locks("app1", &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("org.holdfast.Supervisor1.Error.Locked"),
        "{e}"
    );

    ok(&env.sh("rm -f $L/app1/worker/updates.lock"));
    env.wait_locks(&[]).await;
    let out = ok(&env.cli(&["take", "app1"]));
    assert!(out.contains("app1/main, app1/worker"), "{out}");
    for s in ["main", "worker"] {
        for f in ["updates.lock", "resin-updates.lock"] {
            let md = std::fs::symlink_metadata(env.locks().join("app1").join(s).join(f)).unwrap();
            assert_eq!((md.uid(), md.gid()), (65534, 65534));
        }
    }
    // An app trying to lock now fails: it knows an update is coming.
    assert!(!env
        .sh("set -C; : > $L/app1/main/updates.lock")
        .status
        .success());
    let locks = env.wait_locks(&["app1/main", "app1/worker"]).await;
    assert!(locks.iter().all(|l| l.owner == "holdfast"), "{locks:?}");
    env.wait_inhibitor(Some("update lock held by app1/main, app1/worker"))
        .await;

    let out = ok(&env.cli(&["release", "app1"]));
    assert!(out.contains("released 4"), "{out}");
    env.wait_locks(&[]).await;
    env.wait_inhibitor(None).await;
    let e = env
        .supervisor()
        .await
        .release_locks("app1")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Error.NotHeld"), "{e}");
}

#[tokio::test]
async fn own_leftovers_are_removed_at_restart_app_locks_survive() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.service_dir("app2/web");
    env.start_daemon().await;
    ok(&env.cli(&["take", "app1"]));
    env.wait_locks(&["app1/main"]).await;
    // Crash: nothing released.
    env.kill_daemon(Signal::SIGKILL);
    assert!(env.locks().join("app1/main/updates.lock").exists());
    // An app running as nobody takes its own lock meanwhile.
    ok(&env.sh("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'set -C; : > $L/app2/web/updates.lock' || { chown 65534 $L/app2/web && setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'set -C; : > $L/app2/web/updates.lock'; }"));
    assert_eq!(
        std::fs::metadata(env.locks().join("app2/web/updates.lock"))
            .unwrap()
            .uid(),
        65534
    );

    env.start_daemon().await;
    let locks = env.wait_locks(&["app2/web"]).await;
    assert_eq!(
        locks[0].owner, "app",
        "an app running as uid 65534 is not mistaken for holdfast"
    );
    assert!(!env.locks().join("app1/main/updates.lock").exists());
    assert!(!env.locks().join("app1/main/resin-updates.lock").exists());
    assert!(env.locks().join("app2/web/updates.lock").exists());
    let log = env.log();
    assert!(
        log.contains(
            "removed holdfast's own lock left over from a previous run: app1/main/updates.lock"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn clean_stop_releases_own_locks() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.start_daemon().await;
    ok(&env.cli(&["take", "app1"]));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let status = env.kill_daemon(Signal::SIGTERM).unwrap();
    assert!(status.success(), "{status}");
    assert!(!env.locks().join("app1/main/updates.lock").exists());
    env.wait_inhibitor(None).await;
}

#[tokio::test]
async fn bad_config_at_start_is_a_clear_error() {
    let env = Env::new();
    env.write_config("[inhibit]\nwhat = [\"shutdown\", \"reboot\"]\n");
    let out = env
        .daemon_cmd()
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:11: inhibit.what: \"reboot\" is not one of",
        env.config_path().display()
    );
    assert!(err.contains(&want), "{err}");

    env.write_config("lock_rot = \"/x\"\n");
    let out = env.cli(&["config", "show"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holdfast.toml:10: unknown field `lock_rot`"),
        "{err}"
    );
}

#[tokio::test]
async fn reload_applies_good_config_and_keeps_running_on_bad() {
    let mut env = Env::new();
    env.start_with_app1_main_locked().await;
    let pid = nix::unistd::Pid::from_raw(env.daemon.as_ref().unwrap().id() as i32);

    // A drop-in adds sleep to the inhibitor.
    std::fs::create_dir_all(env.dir.join("config.d")).unwrap();
    std::fs::write(
        env.dir.join("config.d/50-sleep.toml"),
        "[inhibit]\nwhat = [\"shutdown\", \"sleep\"]\n",
    )
    .unwrap();
    let shown = ok(&env.cli(&["config", "show"]));
    assert!(
        shown.contains("inhibit.what = [\"shutdown\", \"sleep\"]"),
        "{shown}"
    );
    assert!(shown.contains("50-sleep.toml"), "{shown}");
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(10), || async {
        env.holdfast_inhibitors()
            .await
            .first()
            .map(|i| i.0 == "shutdown:sleep")
            .unwrap_or(false)
    })
    .await
    .unwrap_or_else(|_| panic!("what never changed: {}", env.log()));

    // A broken drop-in: rejected, the daemon keeps running with what it had.
    std::fs::write(
        env.dir.join("config.d/60-bad.toml"),
        "[inhibit]\nwhat = 7\n",
    )
    .unwrap();
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(10), || async {
        env.log().contains("configuration rejected")
    })
    .await
    .unwrap();
    let log = env.log();
    assert!(log.contains("60-bad.toml:2"), "{log}");
    assert!(
        env.daemon.as_mut().unwrap().try_wait().unwrap().is_none(),
        "daemon died"
    );
    assert_eq!(env.holdfast_inhibitors().await[0].0, "shutdown:sleep");
    assert!(env.supervisor().await.locked().await.unwrap());
}

/// `busctl --system <verb> org.holdfast.Supervisor1 /org/holdfast/Supervisor1 ...` as uid 65534.
fn nobody_busctl(env: &Env, verb: &str, rest: &[&str]) -> std::process::Output {
    let mut args = vec![
        "busctl",
        "--system",
        verb,
        "org.holdfast.Supervisor1",
        "/org/holdfast/Supervisor1",
    ];
    args.extend_from_slice(rest);
    setpriv_nobody(env, &args)
}

fn setpriv_nobody(env: &Env, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &env.bus)
        .output()
        .unwrap()
}

#[tokio::test]
async fn non_root_may_read_but_not_call() {
    let mut env = Env::new();
    // Let uid 65534 reach the private bus socket.
    std::fs::set_permissions(
        &env.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    env.service_dir("app1/main");
    env.start_daemon().await;
    let out = nobody_busctl(
        &env,
        "call",
        &["org.holdfast.Supervisor1", "TakeLocks", "sas", "app1", "0"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Access denied") || err.contains("AccessDenied"),
        "{err}"
    );
    assert!(!env.locks().join("app1/main/updates.lock").exists());
    let out = nobody_busctl(&env, "call", &["org.holdfast.Supervisor1", "ListLocks"]);
    assert!(!out.status.success());

    let out = nobody_busctl(
        &env,
        "get-property",
        &["org.holdfast.Supervisor1", "Status"],
    );
    assert_eq!(ok(&out).trim(), "s \"no locks; no inhibitor\"");
    ok(&nobody_busctl(&env, "introspect", &[]));
    // The CLI falls back to properties for non-root users.
    let out = setpriv_nobody(&env, &[env!("CARGO_BIN_EXE_holdfast"), "status"]);
    assert!(ok(&out).contains("no locks; no inhibitor"));
    let out = setpriv_nobody(&env, &[env!("CARGO_BIN_EXE_holdfast"), "take", "app1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ccess denied")
            || String::from_utf8_lossy(&out.stderr).contains("AccessDenied")
    );
}

/// Interface members as (kind name, sorted attributes of it and its args),
/// comments and whitespace ignored.
fn members(xml: &str, iface: &str) -> Vec<String> {
    let mut text = xml.to_owned();
    while let Some(a) = text.find("<!--") {
        let b = text[a..].find("-->").unwrap() + a + 3;
        text.replace_range(a..b, "");
    }
    let start = text
        .find(&format!("<interface name=\"{iface}\">"))
        .expect("interface present");
    let end = text[start..].find("</interface>").unwrap() + start;
    let body = &text[start..end];
    let mut out: Vec<String> = Vec::new();
    for tag in body.split('<').skip(2) {
        let tag = tag
            .split('>')
            .next()
            .unwrap()
            .trim()
            .trim_end_matches('/')
            .trim();
        if tag.starts_with('/') || tag.is_empty() {
            continue;
        }
        let mut words: Vec<&str> = tag.split_whitespace().collect();
        let kind = words.remove(0).to_owned();
        words.sort();
        let line = format!("{kind} {}", words.join(" "));
        if matches!(kind.as_str(), "method" | "signal" | "property") {
            out.push(line);
        } else if let Some(last) = out.last_mut() {
            last.push_str(" | ");
            last.push_str(&line);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn live_interface_matches_the_documented_xml() {
    let mut env = Env::new();
    env.start_daemon().await;
    let conn = env.conn().await;
    let proxy = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination("org.holdfast.Supervisor1")
        .unwrap()
        .path("/org/holdfast/Supervisor1")
        .unwrap()
        .build()
        .await
        .unwrap();
    let live = proxy.introspect().await.unwrap();
    let documented =
        std::fs::read_to_string(format!("{REPO}/docs/org.holdfast.Supervisor1.xml")).unwrap();
    let doc_members = members(&documented, "org.holdfast.Supervisor1");
    assert!(doc_members.len() >= 10);
    assert_eq!(members(&live, "org.holdfast.Supervisor1"), doc_members);
    // The live XML must parse for every client: zbus turns doc comments into
    // XML comments, and a comment may not hold a double dash.
    for xml in [&live, &documented] {
        let bare = xml.replace("<!--", "").replace("-->", "");
        assert!(!bare.contains("--"), "a double dash in an XML comment");
    }
    // Every member is documented with a comment right before it.
    for tag in ["<method name=", "<signal name=", "<property name="] {
        for (i, _) in documented.match_indices(tag) {
            let before = documented[..i].trim_end();
            assert!(before.ends_with("-->"), "undocumented member at byte {i}");
        }
    }
}

#[tokio::test]
async fn lock_command_holds_the_lock_while_the_command_runs() {
    let mut env = Env::new();
    env.start_daemon().await;
    let out = env.cli(&[
        "lock",
        "app1/main",
        "--",
        "sh",
        "-c",
        "test -e \"$0\" && exit 7",
        &env.locks()
            .join("app1/main/updates.lock")
            .display()
            .to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code passes through: {out:?}"
    );
    assert!(!env.locks().join("app1/main/updates.lock").exists());

    // While one holds it, another gets 75.
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "--config",
            &env.config_path().display().to_string(),
            "lock",
            "app1/main",
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    // The CLI keeps the file open while the command runs: it is the holder.
    // (Waiting, not checking once: the table may still show the previous
    // run's file for a moment.)
    let held = wait_for(Duration::from_secs(10), || async {
        let locks = env.lock_infos().await;
        locks.len() == 1 && locks[0].holders.iter().any(|h| h.comm == "holdfast")
    })
    .await;
    assert!(held.is_ok(), "{:?}", env.lock_infos().await);
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let out = env.cli(&["lock", "app1/main", "--", "true"]);
    assert_eq!(out.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already locked"));

    // A signal ends the command and the lock with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!env.locks().join("app1/main/updates.lock").exists());
    env.wait_inhibitor(None).await;
}

#[tokio::test]
async fn journald_gets_structured_entries() {
    let env = Env::new();
    env.service_dir("app1/main");
    // A private journald: its socket path is fixed, so it and holdfastd run
    // in their own mount namespace with /run/systemd on a private tmpfs.
    let script = format!(
        r#"set -e
mkdir -p /run/systemd /run/log
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs tmpfs /run/log
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' > /run/systemd/journald.conf.d/t.conf
/lib/systemd/systemd-journald & jpid=$!
for i in $(seq 200); do [ -S /run/systemd/journal/socket ] && break; sleep 0.02; done
HOLDFAST_LOG_TARGET=journald {daemon} --config {config} & hpid=$!
for i in $(seq 500); do busctl --system status org.holdfast.Supervisor1 >/dev/null 2>&1 && break; sleep 0.02; done
set -C; : > {locks}/app1/main/updates.lock; set +C
for i in $(seq 500); do busctl --system get-property org.holdfast.Supervisor1 /org/holdfast/Supervisor1 org.holdfast.Supervisor1 InhibitorHeld | grep -q true && break; sleep 0.02; done
rm {locks}/app1/main/updates.lock
for i in $(seq 500); do busctl --system get-property org.holdfast.Supervisor1 /org/holdfast/Supervisor1 org.holdfast.Supervisor1 InhibitorHeld | grep -q false && break; sleep 0.02; done
kill $hpid; wait $hpid || true
journalctl --sync 2>/dev/null || sleep 0.3
journalctl -D /run/log/journal -o json --no-pager SYSLOG_IDENTIFIER=holdfastd
kill $jpid
"#,
        daemon = env!("CARGO_BIN_EXE_holdfastd"),
        config = env.config_path().display(),
        locks = env.locks().display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &env.bus)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let entries: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let with_id = |id: &str| entries.iter().find(|e| e["MESSAGE_ID"] == id).cloned();
    use holdfast::logging::msgid;
    let taken = with_id(msgid::LOCK_TAKEN).unwrap_or_else(|| {
        panic!(
            "no lock-taken entry: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(taken["SERVICE"], "app1/main");
    assert_eq!(taken["MESSAGE"], "update lock taken: app1/main");
    assert!(with_id(msgid::LOCK_RELEASED).is_some());
    assert!(with_id(msgid::INHIBITOR_TAKEN).is_some());
    assert!(with_id(msgid::INHIBITOR_RELEASED).is_some());
    assert_eq!(
        with_id(msgid::INHIBITOR_TAKEN).unwrap()["WHY"],
        "update lock held by app1/main"
    );
}

#[tokio::test]
async fn reboot_is_refused_while_locked_and_gives_everything_back_when_logind_refuses() {
    let mut env = Env::new();
    env.service_dir("app2/web");
    env.start_with_app1_main_locked().await;

    let out = env.cli(&["reboot"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("update locks are held by app1/main; not going to reboot"),
        "{err}"
    );
    let e = env.supervisor().await.shutdown(false).await.unwrap_err();
    assert!(e.to_string().contains("Error.Locked"), "{e}");

    // Forced: holdfast locks every app, drops its inhibitor and asks logind.
    // Without systemd as PID 1 this logind refuses; holdfast must then give
    // the locks back and hold its inhibitor again.
    let out = env.cli(&["reboot", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logind refused to reboot"),
        "{out:?}"
    );
    let log = env.log();
    assert!(log.contains("forced reboot through update locks"), "{log}");
    assert!(log.contains("logind block inhibitor released"), "{log}");
    assert!(
        !env.locks().join("app2/web/updates.lock").exists(),
        "own locks given back"
    );
    assert!(
        env.locks().join("app1/main/updates.lock").exists(),
        "the app's lock is untouched"
    );
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;

    // Unlocked: not refused for locks; logind's answer is passed on.
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    env.wait_locks(&[]).await;
    let out = env.cli(&["reboot"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logind refused to reboot"),
        "{out:?}"
    );
    env.wait_locks(&[]).await;
    env.wait_inhibitor(None).await;
}

/// Datagrams reading `WATCHDOG=1` received within `window`.
async fn watchdog_pings(sock: &tokio::net::UnixDatagram, window: Duration) -> usize {
    let until = tokio::time::Instant::now() + window;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while let Ok(Ok(len)) = tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
        if String::from_utf8_lossy(&buf[..len])
            .lines()
            .any(|l| l == "WATCHDOG=1")
        {
            n += 1;
        }
    }
    n
}

/// WATCHDOG=1 goes out only while every critical loop answers: a logind
/// that never answers the system layer's Inhibit call stalls that loop, the
/// pings stop and the log names it; they resume once logind answers.
#[tokio::test]
async fn the_watchdog_is_fed_only_while_every_critical_loop_answers() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    let sock_path = env.dir.join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: exec keeps the shell's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.dir.join("holdfastd.log"))
        .unwrap();
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_holdfastd"))
        .arg("--config")
        .arg(env.config_path())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &env.bus)
        .env("HOLDFAST_LOG_TARGET", "stderr")
        .env("NO_COLOR", "1")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    env.daemon = Some(child);
    assert!(
        watchdog_pings(&sock, Duration::from_secs(2)).await >= 3,
        "no regular pings:\n{}",
        env.log()
    );

    let logind = nix::unistd::Pid::from_raw(
        std::fs::read_to_string(env.dir.join("logind.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    nix::sys::signal::kill(logind, Signal::SIGSTOP).unwrap();
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    // Pings already sent before the loop got stuck may still arrive.
    watchdog_pings(&sock, Duration::from_millis(500)).await;
    let stuck = watchdog_pings(&sock, Duration::from_millis(1500)).await;
    nix::sys::signal::kill(logind, Signal::SIGCONT).unwrap();
    assert_eq!(stuck, 0, "pinged while the system layer was stuck");
    assert!(env.log().contains("system did not answer"), "{}", env.log());
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    assert!(watchdog_pings(&sock, Duration::from_secs(2)).await >= 3);
}
