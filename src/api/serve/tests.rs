use super::*;
use crate::api::conn::{
    accept_loop, run_connection, Activity, Conn, Limits, Listener, MAX_HEAD_BYTES,
};

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Each address an app network's, of app `app1`.
fn nets(ips: &[IpAddr]) -> BTreeMap<IpAddr, BTreeSet<AppName>> {
    let app = AppName::new("app1").unwrap();
    ips.iter().map(|ip| (*ip, [app.clone()].into())).collect()
}

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
        peer: None,
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
        run_connection(server, None, app, conn, limits),
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

#[tokio::test]
async fn app_listeners_follow_the_networks_and_the_port() {
    use std::net::{IpAddr, Ipv4Addr};
    let api = Router::new().route("/ping", get(|| async { "OK" }));
    let listeners = AppListeners {
        inner: Arc::new(Mutex::new(Listening {
            app: Some(api),
            port: 0,
            kept: Default::default(),
            loopback: false,
            networks: Default::default(),
            gateways: None,
            loops: Default::default(),
            failed: Default::default(),
        })),
        listing: Arc::default(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // 127.0.0.0/8 is all local: two "gateways".
    let a: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
    let b: IpAddr = Ipv4Addr::new(127, 0, 0, 3).into();
    listeners.configure(port, false);
    assert!(listeners.bound().is_empty());
    assert!(
        !listeners.listening_on(a),
        "a container started now would not reach it"
    );
    listeners.set_networks(nets(&[a, b]));
    assert!(listeners.listening_on(a) && listeners.listening_on(b));
    let bound = listeners.bound();
    assert_eq!(bound, [SocketAddr::new(a, port), SocketAddr::new(b, port)]);
    let ping = |addr: SocketAddr| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<String, std::io::Error>(out)
    };
    assert!(ping(bound[0]).await.unwrap().ends_with("OK"));
    // Not on loopback itself until a host-networked service asks.
    assert!(ping(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port))
        .await
        .is_err());
    listeners.configure(port, true);
    assert!(ping(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port))
        .await
        .unwrap()
        .ends_with("OK"));
    // A network gone: its listener closes.
    listeners.set_networks(nets(&[b]));
    tokio::task::yield_now().await;
    assert!(ping(SocketAddr::new(a, port)).await.is_err());
    assert!(ping(SocketAddr::new(b, port))
        .await
        .unwrap()
        .ends_with("OK"));
    // Dropping the last clone closes the rest.
    drop(listeners);
    tokio::task::yield_now().await;
    assert!(ping(SocketAddr::new(b, port)).await.is_err());
}

#[tokio::test]
async fn an_older_listing_never_overwrites_a_newer_one() {
    let listeners = AppListeners::new(None);
    let other = listeners.clone();
    let old = nets(&["10.0.0.1".parse().unwrap()]);
    let new = nets(&["10.0.0.2".parse().unwrap()]);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    // A slow listing (an old executor) starts first ...
    let slow = {
        let old = old.clone();
        tokio::spawn(async move {
            listeners
                .list_networks(async {
                    let _ = started_tx.send(());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, ()>(old)
                })
                .await
        })
    };
    started_rx.await.unwrap();
    // ... a quick one (a new executor) starts later and waits for it.
    other
        .list_networks(async { Ok::<_, ()>(new.clone()) })
        .await
        .unwrap();
    slow.await.unwrap().unwrap();
    assert_eq!(other.networks(), new);
}

#[test]
fn without_a_device_key_there_is_nothing_to_wait_for() {
    let listeners = AppListeners::new(None);
    assert!(listeners.listening_on(std::net::Ipv4Addr::new(10, 0, 0, 1).into()));
}

#[tokio::test]
async fn a_kept_port_is_listened_on_beside_the_one_in_force() {
    use std::net::Ipv4Addr;
    let api = Router::new().route("/ping", get(|| async { "OK" }));
    let listeners = AppListeners {
        inner: Arc::new(Mutex::new(Listening {
            app: Some(api),
            port: 0,
            kept: Default::default(),
            loopback: false,
            networks: Default::default(),
            gateways: None,
            loops: Default::default(),
            failed: Default::default(),
        })),
        listing: Arc::default(),
    };
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let old = free();
    let new = std::iter::repeat_with(free).find(|p| *p != old).unwrap();
    let a: IpAddr = Ipv4Addr::new(127, 0, 0, 4).into();
    listeners.configure(old, false);
    listeners.set_networks(nets(&[a]));
    listeners.keep_ports([old].into());
    listeners.configure(new, false);
    let mut both = [SocketAddr::new(a, old), SocketAddr::new(a, new)];
    both.sort();
    let mut bound = listeners.bound();
    bound.sort();
    assert_eq!(bound, both);
    listeners.keep_ports(Default::default());
    assert_eq!(listeners.bound(), [SocketAddr::new(a, new)]);
}
