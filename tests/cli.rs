//! The holdfast CLI as a user runs it: closed pipes, names that look like
//! options, a daemon that is not there, and config not yet in force.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ok, wait_for, Env};
use nix::sys::signal::Signal;

fn holdfast(bus: &str, config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn closed_stdout_ends_quietly() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.start_daemon().await;
    for args in [&["status"][..], &["locks"], &["status", "--json"]] {
        // The reader is gone before the first write: every write is EPIPE.
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = holdfast(&env.bus, &env.config_path(), args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(Signal::SIGPIPE as i32),
            "{args:?}: {:?}",
            out.status
        );
    }
}

#[tokio::test]
async fn app_and_service_names_may_start_with_a_dash() {
    let mut env = Env::new();
    env.service_dir("-dash/main");
    env.service_dir("-dash/-svc");
    env.start_daemon().await;

    let out = ok(&env.cli(&["take", "-dash", "-svc"]));
    assert!(out.contains("locked: -dash/-svc"), "{out}");
    env.wait_locks(&["-dash/-svc"]).await;
    let out = ok(&env.cli(&["release", "-dash"]));
    assert!(out.contains("of -dash"), "{out}");
    env.wait_locks(&[]).await;

    let out = ok(&env.cli(&["take", "-dash"]));
    assert!(out.contains("-dash/-svc, -dash/main"), "{out}");
    ok(&env.cli(&["release", "-dash"]));
    env.wait_locks(&[]).await;

    // The lock file exists while the command runs.
    let lock = env.locks().join("-dash/main/updates.lock");
    let lock = lock.to_str().unwrap();
    ok(&env.cli(&["lock", "-dash/main", "--", "test", "-e", lock]));
    assert!(!std::path::Path::new(lock).exists());

    // Still validated as names, not rejected as unknown options.
    let out = env.cli(&["take", "-x!"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("contains '!'"), "{out:?}");
}

fn assert_unreachable(out: &Output, bus: &str, reason: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        err.contains(&format!(
            "holdfastd is not reachable on the system bus {bus} (from DBUS_SYSTEM_BUS_ADDRESS)"
        )),
        "{err}"
    );
    assert!(err.contains(reason), "{err}");
    assert!(err.contains("systemctl status holdfast"), "{err}");
    assert!(err.contains("DBUS_SYSTEM_BUS_ADDRESS, if set"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn no_bus_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let bus = format!("unix:path={}/no-such-socket", dir.path().display());
    let config = dir.path().join("holdfast.toml");
    std::fs::write(&config, "").unwrap();
    for args in [&["status"][..], &["locks"], &["take", "app1"], &["update"]] {
        let out = holdfast(&bus, &config, args).output().unwrap();
        assert_unreachable(&out, &bus, "No such file or directory (os error 2)");
    }
    // `config show` still shows the files, saying what it could not do.
    let out = holdfast(&bus, &config, &["config", "show"])
        .output()
        .unwrap();
    let shown = ok(&out);
    assert!(shown.contains("lock_root = "), "{shown}");
    assert!(!shown.contains("not in force"), "{shown}");
    let note = "# not compared with the settings in force: holdfastd is not reachable";
    assert_eq!(shown.matches(note).count(), 1, "{shown}");
}

#[test]
fn huge_deadlines_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bus = format!("unix:path={}/no-such-socket", dir.path().display());
    let config = dir.path().join("holdfast.toml");
    for deadline in ["99999999999999999d", "@18446744073709551615", "10000000y"] {
        let out = holdfast(
            &bus,
            &config,
            &["reboot", "--when-unlocked", "--deadline", deadline],
        )
        .output()
        .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{deadline}: {out:?}");
        assert!(err.contains("too far in the future"), "{deadline}: {err}");
    }
}

#[tokio::test]
async fn bus_without_holdfastd_is_unavailable() {
    let env = Env::new();
    for args in [&["status"][..], &["release", "app1"]] {
        assert_unreachable(
            &env.cli(args),
            &env.bus,
            "no org.holdfast.Supervisor1 on the bus",
        );
    }
    let out = ok(&env.cli(&["config", "show", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["in_force"].is_null() && v["pending"].is_null(), "{v}");
    let why = v["in_force_error"].as_str().unwrap();
    assert!(why.contains("not reachable"), "{why}");
}

#[tokio::test]
async fn config_show_marks_values_not_in_force() {
    let mut env = Env::new();
    env.start_daemon().await;
    let shown = ok(&env.cli(&["config", "show"]));
    assert!(!shown.contains("not in force"), "{shown}");
    assert!(!shown.contains("not compared"), "{shown}");

    env.write_config("[inhibit]\nwhat = [\"shutdown\", \"sleep\"]\n");
    let shown = ok(&env.cli(&["config", "show"]));
    let marked: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("not in force"))
        .collect();
    assert_eq!(marked.len(), 1, "{shown}");
    assert!(marked[0].starts_with("inhibit.what = "), "{shown}");
    let source = format!(
        "# {} (not in force: reload with systemctl reload holdfast)",
        env.config_path().display()
    );
    assert!(marked[0].ends_with(&source), "{shown}");

    let v: serde_json::Value =
        serde_json::from_str(&ok(&env.cli(&["config", "show", "--json"]))).unwrap();
    assert_eq!(v["pending"], serde_json::json!(["inhibit.what"]), "{v}");
    assert_eq!(
        v["in_force"]["inhibit_what"],
        serde_json::json!(["shutdown"])
    );
    assert_eq!(
        v["settings"]["inhibit_what"],
        serde_json::json!(["shutdown", "sleep"])
    );

    let pid = nix::unistd::Pid::from_raw(env.daemon.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(10), || async {
        let p = env.supervisor().await;
        p.config_in_force().await.is_ok_and(|c| c.contains("sleep"))
    })
    .await
    .unwrap_or_else(|_| panic!("ConfigInForce never changed; log:\n{}", env.log()));
    let shown = ok(&env.cli(&["config", "show"]));
    assert!(!shown.contains("not in force"), "{shown}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&env.cli(&["config", "show", "--json"]))).unwrap();
    assert_eq!(v["pending"], serde_json::json!([]), "{v}");
}
