//! The lock override from config.json, the one-time force, and reboots
//! that wait for the locks (RequestReboot), on real components.

mod common;

use std::time::{Duration, Instant};

use common::engine::release;
use common::{ok, wait_for, Env};
use serde_json::json;

fn write_config_json(env: &Env, value: &serde_json::Value) {
    // As a FAT boot partition is written: a new file renamed over the old.
    let dir = env.dir.join("boot");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join("config.json.new");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("config.json")).unwrap();
}

async fn wait_log(env: &Env, needle: &str) {
    let r = wait_for(Duration::from_secs(10), || async {
        env.log().contains(needle)
    })
    .await;
    assert!(r.is_ok(), "log never said {needle:?}:\n{}", env.log());
}

async fn override_state(env: &Env) -> (bool, String) {
    let p = env.fresh_supervisor().await;
    (
        p.lock_override().await.unwrap(),
        p.lock_override_source().await.unwrap(),
    )
}

async fn wait_override(env: &Env, want: (bool, &str)) {
    let start = Instant::now();
    loop {
        let got = override_state(env).await;
        if got.0 == want.0 && got.1 == want.1 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "override {got:?}, want {want:?}\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn override_deletes_present_locks_and_stops_respecting_them_until_turned_off() {
    let mut env = Env::new();
    env.start_with_app1_main_locked().await;
    let lock = env.locks().join("app1/main/updates.lock");

    write_config_json(
        &env,
        &json!({"uuid": "d1", "deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"},
                                    "fleetConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "0"}}),
    );
    wait_override(&env, (true, "deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK")).await;
    env.wait_inhibitor(None).await;
    assert!(
        lock.symlink_metadata().is_err(),
        "the lock present when the override came on must be deleted"
    );
    wait_log(&env, "the app must take it again").await;
    let status = ok(&env.cli(&["status"]));
    assert!(
        status.contains("lock override: on (deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK)"),
        "{status}"
    );

    // A lock taken while the override is on is seen but holds nothing back.
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(env.holdfast_inhibitors().await.is_empty());
    let out = env.cli(&["reboot"]);
    assert_ne!(
        out.status.code(),
        Some(75),
        "reboot refused under the override: {out:?}"
    );
    wait_log(&env, "forced reboot through update locks").await;

    // Not JSON: reported with line and column; the override stays on.
    std::fs::write(
        env.dir.join("boot/config.json"),
        "{\n  \"uuid\": \"d1\",\n  deviceConfig\n}",
    )
    .unwrap();
    wait_log(&env, "line 3 column 3").await;
    assert_eq!(
        override_state(&env).await,
        (
            true,
            "deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK".to_string()
        )
    );

    // Off again: the lock is respected, the inhibitor returns, the lock file
    // was never touched.
    write_config_json(
        &env,
        &json!({"deviceConfig": {"RESIN_OVERRIDE_LOCK": "0"}, "BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"}),
    );
    wait_override(&env, (false, "deviceConfig.RESIN_OVERRIDE_LOCK")).await;
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    assert!(lock.exists());
    assert_eq!(env.cli(&["reboot"]).status.code(), Some(75));

    // Fleet level and legacy names; a bad value is an error and off.
    write_config_json(
        &env,
        &json!({"fleetConfig": {"RESIN_SUPERVISOR_OVERRIDE_LOCK": "yes"}}),
    );
    wait_log(
        &env,
        "fleetConfig.RESIN_SUPERVISOR_OVERRIDE_LOCK = \"yes\" is not one of",
    )
    .await;
    assert!(!override_state(&env).await.0);
    write_config_json(
        &env,
        &json!({"fleetConfig": {"RESIN_SUPERVISOR_OVERRIDE_LOCK": true}}),
    );
    wait_override(&env, (true, "fleetConfig.RESIN_SUPERVISOR_OVERRIDE_LOCK")).await;
    env.wait_inhibitor(None).await;

    // A missing file keeps the settings in force.
    std::fs::remove_file(env.dir.join("boot/config.json")).unwrap();
    wait_log(&env, "config.json is gone").await;
    assert!(override_state(&env).await.0);
}

#[tokio::test]
async fn forced_update_preempts_a_waiting_apply_once_and_the_override_updates_through_locks() {
    let mut env = Env::with_docker();
    let reg = env.registry();
    let image = env.push(&reg, "f:1");
    env.start_daemon().await;
    let c1 = env.app1_waiting_on_its_lock(&image).await;

    // balena #2541: a force must not queue behind the waiting apply.
    ok(&env.cli(&["update", "--force"]));
    env.wait_release("app1", "applied", "r2").await;
    wait_log(&env, "one-time forced update asked by D-Bus client").await;
    wait_log(&env, "updating app app1 through its locks lock:app1/main").await;
    let c2 = env.container_of("app1", "main");
    assert_ne!(c2, c1);
    // The app's lock file was left alone (it is the app's).
    assert!(env.locks().join("app1/main/updates.lock").exists());

    // One-time: the next release waits again.
    ok(&env.apply(&release(&image, 3)));
    let st = env.wait_release("app1", "waiting", "r3").await;
    assert_eq!(st["blocked_by"], json!(["lock:app1/main"]));

    // The override: the waiting apply goes ahead at once.
    write_config_json(
        &env,
        &json!({"deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"}}),
    );
    env.wait_release("app1", "applied", "r3").await;
    // Turning it on deleted the lock present then.
    assert!(!env.locks().join("app1/main/updates.lock").exists());
}

#[tokio::test]
async fn reboot_when_unlocked_waits_for_the_last_lock_or_the_deadline() {
    let mut env = Env::new();
    env.start_with_app1_main_locked().await;
    let out = ok(&env.cli(&["reboot", "--when-unlocked"]));
    assert!(out.contains("reboot when unlocked"), "{out}");
    let status = ok(&env.cli(&["status"]));
    assert!(
        status.contains("pending: reboot when unlocked (requested; asked by D-Bus client"),
        "{status}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!env.log().contains("no app holds a lock; rebooting"));
    // The last lock goes: the reboot is asked for at once. (Without systemd
    // as PID 1 logind cannot carry it out; tests/nspawn does the real one.)
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    wait_log(&env, "pending reboot: no app holds a lock; rebooting").await;
    wait_log(&env, "pending reboot failed").await;

    // Cancelled: nothing happens when the lock goes.
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    ok(&env.cli(&["reboot", "--when-unlocked"]));
    assert!(ok(&env.cli(&["reboot", "--cancel"])).contains("pending reboot cancelled"));
    let before = env.log().matches("pending reboot:").count();
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    env.wait_inhibitor(None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.log().matches("pending reboot:").count(), before);

    // A deadline forces through a lock that never goes.
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let asked = Instant::now();
    ok(&env.cli(&["reboot", "--when-unlocked", "--deadline", "2s"]));
    wait_log(&env, "deadline reached, forcing through the locks").await;
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "forced before the deadline"
    );
    wait_log(&env, "forced reboot through update locks").await;
    let bad = env.cli(&["reboot", "--when-unlocked", "--deadline", "soon"]);
    assert!(!bad.status.success());
}

#[tokio::test]
async fn boot_config_is_staged_and_written_only_when_the_reboot_is_allowed() {
    let mut env = Env::new();
    let txt = env.dir.join("boot/config.txt");
    std::fs::create_dir_all(txt.parent().unwrap()).unwrap();
    std::fs::write(&txt, "dtoverlay=vc4-kms-v3d\ngpu_mem=16\n").unwrap();
    env.start_with_app1_main_locked().await;
    let t = json!({"version": 1, "apps": {},
                   "config": {"BALENA_HOST_CONFIG_gpu_mem": "64", "HOLDFAST_NOTE": "applies at once"}});
    ok(&env.apply(&t));
    wait_log(&env, "boot config change staged").await;
    let status = ok(&env.cli(&["status"]));
    assert!(
        status.contains("pending: reboot when unlocked (staged boot config; asked by holdfast)"),
        "{status}"
    );
    // Staged, not written: a power cut now changes nothing on the boot partition.
    assert_eq!(
        std::fs::read_to_string(&txt).unwrap(),
        "dtoverlay=vc4-kms-v3d\ngpu_mem=16\n"
    );
    assert!(
        std::fs::read_to_string(env.state().join("boot-config.json"))
            .unwrap()
            .contains("\"gpu_mem\": \"64\"")
    );
    assert!(
        std::fs::read_to_string(env.state().join("device-config.json"))
            .unwrap()
            .contains("HOLDFAST_NOTE")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(&txt).unwrap(),
        "dtoverlay=vc4-kms-v3d\ngpu_mem=16\n"
    );

    // The lock goes: the reboot is allowed, config.txt is written first.
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    wait_log(&env, "staged boot config written before the reboot").await;
    assert_eq!(
        std::fs::read_to_string(&txt).unwrap(),
        "dtoverlay=vc4-kms-v3d\ngpu_mem=64\n"
    );
}
