//! Locks that must not stop counting: containers made under another lock
//! root (they count as locked, kind unknown, until holdfast has made them
//! again under the app's locks), a lock root that is not holdfast's own
//! (refused at start and on reload), and a config.json uuid that is not
//! one (the last good uuid stays). Real dockerd, logind and holdfastd.

mod common;

use std::path::Path;
use std::time::Duration;

use common::engine::{release, service, target};
use common::{ok, wait_for, Env};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// Waits until holdfast holds a block inhibitor for `why` (or none); a
/// delay inhibitor beside it (a target in force) is fine.
async fn wait_block(env: &Env, why: Option<&str>) {
    let r = wait_for(Duration::from_secs(10), || async {
        let block: Vec<String> = env
            .holdfast_inhibitors()
            .await
            .into_iter()
            .filter(|i| i.2 == "block")
            .map(|i| i.1)
            .collect();
        match why {
            Some(w) => block == [w],
            None => block.is_empty(),
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "block inhibitor never became {why:?}: {:?}\n{}",
        env.holdfast_inhibitors().await,
        env.log()
    );
}

/// A drop-in in the test's config directory.
fn dropin(env: &Env, name: &str, text: &str) {
    let dir = env.dir.join("config.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn lock_root_line(root: &Path) -> String {
    format!("lock_root = {:?}\n", root.display().to_string())
}

#[tokio::test]
async fn containers_under_an_old_lock_root_count_as_locked_until_made_again() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let old = env.container_of("app1", "main");

    // A drop-in moves the lock root; the app takes its lock where its
    // container sees it (the old root) while holdfastd restarts.
    env.kill_daemon(Signal::SIGTERM);
    let l1 = env.locks();
    let l2 = env.dir.join("locks2");
    dropin(&env, "50-root.toml", &lock_root_line(&l2));
    ok(&env.exec(&old, "set -C; : > /tmp/balena/updates.lock"));
    env.start_daemon().await;

    // Locked, kind unknown, with which container mounts what and what to do.
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(
        (locks[0].owner.as_str(), locks[0].kind.as_str()),
        ("app", "unknown")
    );
    wait_block(&env, Some("update lock held by app1/main")).await;
    let why = env
        .fresh_supervisor()
        .await
        .unreadable_locks()
        .await
        .unwrap();
    let why = &why["app1/main"];
    let old_dir = l1.join("app1/main").display().to_string();
    assert!(
        why.contains(&format!("mounts {old_dir} at /tmp/balena")),
        "{why}"
    );
    assert!(
        why.contains(&format!(
            "not the watched {}",
            l2.join("app1/main").display()
        )),
        "{why}"
    );
    assert!(why.contains("holdfast update --force"), "{why}");
    let shown = ok(&env.cli(&["locks"]));
    assert!(shown.contains("app1/main: container app1_main_"), "{shown}");
    // A reboot waits for it too.
    let out = env.cli(&["reboot"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");

    // A new target for the app waits, the old container runs on.
    ok(&env.apply(&release(&image, 2)));
    let st = env.wait_release("app1", "waiting", "r2").await;
    assert_eq!(st["blocked_by"], json!(["unknown:app1/main"]), "{st}");
    assert_eq!(env.container_of("app1", "main"), old);
    env.wait_log(
        "app app1 holds its lock where its containers see it",
        Duration::from_secs(10),
        "the take was tried",
    )
    .await;

    // The app lets go: holdfast takes its lock in the old directory, and
    // r2 goes through under the app's locks in the new root.
    ok(&env.exec(&old, "rm /tmp/balena/updates.lock"));
    env.wait_release("app1", "applied", "r2").await;
    let new = env.container_of("app1", "main");
    assert_ne!(new, old);
    assert!(
        env.log()
            .contains(&format!("holdfast holds the lock in {old_dir}")),
        "{}",
        env.log()
    );
    // The old container is gone, and with it holdfast's locks there.
    env.wait_locks(&[]).await;
    wait_block(&env, None).await;
    for f in ["updates.lock", "resin-updates.lock"] {
        assert!(
            !l1.join("app1/main").join(f).exists(),
            "{f} left in the old root"
        );
    }
    // The new container's lock is seen where holdfast watches.
    ok(&env.exec(&new, "set -C; : > /tmp/balena/updates.lock"));
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].kind, "file");
    assert!(l2.join("app1/main/updates.lock").exists());
}

#[tokio::test]
async fn a_container_whose_old_directory_is_gone_binds_until_forced() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    // A tmpfs of its own for the old root, so it can go away.
    let l1 = env.dir.join("old-root");
    std::fs::create_dir_all(&l1).unwrap();
    ok(&env.sh(&format!("mount -t tmpfs tmpfs {}", l1.display())));
    dropin(&env, "40-root.toml", &lock_root_line(&l1));
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let old = env.container_of("app1", "main");
    env.kill_daemon(Signal::SIGTERM);
    dropin(
        &env,
        "50-root.toml",
        &lock_root_line(&env.dir.join("locks2")),
    );
    // The old lock directory goes (as after a move): nowhere to lock.
    ok(&env.sh(&format!("umount -l {0} && rmdir {0}", l1.display())));
    env.start_daemon().await;
    let st = env.wait_app("app1", "waiting").await;
    assert_eq!(st["blocked_by"], json!(["unknown:app1/main"]), "{st}");
    wait_block(&env, Some("update lock held by app1/main")).await;
    let why = env
        .fresh_supervisor()
        .await
        .unreadable_locks()
        .await
        .unwrap();
    assert!(
        why["app1/main"].contains("holdfast cannot take the lock there"),
        "{why:?}"
    );
    assert_eq!(env.container_of("app1", "main"), old);
    // Forced: made again, then nothing binds.
    ok(&env.cli(&["update", "--force"]));
    env.wait_app("app1", "applied").await;
    assert_ne!(env.container_of("app1", "main"), old);
    env.wait_locks(&[]).await;
    wait_block(&env, None).await;
}

/// Runs holdfastd to its end (a refused config ends it at once).
async fn refused_start(env: &Env) -> std::process::ExitStatus {
    let mut child = env.daemon_cmd().spawn().unwrap();
    let mut status = None;
    let r = wait_for(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        let done = status.is_some();
        async move { done }
    })
    .await;
    if r.is_err() {
        let _ = child.kill();
        panic!("holdfastd kept running:\n{}", env.log());
    }
    status.unwrap()
}

#[tokio::test]
async fn a_lock_root_that_is_not_holdfasts_is_refused_at_start_and_on_reload() {
    let mut env = Env::new();
    // "/" as a drop-in: refused with the file, the line and why.
    dropin(&env, "50-root.toml", "\nlock_root = \"/\"\n");
    let status = refused_start(&env).await;
    assert!(!status.success());
    let log = env.log();
    assert!(
        log.contains("50-root.toml:2: lock_root: /: / is a system directory"),
        "{log}"
    );
    assert!(!Path::new("/tmp/qahx").exists() || !log.contains("qahx"));

    // A populated directory that is not a lock tree: refused, untouched.
    let data = env.dir.join("data");
    std::fs::create_dir_all(data.join("tmp/qahx")).unwrap();
    std::fs::write(data.join("tmp/qahx/api-key"), "0123456789abcdef").unwrap();
    dropin(&env, "50-root.toml", &lock_root_line(&data));
    assert!(!refused_start(&env).await.success());
    let log = env.log();
    assert!(log.contains("not empty and not holdfast's"), "{log}");
    assert!(
        log.contains("tmp/qahx/api-key is a file with content"),
        "{log}"
    );
    assert!(!data.join(".holdfast-lock-root").exists(), "not marked");

    // A symlink to a good directory: refused too.
    let link = env.dir.join("link");
    std::os::unix::fs::symlink(env.locks(), &link).unwrap();
    dropin(&env, "50-root.toml", &lock_root_line(&link));
    assert!(!refused_start(&env).await.success());
    assert!(env.log().contains("it is a symlink"), "{}", env.log());

    // Its own lock root: accepted and marked.
    std::fs::remove_file(env.dir.join("config.d/50-root.toml")).unwrap();
    env.start_daemon().await;
    assert!(env.locks().join(".holdfast-lock-root").is_file());
    let root = env.fresh_supervisor().await.lock_root().await.unwrap();
    assert_eq!(Path::new(&root), env.locks());

    // On reload: each refused with why; the running settings stay.
    for (bad, why) in [
        ("\"/\"".to_owned(), "/ is a system directory"),
        (
            format!("{:?}", data.display().to_string()),
            "not empty and not holdfast's",
        ),
    ] {
        dropin(&env, "50-root.toml", &format!("lock_root = {bad}\n"));
        let from = env.log().len();
        env.reload();
        let said = wait_for(Duration::from_secs(10), || async {
            let log = env.log();
            let new = &log[from..];
            new.contains(why)
                && new.contains("configuration rejected; keeping the running configuration")
        })
        .await;
        assert!(
            said.is_ok(),
            "the reload did not refuse {bad}:\n{}",
            env.log()
        );
        dropin(&env, "50-root.toml", "");
    }
    let root = env.fresh_supervisor().await.lock_root().await.unwrap();
    assert_eq!(Path::new(&root), env.locks());
    // Still watching: a lock counts.
    env.service_dir("app1/main");
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    wait_block(&env, Some("update lock held by app1/main")).await;
}

/// config.json replaced as balenaOS does it (write beside, rename over).
fn write_config_json(env: &Env, text: &str) {
    let dir = env.dir.join("boot");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join("config.json.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("config.json")).unwrap();
}

fn uuid_in(env: &Env, container: &str) -> String {
    ok(&env.exec(container, "printf %s \"$BALENA_DEVICE_UUID\""))
}

#[tokio::test]
async fn a_uuid_with_a_control_character_keeps_the_last_good_uuid() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    write_config_json(&env, r#"{"uuid": "uuid-good"}"#);
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");
    assert_eq!(uuid_in(&env, &c1), "uuid-good");
    // Locked: a replacement would show as waiting, not happen.
    ok(&env.exec(&c1, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;

    write_config_json(&env, "{\"uuid\": \"uuid\\u0007bad\"}");
    env.wait_log(
        "config.json: uuid = ",
        Duration::from_secs(10),
        "the bad uuid is said",
    )
    .await;
    let log = env.log();
    assert!(log.contains("the last good value stays in force"), "{log}");
    assert!(!log.contains('\u{7}'), "control characters are escaped");

    // A new app is made with the last good uuid; app1 is left as it is.
    let mut apps = release(&image, 1)["apps"].clone();
    apps["app2"] = json!({"release": "r1", "services": {"main": service(&image)}});
    ok(&env.apply(&target(apps)));
    env.wait_release("app2", "applied", "r1").await;
    assert_eq!(
        uuid_in(&env, &env.container_of("app2", "main")),
        "uuid-good"
    );
    let a: Value = env.apps().await;
    assert_eq!(a["app1"]["state"], "applied", "{a}");
    assert_eq!(env.container_of("app1", "main"), c1);
    assert_eq!(uuid_in(&env, &c1), "uuid-good");
}
