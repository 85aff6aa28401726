//! Locks taken by real lock clients on the host, seen by holdfastd, and the
//! logind inhibitor that follows them.

mod common;

use common::{ok, Env};

#[tokio::test]
async fn real_clients_lock_and_the_inhibitor_follows() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.service_dir("app1/worker");
    env.service_dir("app2/web");
    env.start_daemon().await;
    assert!(env.holdfast_inhibitors().await.is_empty());

    // procmail's lockfile(1): O_EXCL create, closes at once.
    ok(&env.sh("lockfile -r0 $L/app1/main/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].owner, "app");
    assert_eq!(locks[0].kind, "file");

    // Shell noclobber on the legacy name; a second create fails like an app's would.
    ok(&env.sh("set -C; : > $L/app1/worker/resin-updates.lock"));
    assert!(!env
        .sh("set -C; : > $L/app1/worker/resin-updates.lock")
        .status
        .success());
    env.wait_inhibitor(Some("update lock held by app1/main, app1/worker"))
        .await;

    // mkdir-style locking libraries.
    ok(&env.sh("mkdir $L/app2/web/updates.lock"));
    let locks = env
        .wait_locks(&["app1/main", "app1/worker", "app2/web"])
        .await;
    assert_eq!(
        locks.iter().find(|l| l.service == "app2/web").unwrap().kind,
        "dir"
    );
    env.wait_inhibitor(Some("update lock held by app1/main, app1/worker, app2/web"))
        .await;

    let status = ok(&env.cli(&["status"]));
    assert!(
        status.contains("3 locks: app1/main, app1/worker, app2/web; inhibitor held"),
        "{status}"
    );

    ok(&env.sh("rm -f $L/app1/main/updates.lock; rm -f $L/app1/worker/resin-updates.lock"));
    env.wait_inhibitor(Some("update lock held by app2/web"))
        .await;
    ok(&env.sh("rmdir $L/app2/web/updates.lock"));
    env.wait_inhibitor(None).await;
    env.wait_locks(&[]).await;
    let log = env.log();
    assert!(log.contains("logind block inhibitor released"), "{log}");
}

#[tokio::test]
async fn flock_leftover_is_reported_stale_but_still_locks() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.start_daemon().await;
    // flock(1) creates the file, holds the lock while the command runs and
    // leaves the file behind.
    let mut child = std::process::Command::new("flock")
        .arg(env.locks().join("app1/main/updates.lock"))
        .args(["-c", "read _"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let locks = env.wait_locks(&["app1/main"]).await;
    let holders: Vec<&str> = locks[0].holders.iter().map(|h| h.how.as_str()).collect();
    assert!(holders.contains(&"flock"), "{locks:?}");
    assert!(!locks[0].stale);
    drop(child.stdin.take());
    child.wait().unwrap();

    let json = common::wait_for(std::time::Duration::from_secs(10), || async {
        let out = env.cli(&["locks", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["stale"] == true && v[0]["holders"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(json.is_ok(), "never stale: {}", env.log());
    // The table's own holder scan (not ListLocks' fresh one) logs the hint.
    let logged = common::wait_for(std::time::Duration::from_secs(10), || async {
        env.log().contains("is held by no process")
    })
    .await;
    assert!(logged.is_ok(), "{}", env.log());
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let text = ok(&env.cli(&["locks"]));
    assert!(text.contains("app1/main") && text.contains("yes"), "{text}");
}

#[tokio::test]
async fn python_style_link_locks_and_dirs_created_while_running() {
    let mut env = Env::new();
    env.start_daemon().await;
    // App and service directories appear after start.
    ok(&env.sh("mkdir -p $L/late/svc && sleep 0.05 && echo x > $L/late/svc/host-123.tmp && ln $L/late/svc/host-123.tmp $L/late/svc/updates.lock"));
    env.wait_locks(&["late/svc"]).await;
    env.wait_inhibitor(Some("update lock held by late/svc"))
        .await;
    // Removing the whole app directory releases its locks.
    ok(&env.sh("rm -rf $L/late"));
    env.wait_locks(&[]).await;
    env.wait_inhibitor(None).await;
}

#[tokio::test]
async fn lock_root_missing_at_start_and_removed_while_running() {
    let mut env = Env::new();
    let root = env.dir.join("fresh-root");
    env.write_config(
        &format!("lock_root = \"{}\"\n", root.display()).replace("lock_root", "# lock_root"),
    );
    // Rewrite with the new root (the first line above is commented out).
    let cfg = std::fs::read_to_string(env.config_path()).unwrap();
    let cfg = cfg.replacen(
        &format!("lock_root = \"{}\"", env.locks().display()),
        &format!("lock_root = \"{}\"", root.display()),
        1,
    );
    std::fs::write(env.config_path(), cfg).unwrap();
    assert!(!root.exists());
    env.start_daemon().await;
    assert!(root.is_dir(), "holdfastd creates a missing lock root");

    std::fs::create_dir_all(root.join("a/s")).unwrap();
    std::fs::write(root.join("a/s/updates.lock"), b"").unwrap();
    let p = env.supervisor().await;
    common::wait_for(std::time::Duration::from_secs(10), || async {
        p.locked().await.unwrap()
    })
    .await
    .unwrap();
    env.wait_inhibitor(Some("update lock held by a/s")).await;

    std::fs::remove_dir_all(&root).unwrap();
    env.wait_inhibitor(None).await;
    common::wait_for(std::time::Duration::from_secs(10), || async {
        root.is_dir()
    })
    .await
    .unwrap();
    // Watching resumes on the recreated root.
    std::fs::create_dir_all(root.join("b/t")).unwrap();
    std::fs::write(root.join("b/t/updates.lock"), b"").unwrap();
    env.wait_inhibitor(Some("update lock held by b/t")).await;
    assert!(env.log().contains("lock root removed; recreating it"));
}

#[tokio::test]
async fn logind_restart_while_locked_reacquires_the_inhibitor() {
    let mut env = Env::new();
    env.start_with_app1_main_locked().await;
    env.restart_logind();
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    assert!(env.log().contains("logind (re)appeared"), "{}", env.log());
    assert!(env.supervisor().await.inhibitor_held().await.unwrap());
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    env.wait_inhibitor(None).await;
}

#[tokio::test]
async fn symlinks_and_bad_names_are_skipped_never_followed() {
    let mut env = Env::new();
    let outside = env.dir.join("outside");
    std::fs::create_dir_all(outside.join("svc")).unwrap();
    std::fs::write(outside.join("svc/updates.lock"), b"").unwrap();
    env.service_dir("app1/main");
    // A symlinked app dir and service dir pointing outside the root.
    std::os::unix::fs::symlink(&outside, env.locks().join("evilapp")).unwrap();
    std::os::unix::fs::symlink(outside.join("svc"), env.locks().join("app1/evil")).unwrap();
    // A file where a service directory should be, and badly named dirs.
    std::fs::write(env.locks().join("app1/notadir"), b"").unwrap();
    std::fs::create_dir_all(env.locks().join("app1/bad name")).unwrap();
    std::fs::create_dir_all(env.locks().join(".hidden/svc")).unwrap();
    env.start_daemon().await;
    assert!(
        env.lock_infos().await.is_empty(),
        "nothing outside is followed"
    );
    let log = env.log();
    assert!(log.contains("is a symlink (never followed)"), "{log}");
    assert!(log.contains("is not a directory"), "{log}");
    assert!(log.contains("starts with '.'"), "{log}");

    // A symlink planted at the lock path is a lock (it exists) but its
    // target is never touched.
    let target = env.dir.join("target-file");
    std::os::unix::fs::symlink(&target, env.locks().join("app1/main/updates.lock")).unwrap();
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].kind, "symlink");
    let out = env.cli(&["take", "app1", "main"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(!target.exists());

    // Bad names are clear errors, never paths.
    let out = env.cli(&["take", "../etc"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("starts with '.'"),
        "{out:?}"
    );
    let err = env
        .supervisor()
        .await
        .take_locks("app1", &["../../x"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InvalidName"), "{err}");
    let out = env.cli(&["lock", "app1/../x", "--", "true"]);
    assert!(!out.status.success());
    assert!(!env.locks().join("x").exists());
}

#[tokio::test]
async fn bus_restart_reconnects_and_retakes_the_inhibitor() {
    let mut env = Env::new();
    env.start_with_app1_main_locked().await;
    env.restart_bus();
    // holdfastd serves its name again and logind lists a fresh inhibitor.
    let bus = env.bus.clone();
    common::wait_for(std::time::Duration::from_secs(15), || {
        let bus = bus.clone();
        async move { common::name_has_owner(&bus, "org.holdfast.Supervisor1").await }
    })
    .await
    .unwrap_or_else(|_| panic!("never reconnected: {}", env.log()));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    assert!(
        env.log().contains("reconnected to the system bus"),
        "{}",
        env.log()
    );
    // And it still follows the locks.
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    env.wait_inhibitor(None).await;
    assert!(env.daemon.as_mut().unwrap().try_wait().unwrap().is_none());
}
