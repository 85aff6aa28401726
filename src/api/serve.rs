//! Listening: the unix socket, optional TCP (`api.tcp`), and the
//! addresses where app containers reach the API (`AppListeners`), each
//! with its own accept loop and limits. Clients that connect and stay silent, send half a
//! request or a huge body must not use up holdfastd's memory or its file
//! descriptors, which it needs for the lock directories.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

use super::auth::Gateways;
use super::conn::{accept_loop, LIMITS};
use super::{router, Api};
use crate::names::AppName;

/// A request is answered within this (503 otherwise). Long because some
/// routes wait for logind to accept a reboot or for containers to restart.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest request body (413 above it). Ours are `{"force": true}`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

/// Where app containers reach the API: the gateway of each app network
/// (the bridge's address on the host), and 127.0.0.1 while a service with
/// host networking asks for the API, all on config.json's `listenPort`,
/// and nowhere else. The updater says which networks exist and whose
/// they are; a network's listener is up before any container on it
/// starts, and takes only the device key and its apps' keys
/// (`auth::Gateways`). Clones share the listeners; they close when the
/// last clone goes.
#[derive(Clone)]
pub struct AppListeners {
    inner: Arc<Mutex<Listening>>,
    /// One listing of the networks at a time, across every clone (every
    /// executor, old and new), so that the last listing is the one in
    /// force.
    listing: Arc<tokio::sync::Mutex<()>>,
}

struct Listening {
    /// None: there is no API (no device key); nothing is listened on.
    app: Option<Router>,
    port: u16,
    /// Ports listened on beside `port` on the same addresses: earlier
    /// ones some containers were told and still hold.
    kept: BTreeSet<u16>,
    loopback: bool,
    /// The app networks' host addresses, and whose networks they are.
    networks: BTreeMap<IpAddr, BTreeSet<AppName>>,
    /// The same, for the key check of every listener (none without an
    /// API).
    gateways: Option<Gateways>,
    /// The bound addresses and their accept loops.
    loops: BTreeMap<SocketAddr, tokio::task::AbortHandle>,
    /// Addresses that failed to bind, so each failure is logged once.
    failed: BTreeSet<SocketAddr>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        for l in self.loops.values() {
            l.abort();
        }
    }
}

impl AppListeners {
    /// Listens nowhere until told where.
    pub fn new(api: Option<Api>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Listening {
                gateways: api.as_ref().map(|a| a.gateways.clone()),
                app: api.map(|a| with_limits(router(a))),
                port: crate::target::DEFAULT_API_PORT,
                kept: BTreeSet::new(),
                loopback: false,
                networks: BTreeMap::new(),
                loops: BTreeMap::new(),
                failed: BTreeSet::new(),
            })),
            listing: Arc::default(),
        }
    }

    /// The port, and whether loopback is wanted (a host-networked service
    /// asks for the API).
    pub fn configure(&self, port: u16, loopback: bool) {
        self.update(|l| {
            l.port = port;
            l.loopback = loopback;
        })
    }

    /// Earlier ports still listened on, beside the one in force, while
    /// containers told them run.
    pub fn keep_ports(&self, ports: BTreeSet<u16>) {
        self.update(|l| l.kept = ports)
    }

    /// The host addresses of the app networks there are now, each with
    /// the apps whose networks have it, as `list` finds them: listing and
    /// applying its answer happen under one lock that all clones share,
    /// so an older listing never overwrites a newer one.
    pub async fn list_networks<E>(
        &self,
        list: impl std::future::Future<Output = Result<BTreeMap<IpAddr, BTreeSet<AppName>>, E>>,
    ) -> Result<(), E> {
        let _one = self.listing.lock().await;
        let networks = list.await?;
        self.set_networks(networks);
        Ok(())
    }

    /// Whose each address is, before any new address is listened on.
    fn set_networks(&self, networks: BTreeMap<IpAddr, BTreeSet<AppName>>) {
        self.update(|l| {
            if let Some(g) = &l.gateways {
                g.set(networks.clone());
            }
            l.networks = networks;
        })
    }

    #[cfg(test)]
    fn networks(&self) -> BTreeMap<IpAddr, BTreeSet<AppName>> {
        self.lock().networks.clone()
    }

    /// Whether it listens on `ip` at the port in force (with a device key:
    /// without one there is nothing to listen for, and this is true).
    pub fn listening_on(&self, ip: IpAddr) -> bool {
        let l = self.lock();
        l.app.is_none() || l.loops.contains_key(&SocketAddr::new(ip, l.port))
    }

    /// Where it listens now.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.lock().loops.keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Listening> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change`, then binds what is wanted and not bound (now,
    /// before returning) and closes what is no longer wanted.
    fn update(&self, change: impl FnOnce(&mut Listening)) {
        let mut l = self.lock();
        change(&mut l);
        let Some(app) = l.app.clone() else { return };
        let ports: BTreeSet<u16> = l.kept.iter().copied().chain([l.port]).collect();
        let mut ips: Vec<IpAddr> = l.networks.keys().copied().collect();
        if l.loopback {
            ips.push(Ipv4Addr::LOCALHOST.into());
        }
        let want: BTreeSet<SocketAddr> = ips
            .iter()
            .flat_map(|ip| ports.iter().map(|p| SocketAddr::new(*ip, *p)))
            .collect();
        l.loops.retain(|addr, task| {
            let keep = want.contains(addr);
            if !keep {
                task.abort();
                tracing::info!(%addr, "HTTP API no longer listening on {addr}");
            }
            keep
        });
        l.failed.retain(|a| want.contains(a));
        for addr in want {
            if l.loops.contains_key(&addr) {
                continue;
            }
            match bind_tcp(addr) {
                Ok(listener) => {
                    tracing::info!(%addr, "HTTP API listening on {addr} for app containers");
                    l.failed.remove(&addr);
                    let task =
                        tokio::spawn(accept_loop(listener, app.clone(), "an app address", LIMITS));
                    l.loops.insert(addr, task.abort_handle());
                }
                Err(e) => {
                    if l.failed.insert(addr) {
                        let hint = if e.kind() == io::ErrorKind::AddrInUse {
                            " (if api.tcp listens on all addresses at this port, containers reach the API through it)"
                        } else {
                            ""
                        };
                        tracing::warn!(%addr, error = %e, "cannot listen for app containers on {addr}: {e}; tried again when the networks change{hint}");
                    }
                }
            }
        }
    }
}

/// Binds at once (std sets SO_REUSEADDR, so a restart binds again at
/// once), for the accept loop on the runtime.
fn bind_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
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
pub(super) fn limit_error(path: &str, status: StatusCode, msg: &str) -> Response {
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

#[cfg(test)]
mod tests;
