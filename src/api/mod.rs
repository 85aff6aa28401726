//! The balena-compatible HTTP API (axum), on a unix socket and optionally
//! TCP: a thin adapter over the same commands as D-Bus. Contract:
//! docs/openapi.yaml. Listeners and their limits: `serve`; the key: `key`.

mod auth;
mod conn;
mod key;
mod serve;

pub use auth::Scope;
pub use key::{
    app_key_path, device_key_path, load_or_create_app_key, load_or_create_key, remove_app_key,
    rotate_key, ApiKeys, KeyError,
};
pub use serve::{serve, AppListeners};

use std::sync::Arc;
use std::time::Duration;

use crate::command::{Command, CommandError, Handle, PowerAction};
use crate::model::{AppState, UpdateStatus};
use crate::names::AppName;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Api {
    pub handle: Handle,
    /// The device key and the app keys, kept by the updater.
    pub keys: tokio::sync::watch::Receiver<Arc<ApiKeys>>,
}

#[derive(Debug, Default, Deserialize)]
struct ForceBody {
    #[serde(default)]
    force: bool,
}

pub fn router(api: Api) -> Router {
    let keyed = Router::new()
        .route("/v1/update", post(update))
        .route("/v1/reboot", post(reboot))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/device", get(device))
        .route("/v2/state/status", get(state_status))
        .route("/v2/applications/state", get(applications_state))
        .route("/v2/applications/{app}/restart", post(restart_app))
        .route_layer(middleware::from_fn_with_state(
            api.clone(),
            auth::require_key,
        ));
    Router::new()
        .route("/ping", get(|| async { "OK" }))
        .route("/v1/healthy", get(healthy))
        .merge(keyed)
        .with_state(api)
}

/// Parses an optional JSON body; an empty body means `{}`.
fn body(bytes: &[u8]) -> Result<ForceBody, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ForceBody::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

async fn healthy(State(api): State<Api>) -> Response {
    let ping = api.handle.request(|reply| Command::Ping { reply });
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Unhealthy").into_response(),
    }
}

async fn update(State(api): State<Api>, bytes: axum::body::Bytes) -> Response {
    let b = match body(&bytes) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let who = "HTTP API POST /v1/update".to_owned();
    match api
        .handle
        .request(|reply| Command::Update {
            force: b.force,
            who,
            reply,
        })
        .await
    {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) | Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn reboot(State(api): State<Api>, bytes: axum::body::Bytes) -> Response {
    power(api, PowerAction::Reboot, &bytes, "/v1/reboot").await
}

async fn shutdown(State(api): State<Api>, bytes: axum::body::Bytes) -> Response {
    power(api, PowerAction::PowerOff, &bytes, "/v1/shutdown").await
}

async fn power(api: Api, action: PowerAction, bytes: &[u8], route: &str) -> Response {
    let b = match body(bytes) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let who = format!("HTTP API POST {route}");
    // logind may take the machine down before we answer; answer first is
    // impossible, so the answer goes out when logind has accepted. The power
    // task carries the request out even if this client goes away.
    let r = api.handle.request(|reply| Command::Power {
        action,
        force: b.force,
        who,
        reply,
    });
    match r.await {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            Json(json!({"Data": "OK", "Error": null})),
        )
            .into_response(),
        Ok(Err(e @ CommandError::Locked { .. })) => v1_error(StatusCode::LOCKED, &e.to_string()),
        Ok(Err(e)) | Err(e) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn v1_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"Data": "", "Error": msg}))).into_response()
}

/// The overall state, in balena's words: Idle, Downloading, Installing.
fn overall(u: &UpdateStatus) -> (&'static str, Option<u8>) {
    let apps = u.apps.values();
    let mut status = "Idle";
    let mut progress = None;
    for a in apps {
        match a.state {
            AppState::Downloading => {
                status = "Downloading";
                progress = a.progress;
            }
            AppState::Applying if status == "Idle" => status = "Installing",
            _ => {}
        }
    }
    (status, progress)
}

async fn device(State(api): State<Api>) -> Json<Value> {
    let u = api.handle.views.apps.borrow().clone();
    let (status, progress) = overall(&u);
    let pending = u.apps.values().any(|a| a.state != AppState::Applied);
    let failed = u.apps.values().any(|a| a.state == AppState::Failed);
    let waiting = u.apps.values().any(|a| a.state == AppState::Waiting);
    Json(json!({
        "status": status,
        "download_progress": progress,
        "update_pending": pending,
        "update_downloaded": waiting,
        "update_failed": failed,
        "supervisor_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn restart_app(
    State(api): State<Api>,
    axum::Extension(scope): axum::Extension<Scope>,
    axum::extract::Path(app): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let b = match body(&bytes) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    let v2 = |status: StatusCode, msg: String| {
        (status, Json(json!({"status": "failed", "message": msg}))).into_response()
    };
    let app = match AppName::new(app) {
        Ok(a) => a,
        Err(e) => return v2(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if !scope.reaches(&app) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let who = format!("HTTP API POST /v2/applications/{app}/restart");
    let r = api
        .handle
        .request(|reply| Command::RestartApp {
            app,
            force: b.force,
            who,
            reply,
        })
        .await;
    match r {
        Ok(Ok(_)) => (StatusCode::OK, "OK").into_response(),
        Ok(Err(e @ CommandError::Locked { .. })) => v2(StatusCode::LOCKED, e.to_string()),
        Ok(Err(e @ CommandError::NotFound(_))) => v2(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => v2(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => v2(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn state_status(State(api): State<Api>) -> Json<Value> {
    let u = api.handle.views.apps.borrow().clone();
    let (_, progress) = overall(&u);
    let app_state = if u.apps.values().all(|a| a.state == AppState::Applied) {
        "applied"
    } else if u.apps.values().any(|a| a.state == AppState::Failed) {
        "failed"
    } else {
        "applying"
    };
    Json(json!({
        "status": "success",
        "appState": app_state,
        "overallDownloadProgress": progress,
        "release": u.apps.values().next().map(|a| a.release.clone()),
    }))
}

async fn applications_state(State(api): State<Api>) -> Json<Value> {
    Json(serde_json::to_value(&api.handle.views.apps.borrow().apps).unwrap_or_default())
}
