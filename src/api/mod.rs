//! The balena-compatible HTTP API (axum), on a unix socket and optionally
//! TCP: a thin adapter over the same commands as D-Bus. Contract:
//! docs/openapi.yaml. Listeners and their limits: `serve`; the key: `key`;
//! who a key speaks for, and where: `auth`; each key's share: `share`.
//! Routes: `v1`, `v2`, and the state routes in `state`; request bodies:
//! `body`.

mod auth;
mod body;
mod conn;
mod key;
mod serve;
mod share;
mod state;
mod v1;
mod v2;

pub use auth::Scope;
pub use key::{
    app_key_dir, app_key_path, device_key_path, hash_secret_path, load_or_create_app_key,
    load_or_create_hash_secret, load_or_create_key, remove_app_key, rotate_key, ApiKeys, KeyError,
};
pub use serve::{serve, AppListeners};

use std::sync::Arc;
use std::time::Duration;

use crate::command::{Command, CommandError, Handle};
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

/// What every listener of the API shares. Clones share it all.
#[derive(Clone)]
pub struct Api {
    pub handle: Handle,
    /// The device key and the app keys, kept by the updater.
    pub keys: tokio::sync::watch::Receiver<Arc<ApiKeys>>,
    /// Whose network each app gateway is (`AppListeners` keeps it).
    gateways: auth::Gateways,
    shares: share::Shares,
    /// `/v1/healthy` asks the core one at a time: callers with no key
    /// cannot fill the core's inbox, which the lock path uses too.
    pinging: Arc<tokio::sync::Mutex<()>>,
}

impl Api {
    pub fn new(handle: Handle, keys: tokio::sync::watch::Receiver<Arc<ApiKeys>>) -> Api {
        Api {
            handle,
            keys,
            gateways: Default::default(),
            shares: Default::default(),
            pinging: Default::default(),
        }
    }
}

pub fn router(api: Api) -> Router {
    // The key is checked first (the last layer added runs first), then
    // the request waits for its place in its key's share.
    let keyed = keyed_routes()
        .route_layer(middleware::from_fn_with_state(
            api.shares.clone(),
            share::within_share,
        ))
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

/// Every route that needs a key; handlers find the request's `Scope` in
/// its extensions.
fn keyed_routes() -> Router<Api> {
    Router::new()
        .route("/v1/update", post(v1::update))
        .route("/v1/reboot", post(v1::reboot))
        .route("/v1/shutdown", post(v1::shutdown))
        .route("/v1/device", get(v1::device))
        .route("/v1/apps/{app}/stop", post(v1::app_stop))
        .route("/v1/apps/{app}/start", post(v1::app_start))
        .route("/v1/purge", post(v1::purge))
        .route("/v2/version", get(v2::version))
        .route("/v2/state/status", get(state::state_status))
        .route("/v2/applications/state", get(state::applications_state))
        .route("/v2/locks", get(state::locks))
        .route("/v2/applications/{app}/restart", post(v2::restart_app))
        .route(
            "/v2/applications/{app}/restart-service",
            post(v2::restart_service),
        )
        .route(
            "/v2/applications/{app}/stop-service",
            post(v2::stop_service),
        )
        .route(
            "/v2/applications/{app}/start-service",
            post(v2::start_service),
        )
        .route("/v2/applications/{app}/purge", post(v2::purge))
}

async fn healthy(State(api): State<Api>) -> Response {
    let ping = async {
        let _one = api.pinging.lock().await;
        api.handle.request(|reply| Command::Ping { reply }).await
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Unhealthy").into_response(),
    }
}

/// A command's answer, or why there was none.
async fn ask<T>(
    api: &Api,
    make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, CommandError>>) -> Command,
) -> Result<T, CommandError> {
    api.handle.request(make).await.and_then(|r| r)
}

/// balena's v1 answer: `{"Data": "", "Error": msg}`.
fn v1_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"Data": "", "Error": msg}))).into_response()
}

/// balena's v2 failure: `{"status": "failed", "message": msg}` (also what
/// its error handler answers on v1 routes, e.g. 423).
fn v2_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"status": "failed", "message": msg}))).into_response()
}

/// A plain-text answer (balena's v1 400s and the v1 apps routes' 401).
fn text(status: StatusCode, msg: &str) -> Response {
    (status, msg.to_owned()).into_response()
}

#[cfg(test)]
mod tests;
