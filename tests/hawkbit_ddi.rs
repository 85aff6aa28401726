//! What gooseBit does not serve, against hawkBit's DDI as its documentation
//! writes it: cancelAction (and its own feedback route), sha256 beside sha1
//! and md5, `download` beside `download-http`, a query in the action link,
//! and `GatewayToken`. No hawkBit server installs on these machines (it is
//! a Java service with a database), so the server here is a recording of
//! its answers served by the test; holdfastd, dockerd, the bus and logind
//! are real.

#![cfg(feature = "fleet")]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use common::goosebit::app1_release;
use common::{ok, Env};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BASE: &str = "/T1/controller/v1/dev-ddi";

#[derive(Default)]
struct Fake {
    /// The action offered, and its .swu.
    action: Option<(String, Vec<u8>)>,
    /// (cancel id, stop id) offered.
    cancel: Option<(String, String)>,
    /// Every feedback: (route, body).
    feedback: Vec<(String, Value)>,
    /// Requests without the gateway token.
    unauthorized: u32,
    /// The configData bodies.
    config_data: Vec<Value>,
    /// hawkBit's maintenanceWindow for the action: `unavailable`.
    window_closed: bool,
}

type Shared = Arc<Mutex<Fake>>;

fn authorized(s: &Shared, h: &HeaderMap) -> bool {
    let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some("GatewayToken gw-s3cret");
    if !ok {
        s.lock().unwrap().unauthorized += 1;
    }
    ok
}

async fn poll(State(s): State<(Shared, String)>, h: HeaderMap) -> Result<Json<Value>, StatusCode> {
    if !authorized(&s.0, &h) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let f = s.0.lock().unwrap();
    let mut links = serde_json::Map::new();
    // hawkBit links configData until the target has sent its attributes.
    if f.config_data.is_empty() {
        links.insert(
            "configData".into(),
            json!({"href": format!("{}{BASE}/configData", s.1)}),
        );
    }
    if let Some((id, _)) = &f.action {
        links.insert(
            "deploymentBase".into(),
            json!({"href": format!("{}{BASE}/deploymentBase/{id}?c=-2122565939", s.1)}),
        );
    }
    if let Some((id, _)) = &f.cancel {
        links.insert(
            "cancelAction".into(),
            json!({"href": format!("{}{BASE}/cancelAction/{id}", s.1)}),
        );
    }
    Ok(Json(
        json!({"config": {"polling": {"sleep": "00:00:01"}}, "_links": links}),
    ))
}

async fn deployment(
    State(s): State<(Shared, String)>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    if !authorized(&s.0, &h) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let f = s.0.lock().unwrap();
    let Some((offered, bytes)) = f.action.as_ref().filter(|(a, _)| *a == id) else {
        return Err(StatusCode::NOT_FOUND);
    };
    let sha256: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let art = format!("{}{BASE}/softwaremodules/3/artifacts/release.swu", s.1);
    // hawkBit's shape (DDI docs): sha1, md5 and sha256; download and
    // download-http links, and md5sum ones.
    Ok(Json(json!({
        "id": offered,
        "deployment": {"download": "forced", "update": "forced",
            "maintenanceWindow": if f.window_closed { "unavailable" } else { "available" },
            "chunks": [{"part": "bApp", "version": format!("v{offered}"), "name": "holdfast-release",
                "artifacts": [{"filename": "release.swu", "size": bytes.len(),
                    "hashes": {"sha1": "0000000000000000000000000000000000000000",
                               "md5": "00000000000000000000000000000000", "sha256": sha256},
                    "_links": {"download": {"href": art}, "download-http": {"href": art},
                               "md5sum": {"href": format!("{art}.MD5SUM")}}}]}]},
        "actionHistory": {"status": "RUNNING", "messages": []}
    })))
}

async fn artifact(State(s): State<(Shared, String)>, h: HeaderMap) -> Result<Vec<u8>, StatusCode> {
    if !authorized(&s.0, &h) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let f = s.0.lock().unwrap();
    f.action
        .as_ref()
        .map(|(_, b)| b.clone())
        .ok_or(StatusCode::NOT_FOUND)
}

async fn cancel(
    State(s): State<(Shared, String)>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    if !authorized(&s.0, &h) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let f = s.0.lock().unwrap();
    match &f.cancel {
        Some((c, stop)) if *c == id => Ok(Json(json!({"id": c, "cancelAction": {"stopId": stop}}))),
        _ => Err(StatusCode::NOT_FOUND),
    }
}

async fn feedback(
    State(s): State<(Shared, String)>,
    Path((kind, id)): Path<(String, String)>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    if !authorized(&s.0, &h) {
        return StatusCode::UNAUTHORIZED;
    }
    let mut f = s.0.lock().unwrap();
    f.feedback.push((format!("{kind}/{id}"), body));
    StatusCode::OK
}

async fn config_data(
    State(s): State<(Shared, String)>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    if !authorized(&s.0, &h) {
        return StatusCode::UNAUTHORIZED;
    }
    s.0.lock().unwrap().config_data.push(body);
    StatusCode::OK
}

async fn serve() -> (Shared, String) {
    let shared: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route(BASE, get(poll))
        .route(&format!("{BASE}/configData"), put(config_data))
        .route(&format!("{BASE}/deploymentBase/{{id}}"), get(deployment))
        .route(&format!("{BASE}/cancelAction/{{id}}"), get(cancel))
        .route(&format!("{BASE}/{{kind}}/{{id}}/feedback"), post(feedback))
        .route(
            &format!("{BASE}/softwaremodules/3/artifacts/release.swu"),
            get(artifact),
        )
        .with_state((shared.clone(), url.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, url)
}

/// Waits until a feedback on `route` satisfies `f`; answers it.
async fn wait_feedback(s: &Shared, route: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((_, v)) = s
            .lock()
            .unwrap()
            .feedback
            .iter()
            .find(|(r, v)| r == route && f(v))
        {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such feedback on {route}: {:#?}",
            s.lock().unwrap().feedback
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn closed(v: &Value, finished: &str) -> bool {
    v["status"]["execution"] == "closed" && v["status"]["result"]["finished"] == finished
}

#[tokio::test]
async fn a_cancel_takes_back_a_deployment_waiting_for_a_lock_and_is_rejected_once_its_containers_change(
) {
    let mut env = Env::with_docker();
    let (fake, url) = serve().await;
    let image = env.busybox_image();
    let dir = env.dir.join("swu");
    std::fs::create_dir_all(&dir).unwrap();
    let token: PathBuf = env.dir.join("gateway-token");
    std::fs::write(&token, "gw-s3cret\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let release =
        |v: &str, r: &str| std::fs::read(app1_release(&dir, v, &image, r, "true")).unwrap();
    {
        let mut f = fake.lock().unwrap();
        f.action = Some(("6".into(), release("1.0.0", "r1")));
        f.window_closed = true;
    }
    env.write_config(&format!(
        "[fleet]\nid = \"ignored\"\n[fleet.hawkbit]\nurl = \"{url}\"\ntenant = \"T1\"\ncontroller_id = \"dev-ddi\"\ngateway_token_file = \"{}\"\n",
        token.display()
    ));
    env.start_daemon().await;
    // Outside its maintenance window: downloaded, not applied.
    wait_feedback(&fake, "deploymentBase/6", |v| {
        v["status"]["details"][0] == "waiting for the maintenance window"
    })
    .await;
    assert_eq!(
        env.apps().await,
        json!({}),
        "nothing applied outside the window"
    );
    fake.lock().unwrap().window_closed = false;
    wait_feedback(&fake, "deploymentBase/6", |v| closed(v, "success")).await;
    env.wait_release("app1", "applied", "r1").await;
    // configData once, as linked: what the server may know of the device.
    let cd = fake.lock().unwrap().config_data.clone();
    assert_eq!(cd.len(), 1, "{cd:?}");
    assert_eq!(cd[0]["mode"], "merge");
    let data = &cd[0]["data"];
    assert_eq!(
        (&data["hw_boardname"], &data["fleet_id"]),
        (&json!("default"), &json!("ignored")),
        "{data}"
    );
    assert_eq!(data["holdfast_version"], env!("CARGO_PKG_VERSION"));
    let r1 = env.container_of("app1", "main");

    // r2 is in force but app1 holds its lock: a cancel takes it back.
    ok(&env.exec(&r1, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    fake.lock().unwrap().action = Some(("7".into(), release("1.0.1", "r2")));
    wait_feedback(&fake, "deploymentBase/7", |v| {
        v["status"]["details"][0] == "waiting for lock: app1/main"
    })
    .await;
    {
        let mut f = fake.lock().unwrap();
        f.action = None;
        f.cancel = Some(("8".into(), "7".into()));
    }
    let c = wait_feedback(&fake, "cancelAction/8", |v| closed(v, "success")).await;
    assert!(
        c["status"]["details"][0]
            .as_str()
            .unwrap()
            .contains("canceled before its apps changed"),
        "{c}"
    );
    fake.lock().unwrap().cancel = None;
    // r1 is the target again; once the lock goes, the pass finds nothing
    // to change.
    let t: Value = serde_json::from_slice(&std::fs::read(env.target_file()).unwrap()).unwrap();
    assert_eq!(t["apps"]["app1"]["release"], "r1", "{t}");
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    env.wait_release("app1", "applied", "r1").await;
    assert_eq!(env.container_of("app1", "main"), r1, "r2 never ran");

    // r3 runs at once (no lock) but is not healthy yet: its containers are
    // replaced, so a cancel now is rejected, and r3 goes on to its end.
    let r3 = std::fs::read(app1_release(&dir, "1.0.2", &image, "r3", "[ -f /tmp/ok ]")).unwrap();
    fake.lock().unwrap().action = Some(("9".into(), r3));
    wait_feedback(&fake, "deploymentBase/9", |v| {
        v["status"]["details"][0] == "app1: applying"
    })
    .await;
    fake.lock().unwrap().cancel = Some(("10".into(), "9".into()));
    let c = wait_feedback(&fake, "cancelAction/10", |_| true).await;
    assert_eq!(c["status"]["execution"], "rejected", "{c}");
    assert!(
        c["status"]["details"][0]
            .as_str()
            .unwrap()
            .contains("its apps are being replaced already"),
        "{c}"
    );
    fake.lock().unwrap().cancel = None;
    // r3's container may still be starting ("applying" comes first).
    let running = || {
        env.containers("app1")
            .into_iter()
            .filter(|c| c.0.starts_with("app1_main_") && c.2 == "running" && c.1 != r1)
            .count()
            == 1
    };
    common::wait_for(Duration::from_secs(30), || async { running() })
        .await
        .expect("r3's container runs");
    let new = env.container_of("app1", "main");
    ok(&env.exec(&new, "touch /tmp/ok"));
    wait_feedback(&fake, "deploymentBase/9", |v| closed(v, "success")).await;
    env.wait_release("app1", "applied", "r3").await;
    assert_eq!(
        fake.lock().unwrap().unauthorized,
        0,
        "every request carried the gateway token"
    );
    assert!(
        !env.log().contains("gw-s3cret"),
        "the token is never logged"
    );
}
