//! Listening: the unix socket and optional TCP, each with its own accept
//! loop and limits. Clients that connect and stay silent, send half a
//! request or a huge body must not use up holdfastd's memory or its file
//! descriptors, which it needs for the lock directories.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use super::{router, Api};

/// Connections open at once, per listener. At the cap a new connection
/// takes the place of the one idle longest (no request in flight); when
/// every one is busy with a request, the new one is closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A request head must be complete this long after the server starts
/// waiting for it: after accept, and after each answer on a kept-alive
/// connection (so an idle keep-alive connection is closed after this too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection with no request started or answered for this long is
/// closed, gracefully first. The backstop for what the header timeout does
/// not cover, such as a client that does not read its answers.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request is answered within this (503 otherwise). Long because some
/// routes wait for logind to accept a reboot or for containers to restart.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest request body (413 above it). Ours are `{"force": true}`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest request head, so each connection's read buffer stays small
/// (a bigger head is answered 431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Pause after a failed accept (EMFILE and the like), so that a condition
/// that lasts does not turn the loop into a busy one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// After a graceful close was asked for, how long a connection with no
/// request in flight may take to finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The per-connection limits, as one value so tests can shorten them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connections: usize,
    header_read: Duration,
    idle: Duration,
    close_grace: Duration,
}

const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    header_read: HEADER_READ_TIMEOUT,
    idle: IDLE_TIMEOUT,
    close_grace: CLOSE_GRACE,
};

/// Serves on the unix socket (0600, replacing only a stale socket) and on
/// TCP when configured. Errors are logged; holdfast keeps running without
/// the API.
pub async fn serve(api: Api, socket: PathBuf, tcp: Option<std::net::SocketAddr>) {
    let app = with_limits(router(api));
    // Both listeners live in this one future: dropping it (a reload that
    // moves them) closes both.
    let tcp_loop = async {
        let Some(addr) = tcp else { return };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "HTTP API listening on TCP {addr}");
                accept_loop(l, app.clone(), "TCP", LIMITS).await
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for the HTTP API on TCP {addr}")
            }
        }
    };
    let unix_loop = async {
        match bind_unix(&socket).await {
            Ok(l) => {
                tracing::info!(socket = %socket.display(), "HTTP API listening on {}", socket.display());
                accept_loop(l, app.clone(), "the unix socket", LIMITS).await
            }
            Err(e) => {
                tracing::error!(socket = %socket.display(), error = %e, "cannot listen for the HTTP API")
            }
        }
    };
    tokio::join!(tcp_loop, unix_loop);
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

/// Binds under a temporary name, sets 0600, then links the socket into
/// place, so it is never reachable with other permissions and never
/// replaces anything but a stale socket.
async fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "socket path has no name"))?;
    let tmp = dir.join(format!(".{}.new", name.to_string_lossy()));
    remove_stale_socket(&tmp).await?;
    let l = tokio::net::UnixListener::bind(&tmp)?;
    let placed = place_socket(&tmp, path).await;
    let _ = std::fs::remove_file(&tmp);
    placed.map(|()| l)
}

async fn place_socket(tmp: &Path, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
    remove_stale_socket(path).await?;
    // A link never replaces: whatever appeared meanwhile stays.
    std::fs::hard_link(tmp, path)
}

/// Removes `path` if it is a socket nobody listens on; leaves alone (with
/// an error) a live socket or anything that is not a socket.
async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !m.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; left alone", path.display()),
        ));
    }
    let probe = tokio::net::UnixStream::connect(path);
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(Err(e)) => Err(e),
        // Answered, or its backlog is full: someone serves it.
        Ok(Ok(_)) | Err(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by another process", path.display()),
        )),
    }
}

/// What the accept loop needs of a listener.
trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// An accept error that concerns one incoming connection only: the next
/// accept may work at once.
fn only_this_connection(e: &io::Error) -> bool {
    use nix::libc;
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// One open connection, as the accept loop sees it.
struct Conn {
    activity: Mutex<Activity>,
    /// Told when the accept loop needs its place.
    evict: Notify,
}

struct Activity {
    in_flight: usize,
    /// The last request start or answer (or the accept).
    last: Instant,
}

impl Conn {
    fn activity(&self) -> (usize, Instant) {
        let a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        (a.in_flight, a.last)
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.in_flight += 1;
        a.last = Instant::now();
        InFlight(self.clone())
    }
}

/// A request being served; its end (answered or dropped) counts as activity.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.in_flight -= 1;
        a.last = Instant::now();
    }
}

#[derive(Default)]
struct Open {
    next_id: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

type Registry = Arc<Mutex<Open>>;

/// A connection's place in the registry, given back when its task ends.
struct Slot {
    registry: Registry,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        open.conns.remove(&self.id);
    }
}

enum Admission {
    /// There was room.
    Room(Slot, Arc<Conn>),
    /// The connection idle longest was told to go to make room.
    Evicted(Slot, Arc<Conn>),
    /// Every connection has a request in flight.
    Full,
}

fn admit(registry: &Registry, cap: usize) -> Admission {
    let mut open = registry.lock().unwrap_or_else(|e| e.into_inner());
    let mut evicted = false;
    if open.conns.len() >= cap {
        let idlest = open
            .conns
            .iter()
            .filter_map(|(id, c)| {
                let (in_flight, last) = c.activity();
                (in_flight == 0).then_some((last, *id))
            })
            .min();
        let Some((_, id)) = idlest else {
            return Admission::Full;
        };
        if let Some(c) = open.conns.remove(&id) {
            c.evict.notify_one();
        }
        evicted = true;
    }
    let id = open.next_id;
    open.next_id += 1;
    let conn = Arc::new(Conn {
        activity: Mutex::new(Activity {
            in_flight: 0,
            last: Instant::now(),
        }),
        evict: Notify::new(),
    });
    open.conns.insert(id, conn.clone());
    let slot = Slot {
        registry: registry.clone(),
        id,
    };
    if evicted {
        Admission::Evicted(slot, conn)
    } else {
        Admission::Room(slot, conn)
    }
}

/// Accepts forever. Failures and crowding are logged once per burst, with
/// a count when it is over.
async fn accept_loop<L: Listener>(listener: L, app: Router, on: &'static str, limits: Limits) {
    let registry = Registry::default();
    let mut failed = 0u64;
    let mut crowded = 0u64;
    loop {
        let io = match listener.accept().await {
            Ok(io) => io,
            Err(e) if only_this_connection(&e) => {
                tracing::debug!(error = %e, "HTTP API on {on}: accept failed for one connection");
                continue;
            }
            Err(e) => {
                if failed == 0 {
                    tracing::warn!(error = %e,
                        "HTTP API on {on}: cannot accept connections ({e}); retrying every {}",
                        humantime::format_duration(ACCEPT_BACKOFF));
                }
                failed += 1;
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if failed > 0 {
            tracing::info!(
                "HTTP API on {on}: accepting connections again after {failed} failed attempts"
            );
            failed = 0;
        }
        let mut crowding = || {
            if crowded == 0 {
                tracing::warn!("HTTP API on {on}: {} connections open; each new one takes the place of the one idle longest, or is closed when all are busy",
                    limits.connections);
            }
            crowded += 1;
        };
        let (slot, conn) = match admit(&registry, limits.connections) {
            Admission::Room(slot, conn) => {
                if crowded > 0 {
                    tracing::info!("HTTP API on {on}: below {} connections again; {crowded} were closed to stay under it",
                        limits.connections);
                    crowded = 0;
                }
                (slot, conn)
            }
            Admission::Evicted(slot, conn) => {
                crowding();
                (slot, conn)
            }
            Admission::Full => {
                crowding();
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            run_connection(io, app, conn, limits).await;
        });
    }
}

/// Serves one connection until the client or a limit ends it.
async fn run_connection<I>(io: I, app: Router, conn: Arc<Conn>, limits: Limits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let conn = conn.clone();
        tower::service_fn(move |req: Request<hyper::body::Incoming>| {
            let busy = conn.request_started();
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await;
                drop(busy);
                r
            }
        })
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(connection);
    let mut closing = false;
    let mut deadline = Instant::now() + limits.idle;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP API connection ended");
                }
                return;
            }
            _ = conn.evict.notified() => {
                if conn.activity().0 == 0 {
                    return;
                }
                // A request came in meanwhile: it is answered first.
                connection.as_mut().graceful_shutdown();
                closing = true;
                deadline = Instant::now() + limits.close_grace;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let (in_flight, last) = conn.activity();
                if in_flight > 0 {
                    // Bounded by the request timeout; looked at again then.
                    deadline = now + if closing { limits.close_grace } else { limits.idle };
                } else if closing {
                    return;
                } else if last + limits.idle > now {
                    deadline = last + limits.idle;
                } else {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    deadline = now + limits.close_grace;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    fn short(connections: usize) -> Limits {
        Limits {
            connections,
            header_read: Duration::from_secs(10),
            idle: Duration::from_millis(200),
            close_grace: Duration::from_millis(200),
        }
    }

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
        let chunks =
            futures_util::stream::iter([vec![b'x'; 60], vec![b'x'; 60]].map(Ok::<_, io::Error>));
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

    /// A fake listener whose every accept fails like EMFILE.
    struct Exhausted(Arc<AtomicUsize>);

    impl Listener for Exhausted {
        type Io = UnixStream;
        fn accept(&self) -> impl Future<Output = io::Result<UnixStream>> + Send {
            self.0.fetch_add(1, Ordering::SeqCst);
            async { Err(io::Error::from_raw_os_error(nix::libc::EMFILE)) }
        }
    }

    #[tokio::test]
    async fn accept_errors_back_off() {
        let calls = Arc::new(AtomicUsize::new(0));
        let run = accept_loop(Exhausted(calls.clone()), Router::new(), "test", short(4));
        let _ = tokio::time::timeout(Duration::from_millis(550), run).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((5..=7).contains(&n), "{n} accept attempts in 550 ms");
    }

    /// Serves `app` with `limits` on a fresh unix socket; returns its path.
    async fn listen(app: Router, limits: Limits) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let l = bind_unix(&path).await.unwrap();
        tokio::spawn(accept_loop(l, app, "test", limits));
        (dir, path)
    }

    async fn send(path: &Path, req: &str) -> UnixStream {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        s
    }

    /// Reads until the server closes; what it sent.
    async fn until_closed(s: &mut UnixStream) -> String {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out));
        read.await
            .expect("server did not close")
            .unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    const PING: &str = "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn at_the_cap_the_idlest_goes_and_busy_ones_stay() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (started_tx, mut started) = tokio::sync::mpsc::channel(4);
        let app = Router::new().route("/ping", get(|| async { "OK" })).route(
            "/wait",
            get({
                let gate = gate.clone();
                move || async move {
                    started_tx.send(()).await.unwrap();
                    let _ = gate.acquire().await.unwrap();
                    "waited"
                }
            }),
        );
        let (_dir, path) = listen(app, short(2)).await;
        // Two silent connections; a third one that asks takes the place of
        // the first, and is answered.
        let mut first = UnixStream::connect(&path).await.unwrap();
        let _second = UnixStream::connect(&path).await.unwrap();
        let mut third = send(&path, PING).await;
        assert!(until_closed(&mut third).await.ends_with("OK"));
        assert_eq!(until_closed(&mut first).await, "");
        // Two requests in flight: a newcomer is closed at once and both
        // are still answered.
        let wait = "GET /wait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut a = send(&path, wait).await;
        let mut b = send(&path, wait).await;
        started.recv().await.unwrap();
        started.recv().await.unwrap();
        let mut refused = send(&path, PING).await;
        assert_eq!(until_closed(&mut refused).await, "");
        gate.add_permits(2);
        assert!(until_closed(&mut a).await.ends_with("waited"));
        assert!(until_closed(&mut b).await.ends_with("waited"));
        let mut later = send(&path, PING).await;
        assert!(until_closed(&mut later).await.ends_with("OK"));
    }

    #[tokio::test]
    async fn a_head_over_the_limit_gets_431() {
        let app = Router::new().route("/ping", get(|| async { "OK" }));
        let (_dir, path) = listen(app, short(4)).await;
        let big = format!(
            "GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "y".repeat(MAX_HEAD_BYTES)
        );
        let mut s = send(&path, &big).await;
        assert!(until_closed(&mut s).await.starts_with("HTTP/1.1 431"));
        let mut s = send(&path, PING).await;
        assert!(until_closed(&mut s).await.ends_with("OK"));
    }

    #[tokio::test]
    async fn a_client_that_reads_no_answers_is_dropped_after_idle_and_grace() {
        let big = "x".repeat(256 * 1024);
        let app = Router::new().route("/big", get(move || async move { big }));
        let (client, server) = tokio::io::duplex(1024);
        let conn = Arc::new(Conn {
            activity: Mutex::new(Activity {
                in_flight: 0,
                last: Instant::now(),
            }),
            evict: Notify::new(),
        });
        let mut client = client;
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let limits = short(1);
        tokio::time::timeout(
            Duration::from_secs(3),
            run_connection(server, app, conn, limits),
        )
        .await
        .expect("a stuck connection was not dropped");
        assert!(started.elapsed() >= limits.idle + limits.close_grace);
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_a_live_one_or_a_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let l = bind_unix(&path).await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = bind_unix(&path).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(l);
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        assert!(bind_unix(&file).await.is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
