//! balena's v1 routes: update, reboot, shutdown, device, a single-service
//! app's stop and start, and purge.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::Body;
use super::{ask, text, v1_error, v2_error, Api, Scope};
use crate::command::{describe, Command, CommandError, PowerAction, ServiceAction};
use crate::gate::Blocker;
use crate::model::{AppState, UpdateStatus};
use crate::names::AppName;

/// 204 when an update check was triggered, 202 when there was nothing to
/// check (no target in force), as balena answers 202 when it does not
/// trigger one. An app's key forces its own app only.
pub(super) async fn update(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    bytes: axum::body::Bytes,
) -> Response {
    let b = match Body::parse(&bytes) {
        Ok(b) => b,
        Err(m) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let who = scope.who("POST /v1/update");
    let force = b.force();
    let only = scope.app().cloned();
    let r = ask(&api, |reply| Command::Update {
        force,
        only,
        who,
        reply,
    });
    match r.await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::ACCEPTED.into_response(),
        Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub(super) async fn reboot(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    bytes: axum::body::Bytes,
) -> Response {
    power(api, scope, PowerAction::Reboot, &bytes, "/v1/reboot").await
}

pub(super) async fn shutdown(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
    bytes: axum::body::Bytes,
) -> Response {
    power(api, scope, PowerAction::PowerOff, &bytes, "/v1/shutdown").await
}

/// Any key may ask; only the device key may force, as a forced reboot
/// goes through every app's locks.
async fn power(api: Api, scope: Scope, action: PowerAction, bytes: &[u8], route: &str) -> Response {
    let b = match Body::parse(bytes) {
        Ok(b) => b,
        Err(m) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let force = b.force();
    if let (true, Some(a)) = (force, scope.app()) {
        return v1_error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "only the device key can force a {} through other apps' locks; this is the key of app {a}",
                action.noun()
            ),
        );
    }
    let who = scope.who(&format!("POST {route}"));
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
        Err(CommandError::Locked { blocked_by, action }) => v1_error(
            StatusCode::LOCKED,
            &locked_for(&scope, &blocked_by, &action),
        ),
        Err(e) => v1_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A refusal for the locks in `blocked_by`, as `scope` may see it: the
/// device key sees every blocker; an app's key its own app's, and only how
/// many of other apps there are.
pub(super) fn locked_for(scope: &Scope, blocked_by: &[Blocker], action: &str) -> String {
    let Some(own) = scope.app() else {
        return format!(
            "{}; not going to {action} (force overrides)",
            describe(blocked_by)
        );
    };
    let (mine, others): (Vec<Blocker>, Vec<Blocker>) =
        blocked_by.iter().cloned().partition(|b| match b {
            Blocker::Lock(id) | Blocker::Unknown(id) => id.app == *own,
            Blocker::Updating(a) => a == own,
            Blocker::LockRoot
            | Blocker::LockMounts
            | Blocker::Powering
            | Blocker::FleetSlot(_)
            | Blocker::Window(_) => true,
        });
    let mut parts: Vec<String> = Some(describe(&mine))
        .filter(|d| !d.is_empty())
        .into_iter()
        .collect();
    match others.len() {
        0 => {}
        1 => parts.push("1 lock of other apps".into()),
        n => parts.push(format!("{n} locks of other apps")),
    }
    let held = match parts.len() {
        2 => format!("{} and {}", parts[0], parts[1]),
        _ => parts.concat(),
    };
    let held = match mine.is_empty() {
        true => format!("held: {held}"),
        false => held,
    };
    format!("{held}; not going to {action} (only the device key can force it)")
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
    let who = scope.who(&format!("POST /v1/apps/{app}/{}", action.verb()));
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
    let who = scope.who("POST /v1/purge");
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
        Err(e @ CommandError::Conflict(_)) => v1_error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
