//! Releases from a real hawkBit DDI server: gooseBit 0.2.12 on loopback
//! (`scripts/setup.sh hawkbit`), a private dockerd, and holdfastd polling
//! it. Releases are `.swu` files made by scripts/make-swu.py, uploaded and
//! assigned through gooseBit's management API (scripts/goosebit.py); what
//! gooseBit records of the device (state, version, feedback log) is the
//! proof.

#![cfg(feature = "fleet")]

mod common;

use std::process::Command;

use common::engine::target;
use common::goosebit::{app, app1_release, log_has, swu, GooseBit};
use common::{ok, Env, REPO};
use serde_json::json;

async fn start(env: &mut Env, gb: &GooseBit, dev: &str, extra: &str) {
    env.write_config(&format!(
        "[update]\nhealthy_timeout = \"6s\"\n[fleet]\nid = \"{dev}\"\n[fleet.hawkbit]\nurl = \"{}\"\n{extra}",
        gb.url
    ));
    env.start_daemon().await;
}

#[tokio::test]
async fn a_release_waits_for_a_held_lock_and_a_failing_one_is_reported_as_failure() {
    let mut env = Env::with_docker();
    let gb = GooseBit::start(&env);
    let image = env.busybox_image();
    let dev = "hf-hawkbit-1";
    let dir = env.dir.join("swu");
    std::fs::create_dir_all(&dir).unwrap();

    // The first release: applied, recorded as success with its version.
    let r1 = app1_release(&dir, "1.0.0", &image, "r1", "true");
    gb.deploy(&r1, dev);
    start(&mut env, &gb, dev, "").await;
    let d = gb
        .wait(dev, "1.0.0 finished", |d| {
            d["last_state"] == "Finished" && d["sw_version"] == "1.0.0"
        })
        .await;
    assert!(log_has(&d, "applied: every app healthy"), "{d:#}");
    env.wait_release("app1", "applied", "r1").await;

    // hawkBit's app is hawkBit's: a local target that changes it is refused.
    let out = env.apply(&target(json!({"app1": app(&image, "local", "true")})));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("app app1 was deployed by hawkBit"), "{err}");
    let status = ok(&env.cli(&["status"]));
    assert!(
        status.contains(&format!("hawkBit {} as {dev}", gb.url)) && status.contains("apps app1"),
        "{status}"
    );

    // The app holds its lock: the next release waits, and says so.
    let c = env.container_of("app1", "main");
    ok(&env.exec(&c, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    let r2 = app1_release(&dir, "1.0.1", &image, "r2", "true");
    gb.deploy(&r2, dev);
    let d = gb
        .wait(dev, "waiting for the lock", |d| {
            log_has(d, "waiting for lock: app1/main")
        })
        .await;
    assert_eq!(d["last_state"], "Running", "{d:#}");
    assert!(log_has(&d, "downloading"), "{d:#}");
    assert_eq!(
        env.container_of("app1", "main"),
        c,
        "nothing moved under the lock"
    );
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    gb.wait(dev, "1.0.1 finished", |d| {
        d["last_state"] == "Finished" && d["sw_version"] == "1.0.1"
    })
    .await;
    env.wait_release("app1", "applied", "r2").await;

    // A release that never becomes healthy is rolled back and reported as
    // a failure; gooseBit keeps the version that runs.
    let r3 = app1_release(&dir, "1.0.2", &image, "r3", "false");
    gb.deploy(&r3, dev);
    let d = gb
        .wait(dev, "1.0.2 failed", |d| d["last_state"] == "Error")
        .await;
    assert!(log_has(&d, "rolled back to r2"), "{d:#}");
    assert_eq!(d["sw_version"], "1.0.1", "{d:#}");
    let st = env.wait_release("app1", "failed", "r3").await;
    assert_eq!(st["rolled_back_to"], "r2", "{st}");
}

#[tokio::test]
async fn images_and_compose_files_deploy_without_a_registry_and_a_bad_release_changes_nothing() {
    let mut env = Env::with_docker();
    let gb = GooseBit::start(&env);
    let busybox = env.busybox_image();
    let dev = "hf-hawkbit-2";
    let dir = env.dir.join("swu");
    std::fs::create_dir_all(&dir).unwrap();
    // An image no registry has: only the .swu carries it.
    let image = "hf-air/app:1";
    ok(&env.docker(&["tag", &busybox, image]));
    let tar = dir.join("app.tar");
    ok(&env.docker(&["save", "-o", &tar.display().to_string(), image]));
    ok(&env.docker(&["rmi", image]));
    let r1 = swu(
        &dir,
        "2.0.0",
        &target(json!({"air": app(image, "a1", "true")})),
        &[&tar],
    );

    // Half of it is there already, as an interrupted download leaves it
    // (the part, and the journal naming its action): the download resumes
    // from there.
    let id = gb.deploy(&r1, dev);
    let bytes = std::fs::read(&r1).unwrap();
    let sha1 = String::from_utf8(Command::new("sha1sum").arg(&r1).output().unwrap().stdout)
        .unwrap()[..40]
        .to_owned();
    let hb = env.state().join("hawkbit");
    std::fs::create_dir_all(&hb).unwrap();
    std::fs::set_permissions(&hb, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(hb.join(format!("{sha1}.part")), &bytes[..bytes.len() / 2]).unwrap();
    let journal = json!({"action": {"id": id, "hash": sha1, "version": "2.0.0"}});
    std::fs::write(hb.join("journal.json"), journal.to_string()).unwrap();

    start(&mut env, &gb, dev, "").await;
    gb.wait(dev, "2.0.0 finished", |d| {
        d["last_state"] == "Finished" && d["sw_version"] == "2.0.0"
    })
    .await;
    env.wait_release("air", "applied", "a1").await;
    assert!(
        env.log()
            .contains(&format!("resuming at byte {}", bytes.len() / 2)),
        "{}",
        env.log()
    );
    ok(&env.docker(&["image", "inspect", image]));

    // A compose file as its author writes it, for app web: the deployment
    // is all hawkBit runs here, so air (hawkBit's too) leaves.
    let compose = dir.join("docker-compose.yml");
    std::fs::write(
        &compose,
        format!(
            "services:\n  main:\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.2; done\"]\n    stop_grace_period: 2s\n"
        ),
    )
    .unwrap();
    let r2 = dir.join("r-2.0.1.swu");
    ok(&Command::new("python3")
        .arg(format!("{REPO}/scripts/make-swu.py"))
        .arg(&r2)
        .args(["--version", "2.0.1", "--app", "web", "--compose"])
        .arg(&compose)
        .output()
        .unwrap());
    gb.deploy(&r2, dev);
    gb.wait(dev, "2.0.1 finished", |d| {
        d["last_state"] == "Finished" && d["sw_version"] == "2.0.1"
    })
    .await;
    let web = env.wait_app("web", "applied").await;
    assert_eq!(web["release"], "2.0.1", "{web}");
    let apps = env.apps().await;
    assert!(apps.get("air").is_none(), "{apps}");

    // A release whose target does not parse: failure, and what runs stays.
    let mut bad = target(json!({"web": app(image, "a2", "true")}));
    bad["apps"]["web"]["services"]["main"]["imagee"] = json!("typo");
    let r3 = swu(&dir, "2.0.2", &bad, &[]);
    gb.deploy(&r3, dev);
    let d = gb
        .wait(dev, "2.0.2 failed", |d| d["last_state"] == "Error")
        .await;
    assert!(log_has(&d, "rejected"), "{d:#}");
    assert!(log_has(&d, "imagee"), "{d:#}");
    assert_eq!(d["sw_version"], "2.0.1", "{d:#}");
    let apps = env.apps().await;
    assert_eq!(apps["web"]["release"], "2.0.1", "{apps}");
    assert_eq!(apps["web"]["state"], "applied", "{apps}");
}
