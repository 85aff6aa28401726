//! Multi-container apps as their authors write them, on a real dockerd:
//! app networks where services find each other by name, app volumes that
//! outlive releases and never mix between apps, healthchecks and
//! dependency conditions, and the rollback of a release that does not come
//! up healthy, under the same lock rules.

mod common;

use std::time::Duration;

use common::engine::target;
use common::{free_port, ok, Env};
use serde_json::{json, Value};

/// A private dockerd, holdfastd with `extra` config lines; the busybox image.
async fn env_with(extra: &str) -> (Env, String) {
    let mut env = Env::with_docker();
    env.write_config(extra);
    env.start_daemon().await;
    let image = env.busybox_image();
    (env, image)
}

/// A busybox service running `script` (stops at once on SIGTERM).
fn sh(image: &str, script: &str) -> Value {
    json!({
        "image": image,
        "command": ["sh", "-c", format!("trap 'exit 0' TERM; {script}")],
        "stop_timeout": 2,
    })
}

fn inspect(env: &Env, what: &str, name: &str, format: &str) -> String {
    ok(&env.docker(&[what, "inspect", "--format", format, name]))
        .trim()
        .to_owned()
}

/// `db` serves index.html from its volume, healthy once it answers; `web`
/// starts once `db` is healthy and serves what it fetched from `http://db/`;
/// `proxy` publishes what it fetched from `http://web/`. As its author
/// writes it: a compose file.
fn three_services(image: &str, web_tag: &str, port: u16) -> String {
    format!(
        r#"name: shop
x-stop: &stop
  stop_grace_period: 2s
services:
  db:
    <<: *stop
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; [ -f /data/index.html ] || echo from-the-volume > /data/index.html; httpd -f -p 80 -h /data & wait"]
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost/"]
      interval: 200ms
      retries: 50
  web:
    <<: *stop
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www; until wget -q -O /www/index.html http://db/; do sleep 0.2; done; echo $${{WEB_TAG}} >> /www/index.html; httpd -f -p 80 -h /www & wait"]
    environment:
      WEB_TAG: {web_tag}
    depends_on:
      db:
        condition: service_healthy
  proxy:
    <<: *stop
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www; until wget -q -O /www/index.html http://web/; do sleep 0.2; done; httpd -f -p 80 -h /www & wait"]
    depends_on: [web]
    ports:
      - "127.0.0.1:{port}:80"
volumes:
  data: {{}}
"#
    )
}

/// `holdfast apply` of a compose file for app `shop`.
fn apply_compose(env: &Env, yaml: &str, release: &str) {
    let path = env.dir.join(format!("shop-{release}.yml"));
    std::fs::write(&path, yaml).unwrap();
    ok(&env.cli(&[
        "apply",
        path.to_str().unwrap(),
        "--app",
        "shop",
        "--release",
        release,
    ]));
}

async fn fetch(port: u16, want: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = std::process::Command::new("wget")
            .args(["-q", "-O", "-", &format!("http://127.0.0.1:{port}/")])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if body.contains(want) {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "127.0.0.1:{port} never served {want:?}; last {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_compose_app_of_three_services_finds_itself_by_name_and_keeps_its_data() {
    let (env, image) = env_with("").await;
    let port = free_port();
    apply_compose(&env, &three_services(&image, "web-v1", port), "r1");
    let st = env.wait_release("shop", "applied", "r1").await;
    assert_eq!(st["services"]["db"]["health"], "healthy", "{st}");
    let body = fetch(port, "web-v1").await;
    assert!(body.contains("from-the-volume"), "{body}");
    // The app's own network and volume, labelled for it.
    assert_eq!(
        inspect(
            &env,
            "network",
            "shop_default",
            "{{index .Labels \"io.holdfast.app\"}}"
        ),
        "shop"
    );
    assert_eq!(
        inspect(
            &env,
            "volume",
            "shop_data",
            "{{index .Labels \"io.holdfast.app\"}}"
        ),
        "shop"
    );
    // Data written into the volume survives a new web.
    let db = env.container_of("shop", "db");
    ok(&env.exec(&db, "echo written-later >> /data/index.html"));
    apply_compose(&env, &three_services(&image, "web-v2", port), "r2");
    env.wait_release("shop", "applied", "r2").await;
    assert_eq!(env.container_of("shop", "db"), db, "db was not to change");
    // The proxy keeps what it fetched first; web serves the new release.
    let web = env.container_of("shop", "web");
    let served = ok(&env.exec(&web, "cat /www/index.html"));
    assert!(
        served.contains("written-later") && served.contains("web-v2"),
        "{served}"
    );
}

#[tokio::test]
async fn two_apps_with_a_volume_and_a_network_of_the_same_name_never_share_them() {
    let (env, image) = env_with("").await;
    let app = |rel: &str| {
        let mut s = sh(&image, "while :; do sleep 0.2; done");
        s["volumes"] = json!(["data:/data"]);
        let mut peer = sh(&image, "while :; do sleep 0.2; done");
        peer["networks"] = json!({"back": {"aliases": ["other-name"]}});
        json!({"release": rel, "services": {"main": s, "peer": peer},
               "networks": {"back": {"internal": true}}})
    };
    let mut a = app("r1");
    a["services"]["main"]["networks"] = json!(["default", "back"]);
    let mut b = app("r1");
    b["services"]["main"]["networks"] = json!(["default", "back"]);
    ok(&env.apply(&target(json!({"a": a, "b": b}))));
    env.wait_app("a", "applied").await;
    env.wait_app("b", "applied").await;
    let (a_main, b_main) = (env.container_of("a", "main"), env.container_of("b", "main"));
    ok(&env.exec(&a_main, "echo secret-of-a > /data/f"));
    let seen = env.exec(&b_main, "cat /data/f 2>&1");
    assert!(!seen.status.success(), "b sees a's data");
    for app in ["a", "b"] {
        for net in ["default", "back"] {
            let name = format!("{app}_{net}");
            assert_eq!(
                inspect(
                    &env,
                    "network",
                    &name,
                    "{{index .Labels \"io.holdfast.app\"}}"
                ),
                app
            );
        }
        assert_eq!(
            inspect(&env, "network", &format!("{app}_back"), "{{.Internal}}"),
            "true"
        );
    }
    // Within an app, names (and aliases) resolve to the app's own
    // containers; each container is on its app's networks only. (Packet
    // isolation between bridges is the engine's iptables work, off in
    // these private engines.)
    ok(&env.exec(&a_main, "ping -c1 -W2 peer && ping -c1 -W2 other-name"));
    let ip_of = |app: &str| {
        inspect(
            &env,
            "container",
            &env.container_of(app, "peer"),
            &format!("{{{{(index .NetworkSettings.Networks \"{app}_back\").IPAddress}}}}"),
        )
    };
    let (a_ip, b_ip) = (ip_of("a"), ip_of("b"));
    assert_ne!(a_ip, b_ip);
    let resolved = ok(&env.exec(&a_main, "nslookup peer 127.0.0.11 | tail -n +3"));
    assert!(
        resolved.contains(&a_ip) && !resolved.contains(&b_ip),
        "{resolved}"
    );
    let nets = |c: &str| {
        inspect(
            &env,
            "container",
            c,
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        )
    };
    assert_eq!(nets(&a_main), "a_back a_default");
    assert_eq!(nets(&b_main), "b_back b_default");
}

#[tokio::test]
async fn an_app_that_leaves_keeps_its_volume_until_it_is_pruned() {
    let (env, image) = env_with("").await;
    let mut s = sh(&image, "while :; do sleep 0.2; done");
    s["volumes"] = json!(["data:/data"]);
    let keep = sh(&image, "while :; do sleep 0.2; done");
    ok(&env.apply(&target(json!({
        "gone": {"release": "r1", "services": {"main": s}},
        "stays": {"release": "r1", "services": {"main": keep}},
    }))));
    env.wait_app("gone", "applied").await;
    ok(&env.exec(&env.container_of("gone", "main"), "echo precious > /data/f"));
    // Leaving: containers and network go, the volume stays, shown orphaned.
    let stays = target(json!({"stays": {"release": "r1", "services": {"main": keep}}}));
    ok(&env.apply(&stays));
    let start = std::time::Instant::now();
    let status = loop {
        let st: Value = serde_json::from_str(&ok(&env.cli(&["status", "--json"]))).unwrap();
        if st["orphaned_volumes"]["gone"] == json!(["gone_data"])
            && st["apps"].get("gone").is_none()
        {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status["apps"].get("gone").is_none(), "{status}");
    assert!(env.containers("gone").is_empty());
    assert!(!env
        .docker(&["network", "inspect", "gone_default"])
        .status
        .success());
    let human = ok(&env.cli(&["status"]));
    assert!(
        human.contains("orphaned volumes of gone: gone_data"),
        "{human}"
    );
    // An app still in the target cannot be pruned; a lock of the app holds
    // the prune back; then it goes.
    let refused = env.cli(&["volumes", "prune", "stays"]);
    assert!(!refused.status.success());
    env.service_dir("gone/main");
    ok(&env.sh("set -C; : > $L/gone/main/updates.lock"));
    env.wait_locks(&["gone/main"]).await;
    let locked = env.cli(&["volumes", "prune", "gone"]);
    assert_eq!(locked.status.code(), Some(75), "{locked:?}");
    assert_eq!(
        inspect(&env, "volume", "gone_data", "{{.Name}}"),
        "gone_data"
    );
    ok(&env.sh("rm $L/gone/main/updates.lock"));
    env.wait_locks(&[]).await;
    let out = ok(&env.cli(&["volumes", "prune", "gone"]));
    assert!(out.contains("gone_data"), "{out}");
    assert!(!env
        .docker(&["volume", "inspect", "gone_data"])
        .status
        .success());
    let st: Value = serde_json::from_str(&ok(&env.cli(&["status", "--json"]))).unwrap();
    assert!(
        st.get("orphaned_volumes")
            .is_none_or(|o| o.get("gone").is_none()),
        "{st}"
    );
}

#[tokio::test]
async fn remove_volumes_with_app_removes_them_when_the_app_leaves() {
    let (env, image) = env_with("[update]\nremove_volumes_with_app = true\n").await;
    let mut s = sh(&image, "while :; do sleep 0.2; done");
    s["volumes"] = json!(["data:/data"]);
    ok(&env.apply(&target(
        json!({"a": {"release": "r1", "services": {"main": s}}}),
    )));
    env.wait_app("a", "applied").await;
    ok(&env.apply(&target(json!({}))));
    let start = std::time::Instant::now();
    while env
        .docker(&["volume", "inspect", "a_data"])
        .status
        .success()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "a_data stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn leftover_networks_of_gone_apps_are_removed_and_others_never_touched() {
    let mut env = Env::with_docker();
    env.write_config("");
    ok(&env.docker(&[
        "network",
        "create",
        "--label",
        "io.holdfast.app=ghost",
        "ghost_default",
    ]));
    ok(&env.docker(&["network", "create", "someone_elses"]));
    env.start_daemon().await;
    let image = env.busybox_image();
    ok(&env.apply(&target(json!({"a": {"release": "r1", "services": {"main": sh(&image, "while :; do sleep 0.2; done")}}}))));
    env.wait_app("a", "applied").await;
    let start = std::time::Instant::now();
    while env
        .docker(&["network", "inspect", "ghost_default"])
        .status
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ghost_default stayed\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok(&env.docker(&["network", "inspect", "someone_elses"]));
}

#[tokio::test]
async fn a_changed_network_definition_replaces_the_services_on_it() {
    let (env, image) = env_with("").await;
    let app = |internal: bool| {
        json!({"release": "r1", "networks": {"default": {"internal": internal}},
               "services": {"main": sh(&image, "while :; do sleep 0.2; done"),
                            "off": {"image": image, "command": ["sleep", "3600"], "network_mode": "none"}}})
    };
    ok(&env.apply(&target(json!({"a": app(false)}))));
    env.wait_app("a", "applied").await;
    let (main, off) = (env.container_of("a", "main"), env.container_of("a", "off"));
    ok(&env.apply(&target(json!({"a": app(true)}))));
    let start = std::time::Instant::now();
    let internal = || {
        let out = env.docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Internal}}",
            "a_default",
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    };
    while !internal() {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", env.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.wait_app("a", "applied").await;
    assert_ne!(env.container_of("a", "main"), main);
    assert_eq!(
        env.container_of("a", "off"),
        off,
        "off is on no app network"
    );
}

#[tokio::test]
async fn an_unhealthy_release_is_rolled_back_under_the_same_lock_rules() {
    let (env, image) = env_with("[update]\nhealthy_timeout = \"20s\"\n").await;
    let healthy = |rel: &str, check: &str, script: &str| {
        let mut s = sh(&image, script);
        s["healthcheck"] = json!({"test": ["CMD-SHELL", check], "interval": "200ms", "retries": 5});
        s["environment"] = json!({"R": rel});
        json!({"release": rel, "services": {"main": s}})
    };
    let other =
        json!({"release": "o1", "services": {"main": sh(&image, "while :; do sleep 0.2; done")}});
    ok(&env.apply(&target(
        json!({"app1": healthy("r1", "true", "while :; do sleep 0.2; done"), "app2": other}),
    )));
    let st = env.wait_release("app1", "applied", "r1").await;
    assert_eq!(st["services"]["main"]["health"], "healthy", "{st}");
    env.wait_app("app2", "applied").await;
    let r1 = env.container_of("app1", "main");
    // app2 holds its lock throughout: nothing of app2 may change.
    let app2 = env.container_of("app2", "main");
    ok(&env.exec(&app2, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app2/main"]).await;

    // r2 never becomes healthy, and takes app1's lock once it runs: the
    // rollback waits for that lock like any update.
    let r2 = healthy(
        "r2",
        "false",
        "until (set -C; : > /tmp/balena/updates.lock) 2>/dev/null; do sleep 0.05; done; while :; do sleep 0.2; done",
    );
    ok(&env.apply(&target(json!({"app1": r2, "app2": other}))));
    let waiting = env.wait_release("app1", "waiting", "r2").await;
    assert_eq!(
        waiting["blocked_by"],
        json!(["lock:app1/main"]),
        "{waiting}"
    );
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    let failed = env.wait_release("app1", "failed", "r2").await;
    assert_eq!(failed["rolled_back_to"], "r1", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("unhealthy"),
        "{failed}"
    );
    assert!(failed.get("retry_at").is_none(), "not retried: {failed}");
    let back = env.container_of("app1", "main");
    assert_eq!(
        inspect(
            &env,
            "container",
            &back,
            "{{range .Config.Env}}{{println .}}{{end}}"
        )
        .lines()
        .find(|l| l.starts_with("R=")),
        Some("R=r1")
    );
    let _ = r1;
    assert_eq!(env.container_of("app2", "main"), app2, "app2 was locked");
    assert!(env.locks().join("app2/main/updates.lock").exists());
    // Not retried on its own; a forced update tries r2 again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.apps().await["app1"]["state"], "failed");
}

#[tokio::test]
async fn a_hand_over_with_a_healthcheck_waits_for_the_new_one_to_be_healthy() {
    let (env, image) = env_with("").await;
    let svc = |rel: &str| {
        let mut s = sh(&image, "while :; do sleep 0.2; done");
        s["labels"] = json!({"io.balena.update.strategy": "hand-over",
                             "io.balena.update.handover-timeout": "500"});
        s["healthcheck"] = json!({"test": ["CMD-SHELL", "[ -f /tmp/balena/ready-$R ]"],
                                  "interval": "200ms", "retries": 1000});
        s["environment"] = json!({"R": rel});
        json!({"release": rel, "services": {"main": s}})
    };
    env.service_dir("app1/main");
    ok(&env.sh(": > $L/app1/main/ready-r1"));
    ok(&env.apply(&target(json!({"app1": svc("r1")}))));
    env.wait_release("app1", "applied", "r1").await;
    let old = env.container_of("app1", "main");
    ok(&env.apply(&target(json!({"app1": svc("r2")}))));
    // The new one runs, not healthy yet: the old one keeps running.
    let start = std::time::Instant::now();
    while env
        .containers("app1")
        .iter()
        .filter(|c| c.2 == "running")
        .count()
        < 2
    {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", env.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running: Vec<_> = env
        .containers("app1")
        .into_iter()
        .filter(|c| c.2 == "running")
        .map(|c| c.1)
        .collect();
    assert!(
        running.contains(&old),
        "the old one stopped before the new one was healthy"
    );
    ok(&env.sh(": > $L/app1/main/ready-r2"));
    env.wait_release("app1", "applied", "r2").await;
    assert_ne!(env.container_of("app1", "main"), old);
}

#[tokio::test]
async fn a_crash_looping_release_without_rollback_stays_failed_until_forced() {
    let (env, image) = env_with("[update]\nrollback = false\nhealthy_timeout = \"20s\"\n").await;
    let app = |rel: &str, script: &str| {
        let mut s = sh(&image, script);
        s["environment"] = json!({"R": rel});
        json!({"release": rel, "services": {"main": s}})
    };
    ok(&env.apply(&target(
        json!({"app1": app("r1", "while :; do sleep 0.2; done")}),
    )));
    env.wait_release("app1", "applied", "r1").await;
    // Exits at once, restarted by the engine again and again.
    ok(&env.apply(&target(json!({"app1": app("r2", "sleep 0.3; exit 3")}))));
    let failed = env.wait_release("app1", "failed", "r2").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("crash-looping") || error.contains("exited with code 3"),
        "{failed}"
    );
    assert!(failed.get("rolled_back_to").is_none(), "{failed}");
    assert!(failed.get("retry_at").is_none(), "{failed}");
    assert_eq!(failed["attempts"], 1, "{failed}");
    // A forced update tries it again (and it fails again).
    ok(&env.cli(&["update", "--force"]));
    let start = std::time::Instant::now();
    loop {
        let st = env.apps().await;
        let judged = env
            .log()
            .matches("release of app app1 is not healthy")
            .count();
        if st["app1"]["state"] == "failed" && judged == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{st}\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_volume_defined_anew_is_refused_and_nothing_changes() {
    let (env, image) = env_with("").await;
    let app = |opts: Value| {
        let mut s = sh(&image, "while :; do sleep 0.2; done");
        s["volumes"] = json!(["data:/data"]);
        json!({"release": "r1", "services": {"main": s},
               "volumes": {"data": {"driver_opts": opts}}})
    };
    ok(&env.apply(&target(json!({"a": app(json!({}))}))));
    env.wait_app("a", "applied").await;
    let main = env.container_of("a", "main");
    let mut changed = app(json!({"type": "tmpfs", "device": "tmpfs"}));
    changed["release"] = json!("r2");
    ok(&env.apply(&target(json!({"a": changed}))));
    let failed = env.wait_release("a", "failed", "r2").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("a_data") && error.contains("tmpfs"),
        "{failed}"
    );
    assert_eq!(env.container_of("a", "main"), main, "nothing was to change");
    assert_eq!(inspect(&env, "volume", "a_data", "{{.Options}}"), "map[]");
}

#[tokio::test]
async fn a_service_waits_for_a_one_shot_dependency_to_complete() {
    let (env, image) = env_with("").await;
    let mut migrate = sh(&image, "sleep 1; echo migrated > /data/state");
    migrate["restart"] = json!("no");
    migrate["volumes"] = json!(["data:/data"]);
    // Fails (and would crash-loop) if it started before the migration.
    let mut app = sh(
        &image,
        "[ -f /data/state ] || exit 9; while :; do sleep 0.2; done",
    );
    app["volumes"] = json!(["data:/data"]);
    app["depends_on"] = json!({"migrate": {"condition": "service_completed_successfully"}});
    ok(&env.apply(&target(
        json!({"a": {"release": "r1", "services": {"migrate": migrate, "app": app}}}),
    )));
    let st = env.wait_release("a", "applied", "r1").await;
    assert_eq!(st["services"]["app"]["health"], "running", "{st}");
    assert_eq!(st["services"]["migrate"]["health"], "exited", "{st}");
}
