//! One app against another through the device API: two apps, each on its
//! own bridge network with its own key, on a real dockerd and holdfastd.
//! An app's key is refused at another app's gateway, and one app (or the
//! operator) flooding the API leaves the other app's calls answered, with
//! no backlog of restarts running on after the flood.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use common::{free_port, ok, Env};

/// A fast refusal (429 past a share, 401 at another app's gateway) comes
/// within this, even on a loaded machine.
const FAST: Duration = Duration::from_secs(2);
/// Each of the other app's own calls is answered within this while the
/// flood goes on (a restart waits for the engine: about a second).
const ANSWERED: Duration = Duration::from_secs(20);
/// Parallel callers of the flood, as in the report it reproduces.
const FLOODERS: usize = 70;

/// An env with config.json (uuid, listenPort); returns the port.
fn device_env() -> (Env, u16) {
    let env = Env::with_docker();
    let port = free_port();
    let dir = env.dir.join("boot");
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({"uuid": "uuid-1", "deviceType": "generic-test", "listenPort": port});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    (env, port)
}

/// app1 and app2, one service `main` each on the app's default bridge
/// network, labelled for the API; both applied.
async fn two_apps(env: &mut Env) {
    let image = env.busybox_image();
    env.start_daemon().await;
    let mut svc = common::engine::service(&image);
    svc.as_object_mut().unwrap().remove("network_mode");
    svc["labels"] = json!({"io.balena.features.supervisor-api": "1"});
    let app = |svc: &Value| json!({"release": "r1", "services": {"main": svc}});
    let target = common::engine::target(json!({"app1": app(&svc), "app2": app(&svc)}));
    ok(&env.apply(&target));
    env.wait_app("app1", "applied").await;
    env.wait_app("app2", "applied").await;
}

fn gateway(env: &Env, network: &str) -> String {
    let f = "{{(index .IPAM.Config 0).Gateway}}";
    ok(&env.docker(&["network", "inspect", network, "-f", f]))
        .trim()
        .to_owned()
}

fn read_key(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn app_key(env: &Env, app: &str) -> String {
    read_key(env.state().join("api-keys").join(app))
}

fn started_at(env: &Env, container: &str) -> String {
    ok(&env.docker(&["inspect", "-f", "{{.State.StartedAt}}", container]))
        .trim()
        .to_owned()
}

/// wget from inside `container` to `http://host:port/path` with `key`:
/// the body on success, else wget's message (which has the status).
fn wget(env: &Env, container: &str, url: &str, key: &str, post: Option<&str>) -> (bool, String) {
    let post = post
        .map(|b| format!("--post-data '{b}' --header 'Content-Type: application/json' "))
        .unwrap_or_default();
    let out = env.exec(
        container,
        &format!("wget -q -O- --header 'Authorization: Bearer {key}' {post}'{url}'"),
    );
    let text = match out.status.success() {
        true => out.stdout,
        false => out.stderr,
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

const RESTART_MAIN: &str = r#"{"serviceName":"main"}"#;

#[tokio::test]
async fn an_apps_key_is_refused_at_another_apps_gateway_and_nothing_is_done() {
    let (mut env, port) = device_env();
    two_apps(&mut env).await;
    let (c1, c2) = (
        env.container_of("app1", "main"),
        env.container_of("app2", "main"),
    );
    let (k1, k2) = (app_key(&env, "app1"), app_key(&env, "app2"));
    let (gw1, gw2) = (gateway(&env, "app1_default"), gateway(&env, "app2_default"));
    let at = |gw: &str, path: &str| format!("http://{gw}:{port}{path}");
    let (s1, s2) = (started_at(&env, &c1), started_at(&env, &c2));

    // From app1's container, with app1's key, at app2's gateway: 401 for
    // its own app's routes, app2's, and the device-wide ones.
    for (path, body) in [
        ("/v2/applications/app1/restart-service", Some(RESTART_MAIN)),
        ("/v2/applications/app2/restart-service", Some(RESTART_MAIN)),
        ("/v1/reboot", Some("{}")),
        ("/v1/device", None),
    ] {
        let (ok, out) = wget(&env, &c1, &at(&gw2, path), &k1, body);
        assert!(!ok && out.contains("401"), "{path}: {out}");
    }
    // Nothing was restarted.
    assert_eq!(started_at(&env, &c1), s1);
    assert_eq!(started_at(&env, &c2), s2);

    // Each app's own key at its own gateway is answered.
    let (ok1, out) = wget(&env, &c1, &at(&gw1, "/v1/device"), &k1, None);
    assert!(ok1, "{out}");
    let (ok2, out) = wget(
        &env,
        &c1,
        &at(&gw2, "/v2/applications/app2/restart-service"),
        &k2,
        Some(RESTART_MAIN),
    );
    assert!(ok2 && out == "OK", "{out}");
    assert_ne!(started_at(&env, &c2), s2);
    // The device key, balena's global key, is taken at every gateway.
    let dk = read_key(env.state().join("api-key"));
    let (okd, out) = wget(&env, &c1, &at(&gw2, "/v1/device"), &dk, None);
    assert!(okd, "{out}");
    assert_eq!(started_at(&env, &c1), s1);
}

/// One HTTP/1.1 exchange on a fresh connection: status, Retry-After and
/// body; Err when the connection failed or closed without an answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> std::io::Result<(u16, Option<String>, String)> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{text:?}"))
    })?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    let retry = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after: ")
            .map(str::to_owned)
    });
    Ok((status, retry, body.to_owned()))
}

/// An exchange over TCP to `addr` from the host address `from`: the test
/// stands in for app containers, each client with an address of its own
/// as a container has.
async fn tcp(
    from: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> std::io::Result<(u16, Option<String>, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let s = socket.connect(addr).await?;
    exchange(s, method, path, key, body).await
}

/// What the flood's callers got: per status (0: no answer), how many and
/// the slowest.
#[derive(Default, Debug)]
struct Tally {
    by_status: std::collections::BTreeMap<u16, (usize, Duration)>,
    retry_after_missing: usize,
}

impl Tally {
    fn add(&mut self, status: u16, took: Duration, retry_after: bool) {
        let e = self.by_status.entry(status).or_default();
        e.0 += 1;
        e.1 = e.1.max(took);
        if status == 429 && !retry_after {
            self.retry_after_missing += 1;
        }
    }

    fn total(&self) -> usize {
        self.by_status.values().map(|e| e.0).sum()
    }

    fn count(&self, status: u16) -> usize {
        self.by_status.get(&status).map_or(0, |e| e.0)
    }

    fn slowest(&self, status: u16) -> Duration {
        self.by_status.get(&status).map_or(Duration::ZERO, |e| e.1)
    }
}

/// `FLOODERS` callers, each calling `call` again as soon as it has an
/// answer (after a refusal, 50 ms later, as a client that retries), until
/// `stop`.
fn flood<F, Fut>(
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    call: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<(u16, Option<String>, String)>> + Send,
{
    (0..FLOODERS)
        .map(|_| {
            let (stop, tally, call) = (stop.clone(), tally.clone(), call.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = call().await;
                    let took = t.elapsed();
                    let (status, retry) = match &r {
                        Ok((s, retry, _)) => (*s, retry.is_some()),
                        Err(_) => (0, false),
                    };
                    tally.lock().unwrap().add(status, took, retry);
                    if status != 200 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// Starts of `container` the engine reports from `since` for `window`
/// (the `docker events` call returns when the window has passed).
fn starts(env: &Env, container: &str, since: std::time::SystemTime, window: Duration) -> usize {
    let t = |s: std::time::SystemTime| {
        let d = s.duration_since(std::time::UNIX_EPOCH).unwrap();
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    };
    let out = ok(&env.docker(&[
        "events",
        "--since",
        &t(since),
        "--until",
        &t(since + window),
        "--filter",
        &format!("container={container}"),
        "--filter",
        "event=start",
        "--format",
        "{{.Time}}",
    ]));
    out.lines().count()
}

/// holdfastd's peak resident memory (VmHWM), for the record.
fn peak_memory(env: &Env) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", env.daemon_pid()));
    status
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// The other app's own calls, one after the other as an app makes them:
/// restarts of its service and reads of its state, alternately, at its
/// gateway `addr` (from there: a client address no flood uses).
async fn own_calls(addr: SocketAddr, app: &str, key: &str) -> Vec<(String, u16, Duration)> {
    let mut done = Vec::new();
    for i in 0..16 {
        let (method, path, body) = match i % 2 {
            0 => (
                "POST",
                format!("/v2/applications/{app}/restart-service"),
                RESTART_MAIN,
            ),
            _ => ("GET", "/v2/applications/state".to_owned(), ""),
        };
        let t = Instant::now();
        let r =
            tokio::time::timeout(ANSWERED, tcp(addr.ip(), addr, method, &path, key, body)).await;
        let status = match r {
            Ok(Ok((s, _, _))) => s,
            _ => 0,
        };
        done.push((format!("{method} {path}"), status, t.elapsed()));
    }
    done
}

#[tokio::test]
async fn one_apps_flood_leaves_the_others_calls_answered_and_no_backlog() {
    let (mut env, port) = device_env();
    two_apps(&mut env).await;
    let c1 = env.container_of("app1", "main");
    let (k1, k2) = (app_key(&env, "app1"), app_key(&env, "app2"));
    let gw1: SocketAddr = format!("{}:{port}", gateway(&env, "app1_default"))
        .parse()
        .unwrap();
    let gw2: SocketAddr = format!("{}:{port}", gateway(&env, "app2_default"))
        .parse()
        .unwrap();

    // app1's key floods restarts of its own service at its own gateway,
    // and at app2's gateway (where the reproduction starved app2), from
    // app1's side (its gateway's address, as a client of its own).
    let stop = Arc::new(AtomicBool::new(false));
    let (own, other) = (
        Arc::<Mutex<Tally>>::default(),
        Arc::<Mutex<Tally>>::default(),
    );
    let restart = |addr: SocketAddr, key: String| {
        move || {
            let key = key.clone();
            async move {
                tcp(
                    gw1.ip(),
                    addr,
                    "POST",
                    "/v2/applications/app1/restart-service",
                    &key,
                    RESTART_MAIN,
                )
                .await
            }
        }
    };
    let flood_started = std::time::SystemTime::now();
    let mut workers = flood(stop.clone(), own.clone(), restart(gw1, k1.clone()));
    workers.extend(flood(stop.clone(), other.clone(), restart(gw2, k1.clone())));
    // Under way: answers (or closed connections) at both gateways.
    common::wait_for(Duration::from_secs(30), || {
        let (own, other) = (own.clone(), other.clone());
        async move { own.lock().unwrap().total() > 0 && other.lock().unwrap().total() > 0 }
    })
    .await
    .unwrap_or_else(|_| panic!("the flood has no answer: {:?}", own.lock().unwrap()));

    let t = Instant::now();
    let calls = own_calls(gw2, "app2", &k2).await;
    let app2_took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.abort();
        let _ = w.await;
    }
    // Every flood connection is closed now.
    let flood_stopped = std::time::SystemTime::now();
    let own = std::mem::take(&mut *own.lock().unwrap());
    let other = std::mem::take(&mut *other.lock().unwrap());
    let during = starts(
        &env,
        &c1,
        flood_started,
        flood_stopped.duration_since(flood_started).unwrap(),
    );
    // What still runs after the flood: 10 s is many restarts' time.
    let after = starts(&env, &c1, flood_stopped, Duration::from_secs(10));
    eprintln!("holdfastd peak memory: {}", peak_memory(&env));
    eprintln!(
        "app2's 16 calls took {app2_took:?}: {calls:?}\n\
         app1 at its own gateway: {own:?}\napp1 at app2's gateway: {other:?}\n\
         app1 restarted {during} times during the flood, {after} times in the 10 s after"
    );

    // app2's own calls: all answered, each within the bound.
    for (what, status, took) in &calls {
        assert_eq!(*status, 200, "{what}: {calls:?}");
        assert!(*took < ANSWERED, "{what} took {took:?}");
    }
    // app1's excess at its own gateway: 429 with Retry-After, fast.
    assert!(own.count(429) > 0, "{own:?}");
    assert_eq!(own.retry_after_missing, 0, "{own:?}");
    assert!(own.slowest(429) < FAST, "{own:?}");
    // At app2's gateway app1's key is refused fast and does nothing.
    assert!(other.count(401) > 0, "{other:?}");
    assert!(other.slowest(401) < FAST, "{other:?}");
    assert_eq!(other.count(200), 0, "{other:?}");
    // No backlog: at most the one restart under way and the two that
    // waited for it.
    assert!(
        after <= 3,
        "{after} restarts of app1 ran on after the flood stopped"
    );
}

#[tokio::test]
async fn the_device_keys_flood_leaves_an_apps_calls_answered() {
    let (mut env, port) = device_env();
    two_apps(&mut env).await;
    let k2 = app_key(&env, "app2");
    let dk = read_key(env.state().join("api-key"));
    let gw2: SocketAddr = format!("{}:{port}", gateway(&env, "app2_default"))
        .parse()
        .unwrap();
    let sock = env.dir.join("api.sock");

    // The operator's client floods the unix socket: restarts of app2's
    // service (the app that calls meanwhile) and reads.
    let stop = Arc::new(AtomicBool::new(false));
    let (actions, reads) = (
        Arc::<Mutex<Tally>>::default(),
        Arc::<Mutex<Tally>>::default(),
    );
    let unix = |method: &'static str, path: &'static str, body: &'static str| {
        let (sock, dk) = (sock.clone(), dk.clone());
        move || {
            let (sock, dk) = (sock.clone(), dk.clone());
            async move {
                let s = tokio::net::UnixStream::connect(&sock).await?;
                exchange(s, method, path, &dk, body).await
            }
        }
    };
    let mut workers = flood(
        stop.clone(),
        actions.clone(),
        unix(
            "POST",
            "/v2/applications/app2/restart-service",
            RESTART_MAIN,
        ),
    );
    workers.extend(flood(
        stop.clone(),
        reads.clone(),
        unix("GET", "/v2/applications/state", ""),
    ));
    common::wait_for(Duration::from_secs(30), || {
        let (actions, reads) = (actions.clone(), reads.clone());
        async move { actions.lock().unwrap().total() > 0 && reads.lock().unwrap().total() > 0 }
    })
    .await
    .unwrap_or_else(|_| panic!("the flood has no answer: {:?}", actions.lock().unwrap()));

    let calls = own_calls(gw2, "app2", &k2).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.abort();
        let _ = w.await;
    }
    let actions = std::mem::take(&mut *actions.lock().unwrap());
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    eprintln!("holdfastd peak memory: {}", peak_memory(&env));
    eprintln!(
        "app2's calls: {calls:?}\ndevice key, restarts: {actions:?}\ndevice key, reads: {reads:?}"
    );
    for (what, status, took) in &calls {
        assert_eq!(*status, 200, "{what}: {calls:?}");
        assert!(*took < ANSWERED, "{what} took {took:?}");
    }
    assert!(actions.count(429) > 0, "{actions:?}");
    assert_eq!(actions.retry_after_missing, 0, "{actions:?}");
    assert!(actions.slowest(429) < FAST, "{actions:?}");
    assert!(reads.count(200) > 0, "{reads:?}");
}
