//! balena's device-API routes on a real engine, through the API socket:
//! one service restarted, stopped and started (and staying stopped), a
//! single-service app through v1, purge, and the state routes.

mod common;

use std::time::Duration;

use common::engine::target;
use common::{ok, Env};
use serde_json::{json, Value};

fn key(env: &Env) -> String {
    std::fs::read_to_string(env.state().join("api-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// curl over the API socket with the device key: (status, body).
fn curl(env: &Env, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(env.dir.join("api.sock"))
        .args(["-X", method])
        .args(["-H", &format!("Authorization: Bearer {}", key(env))]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    cmd.arg(format!("http://localhost{path}"));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A busybox service that stops at once on SIGTERM, running `script` first.
fn sh(image: &str, script: &str) -> Value {
    json!({
        "image": image,
        "command": ["sh", "-c", format!("trap 'exit 0' TERM; {script} while :; do sleep 0.2; done")],
        "network_mode": "none",
        "stop_timeout": 2,
    })
}

/// `name`'s engine state (`running`, `exited`, ...).
fn state_of(env: &Env, id: &str) -> String {
    ok(&env.docker(&["inspect", "-f", "{{.State.Status}}", id]))
        .trim()
        .to_owned()
}

fn started_at(env: &Env, id: &str) -> String {
    ok(&env.docker(&["inspect", "-f", "{{.State.StartedAt}}", id]))
}

/// The one container of `app/service`, running or not.
fn container(env: &Env, app: &str, service: &str) -> String {
    let prefix = format!("{app}_{service}_");
    let all: Vec<_> = env
        .containers(app)
        .into_iter()
        .filter(|c| c.0.starts_with(&prefix))
        .collect();
    assert_eq!(all.len(), 1, "{app}/{service}: {all:?}");
    all[0].1.clone()
}

async fn started(healthy_timeout: &str) -> (Env, String) {
    let mut env = Env::with_docker();
    env.write_config(&format!("update.healthy_timeout = \"{healthy_timeout}\"\n"));
    env.start_daemon().await;
    let image = env.busybox_image();
    (env, image)
}

#[tokio::test]
async fn one_service_is_restarted_stopped_and_started_and_stays_stopped() {
    // A short crash window (healthy_timeout bounds it): a service stopped
    // on request inside it is not a crash.
    let (mut env, image) = started("3s").await;
    // web ignores SIGTERM: a stop kills it, and it exits with 137, which
    // the crash watch would take for a crash.
    let web = json!({"image": image, "command": ["sleep", "1000"], "network_mode": "none", "stop_timeout": 1});
    let t = target(json!({
        "app1": {"release": "r1", "services": {"main": sh(&image, ""), "web": web}},
        "app2": {"release": "s1", "services": {"solo": sh(&image, "")}},
    }));
    ok(&env.apply(&t));
    env.wait_release("app1", "applied", "r1").await;
    env.wait_release("app2", "applied", "s1").await;
    let main = container(&env, "app1", "main");
    let web = container(&env, "app1", "web");

    // stop-service, at once after the apply (inside the crash window).
    let svc = |name: &str, extra: &str| format!(r#"{{"serviceName": "{name}"{extra}}}"#);
    let (code, body) = curl(
        &env,
        "POST",
        "/v2/applications/app1/stop-service",
        Some(&svc("web", "")),
    );
    assert_eq!((code, body.as_str()), (200, "OK"));
    assert_eq!(state_of(&env, &web), "exited");
    assert_eq!(state_of(&env, &main), "running");
    // It stays stopped: past the crash window, through an update check
    // (a pass) and a target that changes another service only.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let st = env.apps().await;
    assert_eq!(st["app1"]["state"], "applied", "a stop is no crash: {st}");
    assert_eq!(curl(&env, "POST", "/v1/update", None).0, 204);
    let mut t2 = t.clone();
    t2["apps"]["app1"]["release"] = json!("r2");
    t2["apps"]["app1"]["services"]["main"]["environment"] = json!({"R": "2"});
    ok(&env.apply(&t2));
    env.wait_release("app1", "applied", "r2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state_of(&env, &web), "exited", "{}", env.log());
    assert_eq!(container(&env, "app1", "web"), web);
    let st = env.apps().await;
    assert_eq!(st["app1"]["state"], "applied", "{st}");
    assert!(st["app1"].get("rolled_back_to").is_none(), "{st}");
    // And through a restart of holdfastd.
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    env.start_daemon().await;
    env.wait_release("app1", "applied", "r2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state_of(&env, &web), "exited", "{}", env.log());
    let main = container(&env, "app1", "main");

    // The state routes show it stopped.
    let (code, body) = curl(&env, "GET", "/v2/applications/state", None);
    assert_eq!(code, 200);
    let v = json_of(&body);
    assert_eq!(v["app1"]["services"]["web"]["status"], "exited", "{v}");
    assert_eq!(v["app1"]["services"]["main"]["status"], "Running", "{v}");
    assert_eq!(v["app1"]["services"]["main"]["release"], "r2", "{v}");
    assert_eq!(v["app1"]["commit"], "r2", "{v}");
    assert_eq!(v["app1"]["appId"], "app1", "{v}");
    assert_eq!(v["app1"]["updateStatus"], "done", "{v}");
    let (code, body) = curl(&env, "GET", "/v2/state/status", None);
    assert_eq!(code, 200);
    let v = json_of(&body);
    assert_eq!(v["status"], "success");
    assert_eq!(v["appState"], "applied");
    assert_eq!(v["overallDownloadProgress"], json!(null));
    let containers = v["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 3, "{v}");
    let web_entry = containers
        .iter()
        .find(|c| c["containerId"] == web.as_str())
        .unwrap();
    assert_eq!(web_entry["status"], "exited");
    assert_eq!(web_entry["serviceName"], "web");
    assert_eq!(web_entry["appName"], "app1");
    assert!(web_entry["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["images"][0]["status"], "Downloaded", "{v}");
    let (code, body) = curl(&env, "GET", "/v2/version", None);
    assert_eq!(code, 200);
    assert_eq!(json_of(&body)["version"], env!("CARGO_PKG_VERSION"));

    // start-service: the same container runs again.
    let (code, body) = curl(
        &env,
        "POST",
        "/v2/applications/app1/start-service",
        Some(&svc("web", "")),
    );
    assert_eq!((code, body.as_str()), (200, "OK"));
    assert_eq!(state_of(&env, &web), "running");
    // restart-service: same container, started anew.
    let before = started_at(&env, &main);
    let (code, _) = curl(
        &env,
        "POST",
        "/v2/applications/app1/restart-service",
        Some(&svc("main", "")),
    );
    assert_eq!(code, 200);
    assert_ne!(started_at(&env, &main), before);
    assert_eq!(container(&env, "app1", "main"), main);

    // What is missing or unknown.
    let (code, body) = curl(
        &env,
        "POST",
        "/v2/applications/app1/stop-service",
        Some("{}"),
    );
    assert_eq!(code, 400);
    assert_eq!(json_of(&body)["message"], "serviceName was not provided");
    let (code, body) = curl(
        &env,
        "POST",
        "/v2/applications/app1/stop-service",
        Some("{nope"),
    );
    assert_eq!(code, 400);
    assert!(json_of(&body)["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON body"));
    assert_eq!(
        curl(
            &env,
            "POST",
            "/v2/applications/app1/stop-service",
            Some(&svc("nope", ""))
        )
        .0,
        404
    );
    assert_eq!(
        curl(
            &env,
            "POST",
            "/v2/applications/ghost/start-service",
            Some(&svc("web", ""))
        )
        .0,
        404
    );

    // A lock of any of the app's services holds restart and stop back;
    // force goes through; start takes no lock.
    ok(&env.exec(&main, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    for action in ["stop", "restart"] {
        let (code, body) = curl(
            &env,
            "POST",
            &format!("/v2/applications/app1/{action}-service"),
            Some(&svc("web", "")),
        );
        assert_eq!(code, 423, "{action}: {body}");
        let v = json_of(&body);
        assert_eq!(v["status"], "failed");
        assert!(v["message"].as_str().unwrap().contains("app1/main"), "{v}");
    }
    assert_eq!(state_of(&env, &web), "running");
    let (code, body) = curl(&env, "GET", "/v2/locks", None);
    assert_eq!(code, 200);
    let v = json_of(&body);
    assert_eq!(v["locks"][0]["service"], "app1/main", "{v}");
    assert_eq!(v["locks"][0]["owner"], "app", "{v}");
    assert!(v["locks"][0]["stale"].is_boolean(), "{v}");
    assert!(v["locks"][0]["holders"].is_array(), "{v}");
    assert_eq!(
        v["apps"]["app1"]["blocked_by"],
        json!(["lock:app1/main"]),
        "{v}"
    );
    assert_eq!(v["apps"]["app2"]["blocked_by"], json!([]), "{v}");
    let (code, _) = curl(
        &env,
        "POST",
        "/v2/applications/app1/stop-service",
        Some(&svc("web", r#", "force": "1""#)),
    );
    assert_eq!(code, 200);
    assert_eq!(state_of(&env, &web), "exited");
    assert!(
        env.log()
            .contains("going to stop app1/web through its locks"),
        "{}",
        env.log()
    );
    let (code, _) = curl(
        &env,
        "POST",
        "/v2/applications/app1/start-service",
        Some(&svc("web", "")),
    );
    assert_eq!(code, 200);
    assert_eq!(state_of(&env, &web), "running");

    // v1: single-service apps only.
    let (code, body) = curl(&env, "POST", "/v1/apps/app1/stop", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("single-service apps only"), "{body}");
    let solo = container(&env, "app2", "solo");
    let (code, body) = curl(&env, "POST", "/v1/apps/app2/stop", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body), json!({"containerId": solo}));
    assert_eq!(state_of(&env, &solo), "exited");
    let (code, body) = curl(&env, "POST", "/v1/apps/app2/start", Some("{}"));
    assert_eq!((code, json_of(&body)), (200, json!({"containerId": solo})));
    assert_eq!(state_of(&env, &solo), "running");
}

#[tokio::test]
async fn purge_removes_the_apps_volumes_and_brings_it_back() {
    let (env, image) = started("120s").await;
    let mut s = sh(
        &image,
        "[ -f /data/mark ] || cat /proc/sys/kernel/random/uuid > /data/mark;",
    );
    s["volumes"] = json!(["data:/data"]);
    let t = target(json!({"shop": {"release": "r1", "services": {"main": s}}}));
    ok(&env.apply(&t));
    env.wait_release("shop", "applied", "r1").await;
    let mark = |env: &Env| {
        let c = env.container_of("shop", "main");
        let m = ok(&env.exec(&c, "cat /data/mark"));
        (c, m)
    };
    let (c1, m1) = mark(&env);

    let (code, body) = curl(&env, "POST", "/v2/applications/shop/purge", Some("{}"));
    assert_eq!((code, body.as_str()), (200, "OK"), "{}", env.log());
    // Answered once the app runs again: new container, new volume.
    let (c2, m2) = mark(&env);
    assert_ne!(c2, c1);
    assert_ne!(m2, m1);
    assert!(ok(&env.docker(&["volume", "ls", "-q"])).contains("shop_data"));

    // Locked: refused, nothing touched; forced: through.
    ok(&env.exec(&c2, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["shop/main"]).await;
    let (code, body) = curl(&env, "POST", "/v1/purge", Some(r#"{"appId": "shop"}"#));
    assert_eq!(code, 423, "{body}");
    assert_eq!(json_of(&body)["status"], "failed");
    assert_eq!(mark(&env), (c2.clone(), m2.clone()));
    let (code, body) = curl(
        &env,
        "POST",
        "/v1/purge",
        Some(r#"{"appId": "shop", "force": "true"}"#),
    );
    assert_eq!(
        (code, json_of(&body)),
        (200, json!({"Data": "OK", "Error": ""})),
        "{}",
        env.log()
    );
    let (c3, m3) = mark(&env);
    assert_ne!(c3, c2);
    assert_ne!(m3, m2);
    let st = env.apps().await;
    assert_eq!(st["shop"]["state"], "applied", "{st}");

    // What is missing or unknown.
    assert_eq!(
        curl(&env, "POST", "/v1/purge", Some("{}")),
        (400, "Invalid or missing appId".into())
    );
    assert_eq!(
        curl(&env, "POST", "/v1/purge", Some(r#"{"appId": "ghost"}"#)).0,
        404
    );
    assert_eq!(
        curl(&env, "POST", "/v2/applications/ghost/purge", None).0,
        404
    );
}

#[tokio::test]
async fn no_purge_of_an_app_that_is_down_for_an_unhealthy_release() {
    let (env, image) = started("3s").await;
    // Never healthy, and no healthy release before it: rejected with
    // nothing to roll back to, the app runs nothing.
    let mut s = sh(&image, "");
    s["volumes"] = json!(["data:/data"]);
    s["healthcheck"] = json!({"test": ["CMD-SHELL", "false"], "interval": "200ms", "retries": 2});
    let t = target(json!({"sick": {"release": "r1", "services": {"main": s}}}));
    ok(&env.apply(&t));
    let st = env.wait_release("sick", "failed", "r1").await;
    assert!(st.get("rolled_back_to").is_none(), "{st}");
    let volumes = || ok(&env.docker(&["volume", "ls", "-q"]));
    assert!(volumes().contains("sick_data"), "{}", volumes());

    for (route, body) in [
        ("/v2/applications/sick/purge", "{}"),
        ("/v1/purge", r#"{"appId": "sick", "force": true}"#),
    ] {
        let (code, body) = curl(&env, "POST", route, Some(body));
        assert_eq!(code, 409, "{route}: {body}");
        let v = json_of(&body);
        let msg = v["message"].as_str().or(v["Error"].as_str()).unwrap();
        assert!(msg.contains("app sick is down"), "{msg}");
    }
    // Its data stay, and no pass ran for the refusal.
    assert!(volumes().contains("sick_data"), "{}", volumes());
    let st = env.apps().await;
    assert_eq!(st["sick"]["state"], "failed", "{st}");
}

#[tokio::test]
async fn a_crash_after_an_update_check_inside_the_crash_window_is_judged() {
    // The window: min(10 s, healthy_timeout).
    let (env, image) = started("8s").await;
    let t = target(
        json!({"app1": {"release": "r1", "services": {"main": sh(&image, "sleep 3; exit 1;")}}}),
    );
    ok(&env.apply(&t));
    env.wait_release("app1", "applied", "r1").await;
    // An update check wakes the task inside the window: the watch goes on.
    assert_eq!(curl(&env, "POST", "/v1/update", None).0, 204);
    let st = env.wait_release("app1", "failed", "r1").await;
    assert!(
        st["error"].as_str().unwrap_or_default().contains("main"),
        "{st}"
    );
}
