//! Locks taken from inside a real container whose service directory is
//! bind-mounted at /tmp/balena and /tmp/resin, as holdfast will mount it.

mod common;

use common::{ok, Env};

#[tokio::test]
async fn lock_taken_inside_a_container_holds_the_inhibitor() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    let dir = env.service_dir("app1/main");
    env.start_daemon().await;
    let mount = |target: &str| format!("type=bind,source={},target={target}", dir.display());
    let name = format!("hf-{}", std::process::id());
    ok(&env.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--mount",
        &mount("/tmp/balena"),
        "--mount",
        &mount("/tmp/resin"),
        &image,
        "sh",
        "-c",
        "sleep 600",
    ]));
    let exec = |script: &str| env.docker(&["exec", &name, "sh", "-c", script]);

    // The documented way: exclusive create at /tmp/balena/updates.lock.
    ok(&exec("set -C; : > /tmp/balena/updates.lock"));
    let out = exec("set -C; : > /tmp/balena/updates.lock");
    assert!(!out.status.success(), "second exclusive create must fail");
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].owner, "app");
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    ok(&exec("rm /tmp/balena/updates.lock"));
    env.wait_inhibitor(None).await;

    // Legacy path through the other mount of the same directory.
    ok(&exec("set -C; : > /tmp/resin/resin-updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    assert!(dir.join("resin-updates.lock").exists());

    // holdfast's self-locking now fails on the app's lock, all-or-nothing.
    let out = env.cli(&["take", "app1"]);
    assert_eq!(out.status.code(), Some(75));
    ok(&exec("rm /tmp/resin/resin-updates.lock"));
    env.wait_locks(&[]).await;

    // With holdfast holding the locks, the app's attempt fails: it knows an
    // update is coming.
    ok(&env.cli(&["take", "app1"]));
    assert!(!exec("set -C; : > /tmp/balena/updates.lock")
        .status
        .success());
    assert!(!exec("set -C; : > /tmp/resin/resin-updates.lock")
        .status
        .success());
    ok(&env.cli(&["release", "app1"]));
    ok(&exec("set -C; : > /tmp/balena/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    ok(&env.docker(&["rm", "-f", &name]));
}
