//! The router without the key check, over a handle whose tasks are fakes
//! that record what they were asked: request parsing, `force`, scoping and
//! the mapping of answers to statuses and bodies.

use std::sync::{Arc, Mutex};

use axum::body::Body as HttpBody;
use axum::http::Request;
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::command::CommandError;
use crate::config::Settings;
use crate::gate::Blocker;
use crate::model::{InhibitorStatus, Snapshot, UpdateStatus, Views};
use crate::names::{AppName, ServiceId};

type Log = Arc<Mutex<Vec<String>>>;

fn locked(app: &AppName) -> CommandError {
    CommandError::Locked {
        blocked_by: vec![Blocker::Lock(
            ServiceId::parse(&format!("{app}/main")).unwrap(),
        )],
        action: "act".into(),
    }
}

/// App `ghost` is unknown, `locked` holds a lock, `multi` has two services.
fn outcome(app: &AppName, force: bool) -> Result<(), CommandError> {
    match app.as_str() {
        "ghost" => Err(CommandError::NotFound(format!("app {app} is unknown"))),
        "down" => Err(CommandError::Conflict(format!("app {app} is down"))),
        "halting" => Err(CommandError::Failed("the device is shutting down".into())),
        "locked" if !force => Err(locked(app)),
        _ => Ok(()),
    }
}

fn api() -> (Api, Log) {
    api_with(true)
}

/// `target`: whether the fake updater has a target in force (an update
/// check is triggered). Each command logs `who ...` before what it asked.
fn api_with(target: bool) -> (Api, Log) {
    let views = Views {
        snapshot: watch::channel(Snapshot::default()).1,
        apps: watch::channel(UpdateStatus::default()).1,
        inhibitor: watch::channel(InhibitorStatus::default()).1,
        settings: watch::channel(Arc::new(Settings::default())).1,
        fleet: watch::channel(crate::fleet::FleetStatus::default()).1,
    };
    let (handle, inboxes) = Handle::new(views, "/proc".into());
    let log: Log = Arc::default();
    let seen = log.clone();
    let mut updates = inboxes.updates;
    let mut power = inboxes.power;
    tokio::spawn(async move {
        loop {
            let cmd = tokio::select! {
                Some(c) = updates.recv() => c,
                Some(c) = power.recv() => c,
                else => return,
            };
            let log = |s: String| seen.lock().unwrap().push(s);
            match cmd {
                Command::Update {
                    force,
                    only,
                    who,
                    reply,
                } => {
                    log(format!("who {who}"));
                    let only = only.map(|a| format!(" only={a}")).unwrap_or_default();
                    log(format!("update force={force}{only}"));
                    let _ = reply.send(Ok(target));
                }
                Command::Power {
                    force, who, reply, ..
                } => {
                    log(format!("who {who}"));
                    log(format!("power force={force}"));
                    let _ = reply.send(match force {
                        true => Ok(()),
                        false => Err(locked(&AppName::new("app1").unwrap())),
                    });
                }
                Command::RestartApp {
                    app,
                    force,
                    who,
                    reply,
                } => {
                    log(format!("who {who}"));
                    log(format!("restart {app} force={force}"));
                    let _ = reply.send(outcome(&app, force).map(|()| 1));
                }
                Command::PurgeApp {
                    app, force, reply, ..
                } => {
                    log(format!("purge {app} force={force}"));
                    let _ = reply.send(outcome(&app, force).map(|()| vec![]));
                }
                Command::ServiceAction {
                    app,
                    service,
                    action,
                    force,
                    reply,
                    ..
                } => {
                    let svc = service.as_ref().map(|s| s.as_str()).unwrap_or("-");
                    log(format!("{} {app}/{svc} force={force}", action.verb()));
                    let r = match (app.as_str(), &service) {
                        ("multi", None) => Err(CommandError::Invalid("several".into())),
                        _ => outcome(&app, force).map(|()| format!("cid-{app}")),
                    };
                    let _ = reply.send(r);
                }
                Command::EngineState { reply } => {
                    let _ = reply.send(Ok(Default::default()));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let api = Api::new(
        handle,
        tokio::sync::watch::channel(Arc::new(crate::api::ApiKeys::new(Some("k".into())))).1,
    );
    (api, log)
}

async fn call(api: &Api, scope: Scope, method: &str, uri: &str, body: &str) -> (u16, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(HttpBody::from(body.to_owned()))
        .unwrap();
    req.extensions_mut().insert(scope);
    let r = keyed_routes()
        .with_state(api.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = r.status().as_u16();
    let b = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&b).into_owned())
}

fn app(s: &str) -> Scope {
    Scope::App(AppName::new(s).unwrap())
}

fn last(log: &Log) -> String {
    log.lock().unwrap().last().cloned().unwrap_or_default()
}

#[tokio::test]
async fn force_takes_balenas_words_on_every_route() {
    let (api, log) = api();
    let routes = [
        ("/v1/update", "update force="),
        ("/v1/reboot", "power force="),
        ("/v1/shutdown", "power force="),
        ("/v2/applications/app1/restart", "restart app1 force="),
        ("/v2/applications/app1/purge", "purge app1 force="),
        (
            "/v2/applications/app1/stop-service",
            "stop app1/main force=",
        ),
        (
            "/v2/applications/app1/restart-service",
            "restart app1/main force=",
        ),
        ("/v1/apps/app1/stop", "stop app1/- force="),
        ("/v1/purge", "purge app1 force="),
    ];
    let words = [
        ("true", true),
        ("\"true\"", true),
        ("\"1\"", true),
        ("1", true),
        ("\"on\"", true),
        ("false", false),
        ("\"false\"", false),
        ("\"0\"", false),
        ("0", false),
        ("\"off\"", false),
    ];
    for (route, said) in routes {
        for (word, yes) in words {
            let body = format!(r#"{{"force": {word}, "serviceName": "main", "appId": "app1"}}"#);
            let (code, text) = call(&api, Scope::Device, "POST", route, &body).await;
            // (the fake power task refuses an unforced reboot: 423)
            assert!(code < 300 || code == 423, "{route} {word}: {code} {text}");
            assert_eq!(last(&log), format!("{said}{yes}"), "{route} {word}");
        }
        // Absent: false.
        let body = r#"{"serviceName": "main", "appId": "app1"}"#;
        call(&api, Scope::Device, "POST", route, body).await;
        assert_eq!(last(&log), format!("{said}false"), "{route}");
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_the_reason_on_every_post_route() {
    let (api, log) = api();
    for route in [
        "/v1/update",
        "/v1/reboot",
        "/v1/shutdown",
        "/v1/purge",
        "/v1/apps/app1/stop",
        "/v1/apps/app1/start",
        "/v2/applications/app1/restart",
        "/v2/applications/app1/purge",
        "/v2/applications/app1/restart-service",
        "/v2/applications/app1/stop-service",
        "/v2/applications/app1/start-service",
    ] {
        let (code, body) = call(&api, Scope::Device, "POST", route, "{nope").await;
        assert_eq!(code, 400, "{route}");
        assert!(
            body.contains("invalid JSON body: key must be a string"),
            "{route}: {body}"
        );
        if route.starts_with("/v2/") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], "failed", "{route}");
        }
    }
    assert!(log.lock().unwrap().is_empty(), "nothing was asked");
}

#[tokio::test]
async fn an_app_key_reaches_its_own_app_only() {
    let (api, log) = api();
    let body = r#"{"serviceName": "main", "appId": "app1"}"#;
    for route in [
        "/v2/applications/app1/restart",
        "/v2/applications/app1/purge",
        "/v2/applications/app1/restart-service",
        "/v2/applications/app1/stop-service",
        "/v2/applications/app1/start-service",
        "/v1/purge",
    ] {
        let (code, text) = call(&api, app("app2"), "POST", route, body).await;
        assert_eq!(code, 401, "{route}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"status": "failed", "message": "Unauthorized"}),
            "{route}"
        );
        let (code, _) = call(&api, app("app1"), "POST", route, body).await;
        assert_eq!(code, 200, "{route}");
    }
    // balena's v1 apps routes answer 401 in plain text.
    for route in ["/v1/apps/app1/stop", "/v1/apps/app1/start"] {
        assert_eq!(
            call(&api, app("app2"), "POST", route, "").await,
            (401, "Unauthorized".into())
        );
        assert_eq!(call(&api, app("app1"), "POST", route, "").await.0, 200);
    }
    let asked: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| !s.starts_with("who "))
        .cloned()
        .collect();
    assert!(asked.iter().all(|s| !s.contains("app2")), "{asked:?}");
    assert_eq!(asked.len(), 8, "{asked:?}");
    // Device-wide routes stay open to an app's key, as on balena.
    let (code, _) = call(&api, app("app2"), "POST", "/v1/update", "").await;
    assert_eq!(code, 204);
    let (code, _) = call(&api, app("app2"), "POST", "/v1/reboot", "").await;
    assert_eq!(code, 423);
}

#[tokio::test]
async fn an_app_key_forces_its_own_app_only() {
    let (api, log) = api();
    let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    // /v1/update: force goes through the locks of the key's app alone.
    let (code, _) = call(
        &api,
        app("app1"),
        "POST",
        "/v1/update",
        r#"{"force": true}"#,
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(last(&log), "update force=true only=app1");
    let (code, _) = call(
        &api,
        Scope::Device,
        "POST",
        "/v1/update",
        r#"{"force": true}"#,
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(last(&log), "update force=true");
    // reboot and shutdown: force from an app's key is refused, nothing asked.
    for route in ["/v1/reboot", "/v1/shutdown"] {
        log.lock().unwrap().clear();
        let (code, body) = call(&api, app("app1"), "POST", route, r#"{"force": "on"}"#).await;
        assert_eq!(code, 401, "{route}");
        let body = v(&body);
        assert_eq!(body["Data"], "", "{route}");
        assert!(
            body["Error"]
                .as_str()
                .unwrap()
                .starts_with("only the device key can force a "),
            "{body}"
        );
        assert!(log.lock().unwrap().is_empty(), "{route}");
        let (code, _) = call(&api, Scope::Device, "POST", route, r#"{"force": "on"}"#).await;
        assert_eq!(code, 202, "{route}");
    }
}

#[tokio::test]
async fn the_journal_says_whose_key_asked() {
    let (api, log) = api();
    let whos = |log: &Log| -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .filter_map(|s| s.strip_prefix("who ").map(str::to_owned))
            .collect()
    };
    call(&api, app("app1"), "POST", "/v1/reboot", "").await;
    call(&api, Scope::Device, "POST", "/v1/shutdown", "").await;
    call(&api, app("app1"), "POST", "/v1/update", "").await;
    call(
        &api,
        app("app1"),
        "POST",
        "/v2/applications/app1/restart",
        "",
    )
    .await;
    assert_eq!(
        whos(&log),
        [
            "HTTP API (key of app app1) POST /v1/reboot",
            "HTTP API (device key) POST /v1/shutdown",
            "HTTP API (key of app app1) POST /v1/update",
            "HTTP API (key of app app1) POST /v2/applications/app1/restart",
        ]
    );
}

#[tokio::test]
async fn update_is_202_when_nothing_was_triggered() {
    let (api, log) = api_with(false);
    let (code, body) = call(&api, Scope::Device, "POST", "/v1/update", "").await;
    assert_eq!((code, body.as_str()), (202, ""));
    assert_eq!(last(&log), "update force=false");
}

#[test]
fn an_app_key_sees_its_own_blockers_and_a_count_of_the_others() {
    let id = |s: &str| Blocker::Lock(ServiceId::parse(s).unwrap());
    let all = [id("app1/main"), id("app2/db"), id("app3/x")];
    assert_eq!(
        v1::locked_for(&Scope::Device, &all, "reboot"),
        "update locks are held by app1/main, app2/db, app3/x; not going to reboot (force overrides)"
    );
    assert_eq!(
        v1::locked_for(&app("app1"), &all, "reboot"),
        "update locks are held by app1/main and 2 locks of other apps; \
         not going to reboot (only the device key can force it)"
    );
    let msg = v1::locked_for(&app("app4"), &all, "shut down");
    assert_eq!(
        msg,
        "held: 3 locks of other apps; not going to shut down (only the device key can force it)"
    );
    assert!(!msg.contains("app2"), "{msg}");
    assert_eq!(
        v1::locked_for(&app("app4"), &all[1..2], "reboot"),
        "held: 1 lock of other apps; not going to reboot (only the device key can force it)"
    );
}

#[tokio::test]
async fn service_routes_answer_in_balenas_shapes() {
    let (api, log) = api();
    let v2 = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    // serviceName missing: 400, nothing asked.
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/app1/stop-service",
        "{}",
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(v2(&body)["message"], "serviceName was not provided");
    assert!(log.lock().unwrap().is_empty());
    let svc = r#"{"serviceName": "main"}"#;
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/app1/start-service",
        svc,
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "OK"));
    assert_eq!(last(&log), "start app1/main force=false");
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/ghost/stop-service",
        svc,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(v2(&body)["status"], "failed");
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/locked/restart-service",
        svc,
    )
    .await;
    assert_eq!(code, 423);
    assert!(
        v2(&body)["message"]
            .as_str()
            .unwrap()
            .contains("locked/main"),
        "{body}"
    );
    let forced = r#"{"serviceName": "main", "force": "on"}"#;
    let (code, _) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/locked/restart-service",
        forced,
    )
    .await;
    assert_eq!(code, 200);
    // v1: the container id; an app of several services is a 400.
    let (code, body) = call(&api, Scope::Device, "POST", "/v1/apps/app1/stop", "").await;
    assert_eq!(
        (code, v2(&body)),
        (200, serde_json::json!({"containerId": "cid-app1"}))
    );
    let (code, body) = call(&api, Scope::Device, "POST", "/v1/apps/multi/start", "").await;
    assert_eq!((code, body.as_str()), (400, "several"));
    let (code, body) = call(&api, Scope::Device, "POST", "/v1/apps/locked/stop", "").await;
    assert_eq!(code, 423);
    assert_eq!(v2(&body)["status"], "failed");
    // v1 purge.
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v1/purge",
        r#"{"appId": "app1"}"#,
    )
    .await;
    assert_eq!(
        (code, v2(&body)),
        (200, serde_json::json!({"Data": "OK", "Error": ""}))
    );
    let (code, body) = call(&api, Scope::Device, "POST", "/v1/purge", "{}").await;
    assert_eq!((code, body.as_str()), (400, "Invalid or missing appId"));
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v1/purge",
        r#"{"appId": "ghost"}"#,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(v2(&body)["Data"], "");
    let (code, body) = call(&api, Scope::Device, "GET", "/v2/version", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        v2(&body),
        serde_json::json!({"status": "success", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn a_purge_of_an_app_that_is_down_is_409_and_a_start_while_halting_503() {
    let (api, _) = api();
    let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/down/purge",
        "",
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(v(&body)["status"], "failed");
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v1/purge",
        r#"{"appId": "down"}"#,
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(v(&body)["Data"], "");
    assert_eq!(v(&body)["Error"], "app down is down");
    let svc = r#"{"serviceName": "main"}"#;
    let (code, body) = call(
        &api,
        Scope::Device,
        "POST",
        "/v2/applications/halting/start-service",
        svc,
    )
    .await;
    assert_eq!(code, 503);
    assert_eq!(v(&body)["message"], "the device is shutting down");
    let (code, body) = call(&api, Scope::Device, "POST", "/v1/apps/halting/start", "").await;
    assert_eq!(code, 503);
    assert_eq!(v(&body)["Error"], "the device is shutting down");
}

#[tokio::test]
async fn state_routes_answer_for_an_app_key() {
    let (api, _) = api();
    for route in ["/v2/state/status", "/v2/applications/state", "/v2/locks"] {
        let (code, body) = call(&api, app("app2"), "GET", route, "").await;
        assert_eq!(code, 200, "{route}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.is_object(), "{route}: {v}");
    }
}
