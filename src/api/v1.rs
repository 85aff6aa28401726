//! balena's v1 routes: update, reboot, shutdown, device, a single-service
//! app's stop and start, and purge.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::Body;
use super::{ask, text, v1_error, v2_error, Api, Scope};
use crate::command::{Command, CommandError, PowerAction, ServiceAction};
use crate::model::{AppState, UpdateStatus};
use crate::names::AppName;

pub(super) async fn update(State(api): State<Api>, bytes: axum::body::Bytes) -> Response {
    let b = match Body::parse(&bytes) {
        Ok(b) => b,
        Err(m) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let who = "HTTP API POST /v1/update".to_owned();
    let force = b.force();
    match ask(&api, |reply| Command::Update { force, who, reply }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub(super) async fn reboot(State(api): State<Api>, bytes: axum::body::Bytes) -> Response {
    power(api, PowerAction::Reboot, &bytes, "/v1/reboot").await
}

pub(super) async fn shutdown(State(api): State<Api>, bytes: axum::body::Bytes) -> Response {
    power(api, PowerAction::PowerOff, &bytes, "/v1/shutdown").await
}

async fn power(api: Api, action: PowerAction, bytes: &[u8], route: &str) -> Response {
    let b = match Body::parse(bytes) {
        Ok(b) => b,
        Err(m) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let who = format!("HTTP API POST {route}");
    let force = b.force();
    // logind may take the machine down before we answer; answer first is
    // impossible, so the answer goes out when logind has accepted. The power
    // task carries the request out even if this client goes away.
    let r = ask(&api, |reply| Command::Power {
        action,
        force,
        who,
        reply,
    });
    match r.await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"Data": "OK", "Error": null})),
        )
            .into_response(),
        Err(e @ CommandError::Locked { .. }) => v1_error(StatusCode::LOCKED, &e.to_string()),
        Err(e) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The overall state, in balena's words: Idle, Downloading, Installing.
fn overall(u: &UpdateStatus) -> (&'static str, Option<u8>) {
    let mut status = "Idle";
    let mut progress = None;
    for a in u.apps.values() {
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

pub(super) async fn device(State(api): State<Api>) -> Json<Value> {
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

pub(super) async fn app_stop(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    app_action(api, scope, app, &bytes, ServiceAction::Stop).await
}

pub(super) async fn app_start(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    app_action(api, scope, app, &bytes, ServiceAction::Start).await
}

/// Stop or start the service of a single-service app; answers its
/// container. Errors in balena's v1 forms: 400 text for what balena's v1
/// answers with 400 (an app of several services, an unknown app), 401
/// text, 423 in its error handler's JSON.
async fn app_action(
    api: Api,
    scope: Scope,
    app: String,
    bytes: &[u8],
    action: ServiceAction,
) -> Response {
    let b = match Body::parse(bytes) {
        Ok(b) => b,
        Err(m) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let app = match AppName::new(app) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if !scope.reaches(&app) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let who = format!("HTTP API POST /v1/apps/{app}/{}", action.verb());
    let force = b.force();
    let r = ask(&api, |reply| Command::ServiceAction {
        app,
        service: None,
        action,
        force,
        who,
        reply,
    })
    .await;
    match r {
        Ok(id) => Json(json!({"containerId": id})).into_response(),
        Err(e @ CommandError::Locked { .. }) => v2_error(StatusCode::LOCKED, &e.to_string()),
        Err(e @ (CommandError::NotFound(_) | CommandError::Invalid(_))) => {
            text(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `{"appId": APP, "force": ...}`: the app's containers and volumes go,
/// then it is applied again.
pub(super) async fn purge(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    bytes: axum::body::Bytes,
) -> Response {
    let b = match Body::parse(&bytes) {
        Ok(b) => b,
        Err(m) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let Some(app) = b.text("appId") else {
        return text(StatusCode::BAD_REQUEST, "Invalid or missing appId");
    };
    let app = match AppName::new(app) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if !scope.reaches(&app) {
        return v2_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let who = "HTTP API POST /v1/purge".to_owned();
    let force = b.force();
    let r = ask(&api, |reply| Command::PurgeApp {
        app,
        force,
        who,
        reply,
    })
    .await;
    match r {
        Ok(_) => Json(json!({"Data": "OK", "Error": ""})).into_response(),
        Err(e @ CommandError::Locked { .. }) => v2_error(StatusCode::LOCKED, &e.to_string()),
        Err(e @ CommandError::NotFound(_)) => v1_error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
