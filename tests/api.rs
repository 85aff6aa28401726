//! The balena-compatible HTTP API on its unix socket, with curl.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{ok, Env};

fn key(env: &Env) -> String {
    std::fs::read_to_string(env.state().join("api-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// curl over the API socket: (status, body).
fn curl(
    env: &Env,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(env.dir.join("api.sock"))
        .args(["-X", method]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    if let Some(a) = auth {
        cmd.args(["-H", &format!("Authorization: Bearer {a}")]);
    }
    cmd.arg(format!("http://localhost{path}"));
    let out: Output = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

async fn wait_socket(env: &Env) {
    let sock = env.dir.join("api.sock");
    for _ in 0..200 {
        if sock.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no API socket:\n{}", env.log());
}

#[tokio::test]
async fn v1_endpoints_keys_and_locked_answers() {
    let mut env = Env::new();
    env.start_with_app1_main_locked().await;
    wait_socket(&env).await;
    let k = key(&env);
    assert_eq!(curl(&env, "GET", "/ping", None, None), (200, "OK".into()));
    assert_eq!(curl(&env, "GET", "/v1/healthy", None, None).0, 200);
    // Everything else needs the key, as a bearer token or ?apikey=.
    assert_eq!(curl(&env, "POST", "/v1/reboot", None, None).0, 401);
    assert_eq!(curl(&env, "POST", "/v1/reboot", None, Some("wrong")).0, 401);
    let (code, body) = curl(&env, "POST", "/v1/reboot", Some("{}"), Some(&k));
    assert_eq!(code, 423, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Data"], "");
    assert!(v["Error"].as_str().unwrap().contains("app1/main"), "{body}");
    let (code, _) = curl(
        &env,
        "POST",
        &format!("/v1/shutdown?apikey={k}"),
        None,
        None,
    );
    assert_eq!(code, 423);
    // Forced through the lock: holdfast asks logind (which cannot reboot a
    // machine without systemd as PID 1: a 500 with logind's answer).
    let (code, body) = curl(
        &env,
        "POST",
        "/v1/reboot",
        Some(r#"{"force": true}"#),
        Some(&k),
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("logind refused to reboot"), "{body}");
    assert!(
        env.log()
            .contains("who=\"HTTP API (device key) POST /v1/reboot\""),
        "{}",
        env.log()
    );
    assert_eq!(
        curl(&env, "POST", "/v1/reboot", Some("{nope"), Some(&k)).0,
        400
    );
    // No target in force: nothing to check, so not triggered (balena: 202).
    assert_eq!(curl(&env, "POST", "/v1/update", None, Some(&k)).0, 202);
    let (code, body) = curl(&env, "GET", "/v1/device", None, Some(&k));
    assert_eq!(code, 200);
    assert!(body.contains("\"status\":\"Idle\""), "{body}");
    assert_eq!(curl(&env, "GET", "/v2/state/status", None, Some(&k)).0, 200);
    // The socket is root's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.dir.join("api.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn post_v1_update_force_goes_through_a_lock_once() {
    let mut env = Env::with_docker();
    let reg = env.registry();
    let image = env.push(&reg, "api:1");
    env.start_daemon().await;
    wait_socket(&env).await;
    let k = key(&env);
    env.app1_waiting_on_its_lock(&image).await;
    let (code, body) = curl(&env, "GET", "/v2/applications/state", None, Some(&k));
    assert_eq!(code, 200);
    assert!(body.contains("lock:app1/main"), "{body}");
    // Without force: still waiting.
    assert_eq!(
        curl(&env, "POST", "/v1/update", Some("{}"), Some(&k)).0,
        204
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.apps().await["app1"]["state"], "waiting");
    assert_eq!(
        curl(
            &env,
            "POST",
            "/v1/update",
            Some(r#"{"force": true}"#),
            Some(&k)
        )
        .0,
        204
    );
    env.wait_release("app1", "applied", "r2").await;
    assert!(env
        .log()
        .contains("one-time forced update asked by HTTP API (device key) POST /v1/update"));

    // v2: a restart is refused while the app holds its lock (423, v2 body),
    // forced through it on request.
    let c = env.container_of("app1", "main");
    let started = |env: &Env| ok(&env.docker(&["inspect", "-f", "{{.State.StartedAt}}", &c]));
    let before = started(&env);
    let (code, body) = curl(
        &env,
        "POST",
        "/v2/applications/app1/restart",
        Some("{}"),
        Some(&k),
    );
    assert_eq!(code, 423, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "failed");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("update locks are held by app1/main"),
        "{body}"
    );
    assert_eq!(started(&env), before);
    let (code, body) = curl(
        &env,
        "POST",
        "/v2/applications/app1/restart",
        Some(r#"{"force": true}"#),
        Some(&k),
    );
    assert_eq!(code, 200, "{body}");
    assert_ne!(started(&env), before);
    assert_eq!(env.container_of("app1", "main"), c);
    assert_eq!(
        curl(
            &env,
            "POST",
            "/v2/applications/ghost/restart",
            None,
            Some(&k)
        )
        .0,
        404
    );
}

/// Every path docs/openapi.yaml documents is served.
#[tokio::test]
async fn the_documented_routes_exist() {
    let mut env = Env::new();
    env.start_daemon().await;
    wait_socket(&env).await;
    let k = key(&env);
    let doc = std::fs::read_to_string(format!("{}/docs/openapi.yaml", common::REPO)).unwrap();
    let mut n = 0;
    let mut path = String::new();
    for line in doc.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = format!("/{p}").replace("{app}", "nosuchapp");
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if ["get", "post"].contains(&m) && !path.is_empty() {
                // Harmless requests: no force, an unknown app.
                let (code, body) = curl(
                    &env,
                    &m.to_uppercase(),
                    &path,
                    (m == "post").then_some("{}"),
                    Some(&k),
                );
                assert!(
                    code != 404 || path.contains("nosuchapp"),
                    "{m} {path}: {code} {body}"
                );
                assert_ne!(code, 405, "{m} {path}");
                n += 1;
            }
        }
    }
    assert!(n >= 9, "only {n} operations found in docs/openapi.yaml");
}

/// An app written for balena's supervisor, unchanged: it finds the API in
/// BALENA_SUPERVISOR_ADDRESS / _API_KEY (label io.balena.features.supervisor-api)
/// and forces the update it is holding back.
#[tokio::test]
async fn an_app_calls_the_api_from_its_container_like_on_balena() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = Env::with_docker();
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
    std::fs::write(
        env.dir.join("boot/config.json"),
        format!("{{\"listenPort\": {port}}}"),
    )
    .unwrap();
    let reg = env.registry();
    let image = env.push(&reg, "sapi:1");
    env.start_daemon().await;
    let release = |n: u32| {
        let mut s = common::engine::service(&image);
        s["network_mode"] = serde_json::json!("host");
        s["labels"] = serde_json::json!({"io.balena.features.supervisor-api": "1"});
        s["environment"] = serde_json::json!({"R": n.to_string()});
        common::engine::target(
            serde_json::json!({"app1": {"release": format!("r{n}"), "services": {"main": s}}}),
        )
    };
    ok(&env.apply(&release(1)));
    env.wait_release("app1", "applied", "r1").await;
    let c = env.container_of("app1", "main");
    assert_eq!(
        ok(&env.exec(&c, "wget -qO- \"$BALENA_SUPERVISOR_ADDRESS/ping\"")),
        "OK"
    );
    ok(&env.exec(&c, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    ok(&env.apply(&release(2)));
    env.wait_release("app1", "waiting", "r2").await;
    ok(&env.exec(
        &c,
        "wget -qO- --header 'Content-Type: application/json' --post-data '{\"force\": true}' \
         \"$BALENA_SUPERVISOR_ADDRESS/v1/update?apikey=$BALENA_SUPERVISOR_API_KEY\"",
    ));
    env.wait_release("app1", "applied", "r2").await;
    // Without the key the API refuses.
    let out = env.exec(
        &env.container_of("app1", "main"),
        "wget -qO- --post-data '{}' \"$BALENA_SUPERVISOR_ADDRESS/v1/update\"",
    );
    assert!(!out.status.success());
}
