//! The state routes in balena's shapes (`/v2/state/status`,
//! `/v2/applications/state`) and holdfast's `/v2/locks`. holdfast's app
//! and release names stand where balena has numeric ids. Each lists only
//! the apps the request's key reaches. The bodies are pure functions of
//! what the tasks publish and what the engine has, tested below.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::{ask, v2_error, Api, Scope};
use crate::command::EngineView;
use crate::command::{Command, LockInfo};
use crate::engine::{Container, RunState};
use crate::gate::{self, Decision};
use crate::model::{utc, AppState, AppStatus, Snapshot, UpdateStatus};
use crate::names::{AppName, ServiceId};

pub(super) async fn state_status(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
) -> Response {
    match ask(&api, |reply| Command::EngineState { reply }).await {
        Ok(view) => {
            let u = api.handle.views.apps.borrow().clone();
            Json(status_body(&u, &view, &scope)).into_response()
        }
        Err(e) => v2_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub(super) async fn applications_state(
    State(api): State<Api>,
    Extension(scope): Extension<Scope>,
) -> Response {
    match ask(&api, |reply| Command::EngineState { reply }).await {
        Ok(view) => {
            let u = api.handle.views.apps.borrow().clone();
            Json(applications_body(&u, &view, &scope)).into_response()
        }
        Err(e) => v2_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub(super) async fn locks(State(api): State<Api>, Extension(scope): Extension<Scope>) -> Response {
    match api
        .handle
        .request(|reply| Command::ListLocks { reply })
        .await
    {
        Ok(locks) => {
            let snap = api.handle.views.snapshot.borrow().clone();
            let u = api.handle.views.apps.borrow().clone();
            Json(locks_body(&locks, &snap, &u, &scope)).into_response()
        }
        Err(e) => v2_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn reaches(scope: &Scope, app: &str) -> bool {
    AppName::new(app).is_ok_and(|a| scope.reaches(&a))
}

/// `{"status": "success", "appState", "overallDownloadProgress",
/// "containers", "images", "release"}`. balena lists the containers and
/// images of its first app only; holdfast lists every reached app's, and
/// `release` is the first app's (by name).
pub(super) fn status_body(u: &UpdateStatus, view: &EngineView, scope: &Scope) -> Value {
    let apps: Vec<&AppStatus> = u
        .apps
        .iter()
        .filter(|(name, _)| reaches(scope, name))
        .map(|(_, a)| a)
        .collect();
    let app_state = if apps.iter().all(|a| a.state == AppState::Applied) {
        "applied"
    } else if apps.iter().any(|a| a.state == AppState::Failed) {
        "failed"
    } else {
        "applying"
    };
    let containers: Vec<Value> = view
        .containers
        .iter()
        .filter(|c| scope.reaches(&c.app))
        .map(container_json)
        .collect();
    let images = images_json(u, view, scope);
    let progress: Vec<u64> = images
        .iter()
        .filter_map(|i| i["downloadProgress"].as_u64())
        .collect();
    let overall =
        (!progress.is_empty()).then(|| progress.iter().sum::<u64>() / progress.len() as u64);
    json!({
        "status": "success",
        "appState": app_state,
        "overallDownloadProgress": overall,
        "containers": containers,
        "images": images,
        "release": apps.first().map(|a| a.release.clone()),
    })
}

/// balena's service status from the engine's state word.
fn service_status(c: &Container) -> String {
    match c.status.as_str() {
        _ if c.state == RunState::Running => "Running".into(),
        "created" => "Installed".into(),
        "dead" => "Dead".into(),
        "" => "Unknown".into(),
        other => other.into(),
    }
}

fn container_json(c: &Container) -> Value {
    json!({
        "status": service_status(c),
        "serviceName": c.service.as_str(),
        "serviceId": c.service.as_str(),
        "appName": c.app.as_str(),
        "appId": c.app.as_str(),
        "imageId": c.image,
        "dockerImageId": c.image_id,
        "containerId": c.id,
        "createdAt": utc(u64::try_from(c.created).unwrap_or(0).saturating_mul(1_000_000)),
        "release": c.release,
        "releaseId": c.release,
    })
}

/// Download percent of `image` of `app` while it is being pulled.
fn progress_of(u: &UpdateStatus, app: &str, image: &str) -> Option<u8> {
    u.apps.get(app)?.images.get(image).copied()
}

/// The target's images of each reached app: `Downloaded` when the engine
/// has it, else `Downloading` (with its percent while it is pulled).
fn images_json(u: &UpdateStatus, view: &EngineView, scope: &Scope) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(t) = &view.target else { return out };
    for (app, at) in t.apps.iter().filter(|(a, _)| scope.reaches(a)) {
        for (service, spec) in &at.services {
            let progress = progress_of(u, app.as_str(), &spec.image);
            let present = view.present.contains(&spec.image) && progress.is_none();
            let docker_id = view
                .containers
                .iter()
                .find(|c| c.image == spec.image && !c.image_id.is_empty())
                .map(|c| c.image_id.clone());
            out.push(json!({
                "name": spec.image,
                "appName": app.as_str(),
                "appId": app.as_str(),
                "serviceName": service.as_str(),
                "imageId": spec.image,
                "dockerImageId": docker_id,
                "status": if present { "Downloaded" } else { "Downloading" },
                "downloadProgress": progress,
            }));
        }
    }
    out
}

/// `{APP: {"appId", "appUuid", "commit", "release", "updateStatus",
/// "state", "blocked_by", "error", "services": {SERVICE: {"status",
/// "image", "downloadProgress", "releaseId", "release"}}}}`: the apps the
/// updater reports or the target names, the services the target names or
/// the engine has.
pub(super) fn applications_body(u: &UpdateStatus, view: &EngineView, scope: &Scope) -> Value {
    let target_apps = view.target.iter().flat_map(|t| t.apps.keys());
    let names: BTreeSet<String> = u
        .apps
        .keys()
        .cloned()
        .chain(target_apps.map(|a| a.to_string()))
        .filter(|a| reaches(scope, a))
        .collect();
    let mut out = Map::new();
    for app in names {
        let status = u.apps.get(&app);
        let target = view
            .target
            .as_ref()
            .and_then(|t| t.apps.iter().find(|(a, _)| a.as_str() == app))
            .map(|(_, t)| t);
        let release = status
            .map(|s| s.release.clone())
            .or_else(|| target.map(|t| t.release.clone()))
            .unwrap_or_default();
        let mut services: BTreeMap<String, Value> = BTreeMap::new();
        let mine: Vec<&Container> = view
            .containers
            .iter()
            .filter(|c| c.app.as_str() == app)
            .collect();
        let mut names: BTreeSet<String> = mine.iter().map(|c| c.service.to_string()).collect();
        names.extend(
            target
                .iter()
                .flat_map(|t| t.services.keys().map(|s| s.to_string())),
        );
        for svc in names {
            let spec = target.and_then(|t| t.services.iter().find(|(s, _)| s.as_str() == svc));
            let image = spec.map(|(_, s)| s.image.clone());
            // Several containers mid-update: the running one, else the newest.
            let c = mine
                .iter()
                .filter(|c| c.service.as_str() == svc)
                .max_by_key(|c| (c.state == RunState::Running, c.created));
            let progress = image.as_deref().and_then(|i| progress_of(u, &app, i));
            let status = match (c, &image) {
                (Some(c), _) if progress.is_none() => service_status(c),
                (_, Some(i)) if progress.is_none() && view.present.contains(i) => {
                    "Downloaded".into()
                }
                _ => "Downloading".into(),
            };
            let svc_release = c
                .map(|c| c.release.clone())
                .unwrap_or_else(|| release.clone());
            services.insert(
                svc,
                json!({
                    "status": status,
                    "image": image.or_else(|| c.map(|c| c.image.clone())),
                    "downloadProgress": progress,
                    "releaseId": svc_release,
                    "release": svc_release,
                }),
            );
        }
        let all_present =
            target.is_none_or(|t| t.services.values().all(|s| view.present.contains(&s.image)));
        out.insert(
            app.clone(),
            json!({
                "appId": app,
                "appUuid": app,
                "commit": release,
                "release": release,
                "updateStatus": update_status(status.map(|s| s.state), all_present),
                "state": status.map(|s| s.state),
                "blocked_by": status.map(|s| s.blocked_by.clone()).unwrap_or_default(),
                "error": status.and_then(|s| s.error.clone()),
                "services": services,
            }),
        );
    }
    Value::Object(out)
}

/// balena's `update_status` words for holdfast's app states.
fn update_status(state: Option<AppState>, images_present: bool) -> &'static str {
    match state {
        None | Some(AppState::Applied) => "done",
        Some(AppState::Downloading) => "downloading",
        Some(AppState::Waiting) if images_present => "downloaded",
        Some(AppState::Waiting) => "downloading",
        Some(AppState::Applying) => "applying changes",
        Some(AppState::Failed) => "aborted",
    }
}

/// `{"status": "success", "lock_override", "locks": [...], "apps": {APP:
/// {"blocked_by": [...]}}}`: the lock table with holders (as D-Bus
/// ListLocks), and what the gate would hold each app's update back with
/// now.
pub(super) fn locks_body(
    locks: &[LockInfo],
    snap: &Snapshot,
    u: &UpdateStatus,
    scope: &Scope,
) -> Value {
    let mut apps: BTreeSet<AppName> = u
        .apps
        .keys()
        .filter_map(|a| AppName::new(a.as_str()).ok())
        .collect();
    let mut listed = Vec::new();
    for l in locks {
        let Ok(id) = ServiceId::parse(&l.service) else {
            continue;
        };
        if !scope.reaches(&id.app) {
            continue;
        }
        let mut v = serde_json::to_value(l).unwrap_or_default();
        v["app"] = json!(id.app.as_str());
        v["since"] = json!(utc(l.since_usec));
        listed.push(v);
        apps.insert(id.app);
    }
    let apps: Map<String, Value> = apps
        .into_iter()
        .filter(|a| scope.reaches(a))
        .map(|a| {
            let blocked_by: Vec<String> = match gate::apply(snap, &a, None) {
                Decision::Blocked(b) => b.iter().map(ToString::to_string).collect(),
                Decision::Go | Decision::Through { .. } => Vec::new(),
            };
            (a.to_string(), json!({"blocked_by": blocked_by}))
        })
        .collect();
    json!({
        "status": "success",
        "lock_override": snap.lock_override.enabled,
        "locks": listed,
        "apps": apps,
    })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
