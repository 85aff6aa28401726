//! Who a request speaks for: the device key reaches every app, an app's key
//! only that app's routes. The key middleware puts a `Scope` into the
//! request's extensions; handlers of per-app routes ask `Scope::reaches`.

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Api;
use crate::names::AppName;

/// What the key of a request reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The device key: every app and the device routes.
    Device,
    /// An app's key: that app's routes only.
    App(AppName),
}

impl Scope {
    /// Whether a request with this scope may act on `app`.
    pub fn reaches(&self, app: &AppName) -> bool {
        match self {
            Scope::Device => true,
            Scope::App(own) => own == app,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyQuery {
    apikey: Option<String>,
}

/// The API key: `?apikey=` or `Authorization: Bearer`. On success the
/// request carries its `Scope`.
pub(super) async fn require_key(
    State(api): State<Api>,
    Query(q): Query<KeyQuery>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let given = q.apikey.or(bearer);
    if given.is_some_and(|g| same_secret(g.as_bytes(), api.key.as_bytes())) {
        req.extensions_mut().insert(Scope::Device);
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
    }
}

/// Compares without stopping at the first difference (no timing hint).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
