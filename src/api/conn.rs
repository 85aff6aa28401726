//! Connections: the accept loop and each connection's life. At most
//! `MAX_CONNECTIONS` per listener, half of them per client address (who
//! makes room for a newcomer: `room`), header and idle timeouts, a close
//! grace; accept errors such as EMFILE back off instead of spinning.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

use super::auth::Arrived;

mod room;

/// Connections open at once, per listener, half of them per client address.
/// At the cap a new connection takes the place of an idle one (no request
/// in flight) of the client holding most (`room`); when every one is busy
/// with a request, the new one is closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A request head must be complete this long after the server starts
/// waiting for it: after accept, and after each answer on a kept-alive
/// connection (so an idle keep-alive connection is closed after this too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection with no request started or answered for this long is
/// closed, gracefully first. The backstop for what the header timeout does
/// not cover, such as a client that does not read its answers.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head, so each connection's read buffer stays small
/// (a bigger head is answered 431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Pause after a failed accept (EMFILE and the like), so that a condition
/// that lasts does not turn the loop into a busy one.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Crowding at the cap is logged at most this often: clients must not be
/// able to fill the journal by opening and closing connections.
const CROWD_WARN_EVERY: Duration = Duration::from_secs(60);

/// After a graceful close was asked for, how long a connection with no
/// request in flight may take to finish before it is dropped.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The per-connection limits, as one value so tests can shorten them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub connections: usize,
    pub header_read: Duration,
    pub idle: Duration,
    pub close_grace: Duration,
}

pub(super) const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    header_read: HEADER_READ_TIMEOUT,
    idle: IDLE_TIMEOUT,
    close_grace: CLOSE_GRACE,
};

/// What the accept loop needs of a listener.
pub(super) trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
    /// The host address a connection arrived at, when it has one.
    fn arrived(_io: &Self::Io) -> Option<IpAddr> {
        None
    }
    /// The client's address, when it has one.
    fn peer(_io: &Self::Io) -> Option<IpAddr> {
        None
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
    fn arrived(io: &Self::Io) -> Option<IpAddr> {
        // An IPv4 client of a socket bound to [::] arrives at ::ffff:a.b.c.d.
        io.local_addr().ok().map(|a| a.ip().to_canonical())
    }
    fn peer(io: &Self::Io) -> Option<IpAddr> {
        io.peer_addr().ok().map(|a| a.ip().to_canonical())
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
pub(super) struct Conn {
    pub activity: Mutex<Activity>,
    /// Told when the accept loop needs its place.
    pub evict: Notify,
    /// The client's address (TCP only).
    pub peer: Option<IpAddr>,
}

pub(super) struct Activity {
    pub in_flight: usize,
    /// The last request start or answer (or the accept).
    pub last: Instant,
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

fn admit(registry: &Registry, cap: usize, peer: Option<IpAddr>) -> Admission {
    let mut open = registry.lock().unwrap_or_else(|e| e.into_inner());
    let seen: Vec<room::Open> = open
        .conns
        .iter()
        .map(|(id, c)| {
            let (in_flight, last) = c.activity();
            room::Open {
                id: *id,
                peer: c.peer,
                busy: in_flight > 0,
                last,
            }
        })
        .collect();
    let evicted = match room::pick(&seen, cap, peer) {
        room::Pick::Full => return Admission::Full,
        room::Pick::Room => false,
        room::Pick::Evict(id) => {
            if let Some(c) = open.conns.remove(&id) {
                c.evict.notify_one();
            }
            true
        }
    };
    let id = open.next_id;
    open.next_id += 1;
    let conn = Arc::new(Conn {
        activity: Mutex::new(Activity {
            in_flight: 0,
            last: Instant::now(),
        }),
        evict: Notify::new(),
        peer,
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

/// Accepts forever. Failures are logged once per burst, with a count when
/// it is over; crowding at most once a minute, with a count.
pub(super) async fn accept_loop<L: Listener>(
    listener: L,
    app: Router,
    on: &'static str,
    limits: Limits,
) {
    let registry = Registry::default();
    let mut failed = 0u64;
    let mut crowded = 0u64;
    let mut crowd_warned: Option<Instant> = None;
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
            crowded += 1;
            // At most once a minute, whatever clients do.
            if crowd_warned.is_none_or(|t: Instant| t.elapsed() >= CROWD_WARN_EVERY) {
                let earlier = match crowd_warned {
                    Some(_) => format!("; {} were closed since the last warning", crowded - 1),
                    None => String::new(),
                };
                tracing::warn!("HTTP API on {on}: {} connections open, or one client has half of them; each new one takes the place of an idle one of the client holding most, or is closed when all are busy (warned at most once a minute{earlier})",
                    limits.connections);
                crowd_warned = Some(Instant::now());
                crowded = 0;
            }
        };
        let (slot, conn) = match admit(&registry, limits.connections, L::peer(&io)) {
            Admission::Room(slot, conn) => (slot, conn),
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
        let arrived = L::arrived(&io);
        tokio::spawn(async move {
            let _slot = slot;
            run_connection(io, arrived, app, conn, limits).await;
        });
    }
}

/// Serves one connection until the client or a limit ends it. Each
/// request carries where it `arrived` (`auth::Arrived`).
pub(super) async fn run_connection<I>(
    io: I,
    arrived: Option<IpAddr>,
    app: Router,
    conn: Arc<Conn>,
    limits: Limits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let conn = conn.clone();
        tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            if let Some(ip) = arrived {
                req.extensions_mut().insert(Arrived(ip));
            }
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
