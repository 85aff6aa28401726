//! Container updates through a real dockerd and a real registry: first
//! deploy, an update held back by a lock taken inside a container, the
//! strategies, engine restarts, bad targets.

mod common;

use std::time::Duration;

use common::engine::{service, target};
use common::{ok, Env};
use futures_util::StreamExt;
use serde_json::json;

async fn env_with_registry() -> (Env, String) {
    let mut env = Env::with_docker();
    let reg = env.registry();
    env.start_daemon().await;
    (env, reg)
}

#[tokio::test]
async fn update_waits_for_a_lock_in_the_other_service_then_applies_at_once() {
    let (env, reg) = env_with_registry().await;
    let v1 = env.push(&reg, "app1:1");
    let v2 = env.push(&reg, "app1:2");
    let mut worker = service(&v1);
    worker["depends_on"] = json!(["main"]);
    let t1 = target(
        json!({"app1": {"release": "r1", "services": {"main": service(&v1), "worker": worker}}}),
    );

    // Pull progress is published while downloading.
    let conn = env.conn().await;
    let proxy = holdfast::dbus::Supervisor1Proxy::new(&conn).await.unwrap();
    let mut changes = proxy.receive_apps_changed().await;
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(c) = changes.next().await {
            let v: serde_json::Value = serde_json::from_str(&c.get().await.unwrap()).unwrap();
            let done = v["app1"]["state"] == "applied";
            seen.push(v);
            if done {
                break;
            }
        }
        seen
    });
    let out = ok(&env.apply(&t1));
    assert!(out.contains("app1 release r1 (2 services)"), "{out}");
    env.wait_app("app1", "applied").await;
    let seen = tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .unwrap()
        .unwrap();
    assert!(
        seen.iter()
            .any(|v| v["app1"]["state"] == "downloading" && v["app1"]["images"][&v1].is_number()),
        "no download progress published: {seen:?}"
    );
    // A target in force: a logind delay inhibitor for the graceful stop.
    let want = (
        "shutdown".to_string(),
        "stop app containers gracefully".to_string(),
        "delay".to_string(),
    );
    let start = std::time::Instant::now();
    while !env.holdfast_inhibitors().await.contains(&want) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no delay inhibitor: {:?}",
            env.holdfast_inhibitors().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let main = env.container_of("app1", "main");
    let old_worker = env.container_of("app1", "worker");
    let envs = ok(&env.exec(&main, "env"));
    for want in [
        "BALENA_APP_LOCK_PATH=/tmp/balena/updates.lock",
        "RESIN_APP_LOCK_PATH=/tmp/balena/updates.lock",
        "BALENA_SERVICE_HANDOVER_COMPLETE_PATH=/tmp/balena/handover-complete",
        "BALENA_APP_NAME=app1",
        "BALENA_SERVICE_NAME=main",
        "BALENA_APP_RELEASE=r1",
    ] {
        assert!(envs.contains(want), "{want} missing from\n{envs}");
    }
    let labels = ok(&env.docker(&["inspect", "-f", "{{json .Config.Labels}}", &main]));
    assert!(
        labels.contains("\"io.holdfast.service\":\"main\"")
            && labels.contains("io.holdfast.config-hash"),
        "{labels}"
    );

    // The app locks from inside `main`; the update changes only `worker`.
    ok(&env.exec(&main, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    let mut worker2 = service(&v2);
    worker2["depends_on"] = json!(["main"]);
    let t2 = target(
        json!({"app1": {"release": "r2", "services": {"main": service(&v1), "worker": worker2}}}),
    );
    ok(&env.apply(&t2));
    let st = env.wait_app("app1", "waiting").await;
    assert_eq!(st["blocked_by"], json!(["lock:app1/main"]), "{st}");
    assert_eq!(st["release"], "r2");
    // Downloaded while locked; nothing killed.
    ok(&env.docker(&["image", "inspect", &v2]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.container_of("app1", "worker"), old_worker);
    assert_eq!(env.container_of("app1", "main"), main);
    // The app cannot take the lock of the other service either: holdfast
    // has not taken anything while waiting.
    assert!(env.cli(&["locks", "--json"]).status.success());

    ok(&env.exec(&main, "rm /tmp/balena/updates.lock"));
    env.wait_release("app1", "applied", "r2").await;
    let new_worker = env.container_of("app1", "worker");
    assert_ne!(new_worker, old_worker);
    assert_eq!(
        env.container_of("app1", "main"),
        main,
        "unchanged service keeps its container"
    );
    assert_eq!(
        env.containers("app1").len(),
        2,
        "old worker removed: {:?}",
        env.containers("app1")
    );
    assert!(env
        .log()
        .contains("locks of app app1 cleared; resuming its update"));
    // Own locks are gone; the app can lock again.
    env.wait_locks(&[]).await;
    ok(&env.exec(&main, "set -C; : > /tmp/balena/updates.lock"));

    // Status survives in the state dir.
    let saved = std::fs::read_to_string(env.state().join("apps.json")).unwrap();
    assert!(saved.contains("\"applied\""), "{saved}");
}

fn with_strategy(image: &str, strategy: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = service(image);
    s["labels"] = json!({"io.balena.update.strategy": strategy});
    if let Some(map) = extra.as_object() {
        for (k, v) in map {
            s["labels"][k] = v.clone();
        }
    }
    s
}

#[tokio::test]
async fn strategies_kill_then_download_and_delete_then_download() {
    let (env, reg) = env_with_registry().await;
    let v1 = env.push(&reg, "s:1");
    let v2 = env.push(&reg, "s:2");
    let v3 = env.push(&reg, "s:3");
    let v4 = env.push(&reg, "s:4");
    let apps = |k: &str, d: &str, rel: &str| {
        target(json!({
            "k": {"release": rel, "services": {"main": with_strategy(k, "kill-then-download", json!({}))}},
            "d": {"release": rel, "services": {"main": with_strategy(d, "delete-then-download", json!({}))}},
        }))
    };
    ok(&env.apply(&apps(&v1, &v2, "r1")));
    env.wait_app("k", "applied").await;
    env.wait_app("d", "applied").await;
    let (k1, d1) = (env.container_of("k", "main"), env.container_of("d", "main"));

    // A lock holds back kill-then-download too; nothing is pulled meanwhile.
    ok(&env.exec(&k1, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["k/main"]).await;
    ok(&env.apply(&apps(&v3, &v4, "r2")));
    env.wait_release("d", "applied", "r2").await;
    let st = env.wait_app("k", "waiting").await;
    assert_eq!(st["blocked_by"], json!(["lock:k/main"]));
    ok(&env.exec(&k1, "rm /tmp/balena/updates.lock"));
    env.wait_release("k", "applied", "r2").await;
    assert_ne!(env.container_of("k", "main"), k1);
    assert_ne!(env.container_of("d", "main"), d1);
    // delete-then-download removed the old image before pulling the new one.
    assert!(
        !env.docker(&["image", "inspect", &v2]).status.success(),
        "old image of d kept"
    );
    let log = env.log();
    for (app, image) in [("k", &v3), ("d", &v4)] {
        let stop = log
            .find(&format!("stopping {app}/main"))
            .expect("stop logged");
        let pull = log
            .rfind(&format!("pulling {image} app={app}"))
            .expect("pull logged");
        assert!(stop < pull, "{app}: the pull came before the stop");
    }
}

#[tokio::test]
async fn hand_over_starts_the_new_container_beside_the_old_one() {
    let (env, reg) = env_with_registry().await;
    let v1 = env.push(&reg, "h:1");
    let v2 = env.push(&reg, "h:2");
    let timeout = json!({"io.balena.update.handover-timeout": "60000"});
    let t = |img: &str, rel: &str| {
        target(
            json!({"h": {"release": rel, "services": {"main": with_strategy(img, "hand-over", timeout.clone())}}}),
        )
    };
    ok(&env.apply(&t(&v1, "r1")));
    env.wait_app("h", "applied").await;
    let old = env.container_of("h", "main");
    ok(&env.apply(&t(&v2, "r2")));
    // Both run until the new one signals it has taken over.
    let start = std::time::Instant::now();
    let new = loop {
        let running: Vec<_> = env
            .containers("h")
            .into_iter()
            .filter(|c| c.2 == "running")
            .collect();
        if running.len() == 2 {
            break running.into_iter().find(|c| c.1 != old).unwrap().1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never saw both containers running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(env.apps().await["h"]["state"], "applying");
    ok(&env.exec(&new, "touch /tmp/balena/handover-complete"));
    env.wait_release("h", "applied", "r2").await;
    assert_eq!(env.container_of("h", "main"), new);
    assert_eq!(env.containers("h").len(), 1);

    // The legacy signal and the timeout both end a hand-over too.
    let short = json!({"io.balena.update.handover-timeout": "1500"});
    let t3 = target(
        json!({"h": {"release": "r3", "services": {"main": with_strategy(&v1, "hand-over", short)}}}),
    );
    let began = std::time::Instant::now();
    ok(&env.apply(&t3));
    env.wait_release("h", "applied", "r3").await;
    assert!(
        began.elapsed() >= Duration::from_millis(1500),
        "hand-over did not wait for its timeout"
    );
    assert!(env.log().contains("hand-over of h/main timed out"));
}

#[tokio::test]
async fn engine_restart_and_engine_absence_do_not_stop_holdfast() {
    let (env, reg) = env_with_registry().await;
    let v1 = env.push(&reg, "e:1");
    let v2 = env.push(&reg, "e:2");
    let t = |img: &str, rel: &str| {
        target(json!({"e": {"release": rel, "services": {"main": service(img)}}}))
    };
    ok(&env.apply(&t(&v1, "r1")));
    env.wait_app("e", "applied").await;
    let c1 = env.container_of("e", "main");
    ok(&env.exec(&c1, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["e/main"]).await;
    ok(&env.apply(&t(&v2, "r2")));
    env.wait_app("e", "waiting").await;

    // The engine goes away mid-update and comes back (the restart policy
    // brings the old container back; the lock file is on the host).
    env.restart_docker();
    ok(&env.exec(&c1, "rm /tmp/balena/updates.lock"));
    env.wait_release("e", "applied", "r2").await;
    assert_ne!(env.container_of("e", "main"), c1);

    // No engine at all: reported, retried, resumed.
    let pid = std::fs::read_to_string(env.dir.join("docker/docker.pid")).unwrap();
    ok(&env.sh(&format!(
        "kill {}; while kill -0 {} 2>/dev/null; do sleep 0.05; done",
        pid.trim(),
        pid.trim()
    )));
    ok(&env.apply(&t(&v1, "r3")));
    let st = env.wait_app("e", "waiting").await;
    assert_eq!(st["blocked_by"], json!(["engine"]));
    let status = ok(&env.cli(&["status"]));
    assert!(status.contains("engine: unavailable"), "{status}");
    env.restart_docker();
    env.wait_release("e", "applied", "r3").await;
    assert_eq!(env.containers("e").len(), 1);
    assert!(env.log().contains("container engine available"));
}

#[tokio::test]
async fn bad_targets_are_rejected_and_the_last_good_one_stays() {
    let (mut env, reg) = env_with_registry().await;
    let v1 = env.push(&reg, "b:1");
    let good = target(json!({"b": {"release": "r1", "services": {"main": service(&v1)}}}));
    ok(&env.apply(&good));
    env.wait_app("b", "applied").await;
    let c = env.container_of("b", "main");

    let mut bad = good.clone();
    bad["apps"]["b"]["services"]["main"]["imgae"] = json!("x");
    let out = env.apply(&bad);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apps.b.services.main.imgae: unknown field `imgae`") && err.contains("line "),
        "{err}"
    );
    let mut bad = good.clone();
    bad["apps"]["b"]["services"]["main"]["depends_on"] = json!(["ghost"]);
    let err = String::from_utf8_lossy(&env.apply(&bad).stderr).into_owned();
    assert!(err.contains("ghost is not a service of app b"), "{err}");

    // The target file: garbage written in place is rejected (logged) and
    // the running target stays; a good file renamed over it applies.
    let file = env.target_file();
    std::fs::write(&file, "{\"version\": 1, \"apps\": {").unwrap();
    let start = std::time::Instant::now();
    while !env.log().contains("target file rejected") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "bad file not reported:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.apps().await["b"]["state"], "applied");
    assert_eq!(env.container_of("b", "main"), c);
    let mut next = good.clone();
    next["apps"]["b"]["release"] = json!("r2");
    next["apps"]["b"]["services"]["main"]["environment"] = json!({"X": "1"});
    let tmp = env.state().join(".new-target");
    std::fs::write(&tmp, serde_json::to_vec(&next).unwrap()).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    env.wait_app("b", "applied").await;
    let start = std::time::Instant::now();
    while env.apps().await["b"]["release"] != "r2" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "renamed target not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.wait_app("b", "applied").await;
    let c2 = env.container_of("b", "main");
    assert!(ok(&env.exec(&c2, "env")).contains("X=1"));

    // A restart with a broken target file keeps the last good target and
    // does not touch the containers.
    std::fs::write(&file, "nope").unwrap();
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    env.start_daemon().await;
    env.wait_app("b", "applied").await;
    assert_eq!(env.container_of("b", "main"), c2);
}
