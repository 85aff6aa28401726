//! Listening: the unix socket and optional TCP, serving the router.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, ServiceBuilder};

use super::{router, Api};

/// A request is answered within this (503 otherwise). Long because some
/// routes wait for logind to accept a reboot or for containers to restart.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest request body (413 above it). Ours are `{"force": true}`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves on the unix socket (0600, replacing a stale one) and on TCP when
/// configured. Errors are logged; holdfast keeps running without the API.
pub async fn serve(api: Api, socket: PathBuf, tcp: Option<std::net::SocketAddr>) {
    let app = with_limits(router(api));
    if let Some(addr) = tcp {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "HTTP API listening on TCP {addr}");
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, app).await {
                        tracing::error!(error = %e, "HTTP API on TCP stopped");
                    }
                });
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for the HTTP API on TCP {addr}")
            }
        }
    }
    let listener = match bind_unix(&socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(socket = %socket.display(), error = %e, "cannot listen for the HTTP API");
            return;
        }
    };
    tracing::info!(socket = %socket.display(), "HTTP API listening on {}", socket.display());
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP API stopped");
    }
}

/// The request-level limits: body size (413) and request time (503), both
/// answered in the JSON shape of the route's API generation.
pub fn with_limits(router: Router) -> Router {
    limited(router, REQUEST_TIMEOUT, MAX_BODY_BYTES)
}

fn limited(router: Router, timeout: Duration, max_body: usize) -> Router {
    let timed_out = move |uri: Uri, e: BoxError| async move {
        if e.is::<Elapsed>() {
            let msg = format!(
                "no answer within {}; what was asked may still happen",
                humantime::format_duration(timeout)
            );
            limit_error(uri.path(), StatusCode::SERVICE_UNAVAILABLE, &msg)
        } else {
            limit_error(
                uri.path(),
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            )
        }
    };
    router
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_body, body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out))
                .layer(TimeoutLayer::new(timeout)),
        )
}

/// Refuses a declared length over the limit before any of the body is read
/// (and before the key is checked: nothing is learnt from a 413), and gives
/// the 413 of a body found too big while reading it our JSON shape.
async fn body_limit(State(max): State<usize>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_big = || {
        let msg = format!("request body larger than {max} bytes");
        let mut r = limit_error(&path, StatusCode::PAYLOAD_TOO_LARGE, &msg);
        // The rest of the body is not read: the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    if declared.is_some_and(|n| n > max as u64) {
        return too_big();
    }
    let r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_big()
    } else {
        r
    }
}

/// v2 routes answer `{status, message}`, the others balena's v1 `{Data, Error}`.
fn limit_error(path: &str, status: StatusCode, msg: &str) -> Response {
    let body = if path.starts_with("/v2/") {
        json!({"status": "failed", "message": msg})
    } else {
        json!({"Data": "", "Error": msg})
    };
    (status, Json(body)).into_response()
}

fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Only a socket is replaced: never a file someone put there.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    async fn body_of(r: Response) -> serde_json::Value {
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn a_slow_request_gets_503_in_the_routes_shape() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        };
        let app = limited(
            Router::new()
                .route("/v1/slow", get(slow))
                .route("/v2/slow", get(slow)),
            Duration::from_millis(50),
            MAX_BODY_BYTES,
        );
        let r = app
            .clone()
            .oneshot(Request::get("/v1/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = body_of(r).await;
        assert!(v["Error"].as_str().unwrap().contains("50ms"), "{v}");
        let r = app
            .oneshot(Request::get("/v2/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_of(r).await["status"], "failed");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_declared_or_not() {
        let app = limited(
            Router::new().route(
                "/v1/take",
                post(|b: axum::body::Bytes| async move { b.len().to_string() }),
            ),
            REQUEST_TIMEOUT,
            100,
        );
        let declared = Request::post("/v1/take")
            .header(header::CONTENT_LENGTH, "101")
            .body(Body::from(vec![b'x'; 101]))
            .unwrap();
        let r = app.clone().oneshot(declared).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert!(body_of(r).await["Error"]
            .as_str()
            .unwrap()
            .contains("100 bytes"));
        // No length given: found while reading.
        let chunks = futures_util::stream::iter(
            [vec![b'x'; 60], vec![b'x'; 60]].map(Ok::<_, std::io::Error>),
        );
        let streamed = Request::post("/v1/take")
            .body(Body::from_stream(chunks))
            .unwrap();
        let r = app.clone().oneshot(streamed).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body_of(r).await["Error"]
            .as_str()
            .unwrap()
            .contains("100 bytes"));
        let ok = Request::post("/v1/take")
            .body(Body::from(vec![b'x'; 100]))
            .unwrap();
        assert_eq!(app.oneshot(ok).await.unwrap().status(), StatusCode::OK);
    }
}
