//! balena's v2 per-app routes (restart, the service actions, purge) and
//! `/v2/version`. Errors are `{"status": "failed", "message": ...}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::Body;
use super::{ask, v2_error, Api, Scope};
use crate::command::{Command, CommandError, ServiceAction};
use crate::names::{AppName, ServiceName};

pub(super) async fn version() -> Json<Value> {
    Json(json!({"status": "success", "version": env!("CARGO_PKG_VERSION")}))
}

/// The body, the app named in the path, and whether the key reaches it;
/// else the failure to answer.
fn app_request(
    scope: &Scope,
    app: String,
    bytes: &[u8],
) -> Result<(AppName, Body), (StatusCode, String)> {
    let body = Body::parse(bytes).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    let app = AppName::new(app).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    if !scope.reaches(&app) {
        return Err((StatusCode::UNAUTHORIZED, "Unauthorized".into()));
    }
    Ok((app, body))
}

/// `200 OK`, or the error's status.
fn answer<T>(r: Result<T, CommandError>) -> Response {
    match r {
        Ok(_) => (StatusCode::OK, "OK").into_response(),
        Err(e) => {
            let status = match e {
                CommandError::Locked { .. } => StatusCode::LOCKED,
                CommandError::NotFound(_) => StatusCode::NOT_FOUND,
                CommandError::Conflict(_) => StatusCode::CONFLICT,
                CommandError::Invalid(_) | CommandError::InvalidName(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            v2_error(status, &e.to_string())
        }
    }
}

pub(super) async fn restart_app(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let (app, b) = match app_request(&scope, app, &bytes) {
        Ok(x) => x,
        Err((status, msg)) => return v2_error(status, &msg),
    };
    let who = scope.who(&format!("POST /v2/applications/{app}/restart"));
    let force = b.force();
    answer(
        ask(&api, |reply| Command::RestartApp {
            app,
            force,
            who,
            reply,
        })
        .await,
    )
}

pub(super) async fn purge(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let (app, b) = match app_request(&scope, app, &bytes) {
        Ok(x) => x,
        Err((status, msg)) => return v2_error(status, &msg),
    };
    let who = scope.who(&format!("POST /v2/applications/{app}/purge"));
    let force = b.force();
    answer(
        ask(&api, |reply| Command::PurgeApp {
            app,
            force,
            who,
            reply,
        })
        .await,
    )
}

pub(super) async fn restart_service(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    service(api, scope, app, &bytes, ServiceAction::Restart).await
}

pub(super) async fn stop_service(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    service(api, scope, app, &bytes, ServiceAction::Stop).await
}

pub(super) async fn start_service(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    Path(app): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    service(api, scope, app, &bytes, ServiceAction::Start).await
}

/// `{"serviceName": ..., "force": ...}` (balena's `imageId` is not taken:
/// holdfast's services have names, not image ids).
async fn service(
    api: Api,
    scope: Scope,
    app: String,
    bytes: &[u8],
    action: ServiceAction,
) -> Response {
    let (app, b) = match app_request(&scope, app, bytes) {
        Ok(x) => x,
        Err((status, msg)) => return v2_error(status, &msg),
    };
    let Some(name) = b.text("serviceName") else {
        return v2_error(StatusCode::BAD_REQUEST, "serviceName was not provided");
    };
    let service = match ServiceName::new(name) {
        Ok(s) => s,
        Err(e) => return v2_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let who = scope.who(&format!(
        "POST /v2/applications/{app}/{}-service",
        action.verb()
    ));
    let force = b.force();
    answer(
        ask(&api, |reply| Command::ServiceAction {
            app,
            service: Some(service),
            action,
            force,
            who,
            reply,
        })
        .await,
    )
}
