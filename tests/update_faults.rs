//! Container updates under faults, against a real dockerd: retries under
//! lock churn, an engine that goes away at the wrong moment, targets the
//! engine would refuse, containers that cannot start, removed apps, and one
//! app's slow pull beside another app's apply.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engine::{release, service, target};
use common::{ok, wait_for, Env};
use serde_json::{json, Value};

const RETRY_MIN: Duration = holdfast::update::machine::RETRY_MIN;

/// `holdfast apply` of raw text (for documents serde_json cannot build).
fn apply_text(env: &Env, text: &str) -> Output {
    let path = env.dir.join("apply-raw.json");
    std::fs::write(&path, text).unwrap();
    env.cli(&["apply", path.to_str().unwrap()])
}

/// Stops dockerd and waits until it is gone.
fn kill_docker(env: &Env) {
    let pid = std::fs::read_to_string(env.dir.join("docker/docker.pid")).unwrap();
    let pid = pid.trim();
    ok(&env.sh(&format!(
        "kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"
    )));
}

/// A background shell loop, killed when dropped.
struct Background(Child);

impl Background {
    fn sh(env: &Env, script: &str) -> Background {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("L", env.locks())
            .spawn()
            .unwrap();
        Background(child)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Another app's lock created and removed every 50 ms, until dropped.
fn churn(env: &Env, service: &str) -> Background {
    env.service_dir(service);
    Background::sh(
        env,
        &format!("while :; do : > $L/{service}/updates.lock; sleep 0.05; rm -f $L/{service}/updates.lock; sleep 0.05; done"),
    )
}

/// Polls the Apps property until `cond` holds.
async fn wait_until(what: &str, env: &Env, timeout: Duration, cond: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let apps = env.apps().await;
        if cond(&apps) {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "{what}: not within {timeout:?}; apps {apps}\nlog:\n{}",
                env.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether holdfast left an own lock of `app` behind: a lock file in one of
/// its service directories, or an entry in the own-lock record.
fn own_leftovers(env: &Env, app: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(env.locks().join(app)).unwrap() {
        let dir = dir.unwrap().path();
        for f in ["updates.lock", "resin-updates.lock"] {
            if dir.join(f).exists() {
                found.push(dir.join(f).display().to_string());
            }
        }
    }
    let record = std::fs::read_to_string(env.state().join("own-locks.json")).unwrap_or_default();
    if record.contains(&format!("\"{app}/")) || record.contains(&format!("\"{app}\"")) {
        found.push(format!("own-locks.json: {record}"));
    }
    found
}

// Item 4: the retry deadline of a failed app must not be pushed back by lock
// events of other apps (the old loop re-created its sleep on every pass).
#[tokio::test]
async fn a_failed_app_is_retried_on_schedule_under_lock_churn() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    // Created fine, refused at start: the command is not in the image.
    let mut bad = service(&image);
    bad["command"] = json!(["/no/such/command"]);
    ok(&env.apply(&target(
        json!({"bad": {"release": "r1", "services": {"main": bad}}}),
    )));
    let st = env
        .wait_app_for("bad", "failed", Duration::from_secs(30))
        .await;
    assert_eq!(st["attempts"], 1, "{st}");
    assert!(st["retry_at"].is_string(), "{st}");
    assert!(
        st["error"].as_str().unwrap().contains("/no/such/command"),
        "{st}"
    );
    let first = Instant::now();

    let _churn = churn(&env, "other/main");
    wait_for(Duration::from_secs(10), || async {
        env.lock_infos()
            .await
            .iter()
            .any(|l| l.service == "other/main")
    })
    .await
    .expect("the churning lock is never seen");

    // The second attempt comes RETRY_MIN after the first, churn or not.
    wait_until(
        "second attempt under churn",
        &env,
        RETRY_MIN + Duration::from_secs(4),
        |a| a["bad"]["attempts"].as_u64() >= Some(2),
    )
    .await;
    assert!(first.elapsed() >= RETRY_MIN - Duration::from_secs(1));
    assert_eq!(env.apps().await["bad"]["state"], "failed");
}

// Item 4, the other side: an update that waits on holdfast's own locks
// (`holdfast take`) waits for them to go, not for any lock event: other
// apps' churn must not run a pass of it on every change.
#[tokio::test]
async fn an_update_waiting_on_holdfasts_own_locks_does_not_spin_under_churn() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    ok(&env.cli(&["take", "app1"]));
    env.wait_locks(&["app1/main"]).await;
    ok(&env.apply(&release(&image, 2)));
    let st = env.wait_release("app1", "waiting", "r2").await;
    assert_eq!(st["blocked_by"], json!(["holdfast:operator"]), "{st}");

    let churn = churn(&env, "other/main");
    // Twenty lock changes of the other app.
    wait_for(Duration::from_secs(20), || async {
        env.log()
            .matches("update lock released: other/main")
            .count()
            >= 20
    })
    .await
    .expect("the churn is not seen");
    drop(churn);
    let passes = env.log().matches("applying app app1").count();
    assert!(
        passes <= 2,
        "{passes} passes of app1 while it waited:\n{}",
        env.log()
    );

    ok(&env.cli(&["release", "app1"]));
    wait_applied(&env, "app1", "r2", Duration::from_secs(10)).await;
}

// Item 11: the locks clear while the engine is down; the pass that follows
// fails to reach the engine and must be retried on a timer (the old code
// waited for the next lock change, i.e. forever).
#[tokio::test]
async fn locks_cleared_while_the_engine_is_down_apply_once_it_is_back() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    ok(&env.apply(&release(&image, 2)));
    env.wait_release("app1", "waiting", "r2").await;

    kill_docker(&env);
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    env.wait_locks(&[]).await;
    // The pass the unlock started could not reach the engine.
    wait_until(
        "app1 waits on the engine",
        &env,
        Duration::from_secs(10),
        |a| a["app1"]["blocked_by"] == json!(["engine"]),
    )
    .await;
    env.restart_docker();
    // No `holdfast update`: the engine retry alone brings it to r2.
    wait_applied(&env, "app1", "r2", Duration::from_secs(30)).await;
    assert_ne!(env.container_of("app1", "main"), c1);
    assert_eq!(env.containers("app1").len(), 1);
}

/// Waits (at most `timeout`) until `app` is applied at `release`.
async fn wait_applied(env: &Env, app: &str, release: &str, timeout: Duration) {
    wait_until(&format!("{app} applied at {release}"), env, timeout, |a| {
        a[app]["state"] == "applied" && a[app]["release"] == release
    })
    .await
}

// Item 12: what the engine would refuse is refused by `holdfast apply`
// (exit 65) before the running release is touched; so are documents the
// parser used to take (trailing input, a second document, duplicate keys).
#[tokio::test]
async fn targets_the_engine_would_refuse_are_rejected_before_anything_is_touched() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let good = release(&image, 1);
    ok(&env.apply(&good));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");

    let bad_fields = [
        ("volumes", json!(["relative/path:/data"])),
        ("volumes", json!(["../../etc:/data"])),
        ("devices", json!(["/etc/shadow"])),
        ("stop_signal", json!("SIGFOO")),
        // container:<name> is taken now; a service that is not there is not.
        ("network_mode", json!("service:nope")),
        ("user", json!("0:0;rm -rf /")),
        // Refused by runc or the kernel at start, after the stop.
        ("sysctls", json!({"vm.swappiness": "1"})),
        ("cpu_shares", json!(1)),
        ("hostname", json!("a".repeat(70))),
        (
            "logging",
            json!({"driver": "json-file", "options": {"max-size": "lots"}}),
        ),
    ];
    let good_text = serde_json::to_string(&good).unwrap();
    let mut r3 = good.clone();
    r3["apps"]["app1"]["release"] = json!("r3");
    let r3_app = serde_json::to_string(&r3["apps"]["app1"]).unwrap();
    let docs: Vec<(String, String)> = bad_fields
        .iter()
        .map(|(k, v)| {
            let mut t = good.clone();
            t["apps"]["app1"]["release"] = json!("r2");
            t["apps"]["app1"]["services"]["main"][k] = v.clone();
            (format!("{k}: {v}"), serde_json::to_string(&t).unwrap())
        })
        .chain([
            ("trailing garbage".into(), format!("{good_text} x")),
            ("a second document".into(), format!("{good_text}\n{good_text}")),
            (
                "a duplicate app".into(),
                format!(
                    r#"{{"version": 1, "apps": {{"app1": {r3_app}, "app1": {{"release": "r3", "services": {{}}}}}}}}"#
                ),
            ),
        ])
        .collect();
    for (what, text) in &docs {
        let out = apply_text(&env, text);
        assert_eq!(
            out.status.code(),
            Some(65),
            "{what} accepted: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("target rejected"),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing was touched: the r1 container runs on, alone, and the app
    // never left r1.
    let apps = env.apps().await;
    assert_eq!(apps["app1"]["state"], "applied", "{apps}");
    assert_eq!(apps["app1"]["release"], "r1", "{apps}");
    assert_eq!(env.container_of("app1", "main"), c1);
    assert_eq!(
        env.containers("app1").len(),
        1,
        "{:?}",
        env.containers("app1")
    );
    assert!(!env.log().contains("stopping app1/main"), "{}", env.log());
}

// Item 12 (the start): a target the parser accepts but whose new container
// cannot start costs nothing that ran. Two services, so one new container
// (main) starts fine before the other (worker) fails: the old ones run again,
// the app is `failed`; once worker can start, a retry brings both new
// containers up (the one the undo stopped included) and removes the old.
#[tokio::test]
async fn a_new_container_that_cannot_start_costs_nothing_that_ran() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let app = |n: u32, worker: Value| {
        let mut main = service(&image);
        main["environment"] = json!({"R": n.to_string()});
        let mut worker = worker;
        worker["depends_on"] = json!(["main"]);
        target(json!({"app1": {"release": format!("r{n}"),
            "services": {"main": main, "worker": worker}}}))
    };
    ok(&env.apply(&app(1, service(&image))));
    env.wait_release("app1", "applied", "r1").await;
    let (main1, worker1) = (
        env.container_of("app1", "main"),
        env.container_of("app1", "worker"),
    );

    // worker's r2 runs a program from its lock directory, not there yet.
    let mut worker2 = service(&image);
    worker2["command"] = json!(["/tmp/balena/go"]);
    ok(&env.apply(&app(2, worker2)));
    let st = env
        .wait_app_for("app1", "failed", Duration::from_secs(30))
        .await;
    assert_eq!(st["release"], "r2", "{st}");
    assert!(
        st["error"].as_str().unwrap().contains("/tmp/balena/go"),
        "{st}"
    );
    assert_eq!(env.container_of("app1", "main"), main1);
    assert_eq!(env.container_of("app1", "worker"), worker1);

    // Now it can start: not retried on a timer (each retry stopped the old
    // ones again, issue 24), a forced update completes r2.
    let go = env.locks().join("app1/worker/go");
    std::fs::write(
        &go,
        "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.2; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(&env.cli(&["update", "--force"]));
    wait_applied(&env, "app1", "r2", Duration::from_secs(30)).await;
    let (main2, worker2) = (
        env.container_of("app1", "main"),
        env.container_of("app1", "worker"),
    );
    assert_ne!(main2, main1);
    assert_ne!(worker2, worker1);
    assert_eq!(
        env.containers("app1").len(),
        2,
        "old containers left: {:?}",
        env.containers("app1")
    );
}

/// What the engine proxy does to the next stop request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StopFault {
    /// Relay everything.
    None,
    /// Answer the next stop with a 500 instead of relaying it.
    Error,
    /// Cut the connection at the next stop and refuse every connection
    /// after it (the engine went away) until set back to `None`.
    GoAway,
    /// Gone: connections are closed at once.
    Down,
}

/// A unix-socket relay in front of dockerd's socket that can make one stop
/// request fail. Everything else reaches the real engine unchanged.
#[derive(Clone)]
struct EngineProxy {
    path: PathBuf,
    fault: Arc<Mutex<StopFault>>,
}

impl EngineProxy {
    fn start(upstream: PathBuf, path: PathBuf) -> EngineProxy {
        let listener = UnixListener::bind(&path).unwrap();
        let fault = Arc::new(Mutex::new(StopFault::None));
        let f = fault.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if *f.lock().unwrap() == StopFault::Down {
                    continue;
                }
                let (f, upstream) = (f.clone(), upstream.clone());
                std::thread::spawn(move || relay_engine(client, &upstream, &f));
            }
        });
        EngineProxy { path, fault }
    }

    fn set(&self, f: StopFault) {
        *self.fault.lock().unwrap() = f;
    }

    fn get(&self) -> StopFault {
        *self.fault.lock().unwrap()
    }
}

fn relay_engine(mut client: UnixStream, upstream: &Path, fault: &Mutex<StopFault>) {
    let Ok(mut server) = UnixStream::connect(upstream) else {
        return;
    };
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let line = chunk.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let is_stop = line.starts_with("POST ") && line.contains("/stop");
        let mut f = fault.lock().unwrap();
        match (*f, is_stop) {
            (StopFault::Down, _) => break,
            (StopFault::Error, true) => {
                *f = StopFault::None;
                let body = r#"{"message":"injected: cannot stop container"}"#;
                let resp = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(resp.as_bytes());
                continue;
            }
            (StopFault::GoAway, true) => {
                *f = StopFault::Down;
                break;
            }
            _ => {}
        }
        drop(f);
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// Points holdfastd's engine.socket at `socket` (before it starts).
fn use_engine_socket(env: &Env, socket: &Path) {
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("engine.socket") {
                format!("engine.socket = \"{}\"\n", socket.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(env.config_path(), text).unwrap();
}

async fn wait_stop_fault_used(env: &Env, proxy: &EngineProxy, armed: StopFault) {
    wait_for(Duration::from_secs(30), || async { proxy.get() != armed })
        .await
        .unwrap_or_else(|_| panic!("no stop reached the engine:\n{}", env.log()));
}

// Item 10 (engine part): a stop that fails mid-update, because the engine
// refuses it or goes away, must not leave holdfast holding the app's
// locks: the retry takes them again (no "already holds the locks"), the app
// converges, and no own lock is left behind.
#[tokio::test]
async fn a_failed_stop_does_not_strand_the_app() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    let proxy = EngineProxy::start(
        env.dir.join("docker/docker.sock"),
        env.dir.join("engine-proxy.sock"),
    );
    use_engine_socket(&env, &proxy.path);
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");

    // The engine refuses the stop: failed, retried after RETRY_MIN.
    proxy.set(StopFault::Error);
    ok(&env.apply(&release(&image, 2)));
    wait_stop_fault_used(&env, &proxy, StopFault::Error).await;
    let st = env
        .wait_app_for("app1", "failed", Duration::from_secs(10))
        .await;
    assert!(st["error"].as_str().unwrap().contains("injected"), "{st}");
    assert_eq!(env.container_of("app1", "main"), c1, "the old one runs on");
    wait_applied(&env, "app1", "r2", RETRY_MIN + Duration::from_secs(20)).await;
    let c2 = env.container_of("app1", "main");
    assert_ne!(c2, c1);

    // The engine goes away at the stop and comes back a second later.
    proxy.set(StopFault::GoAway);
    ok(&env.apply(&release(&image, 3)));
    wait_stop_fault_used(&env, &proxy, StopFault::GoAway).await;
    wait_until(
        "app1 waits on the engine",
        &env,
        Duration::from_secs(10),
        |a| a["app1"]["blocked_by"] == json!(["engine"]),
    )
    .await;
    proxy.set(StopFault::None);
    wait_applied(&env, "app1", "r3", Duration::from_secs(30)).await;
    assert_ne!(env.container_of("app1", "main"), c2);
    assert_eq!(env.containers("app1").len(), 1);

    let log = env.log();
    assert!(!log.contains("already holds the locks"), "{log}");
    env.wait_locks(&[]).await;
    assert_eq!(own_leftovers(&env, "app1"), Vec::<String>::new());
    // The app can lock again.
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
}

// Item 14: an app removed from the target leaves the status once its
// containers are gone (it used to stay `applied` with release "").
#[tokio::test]
async fn a_removed_app_leaves_the_status() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let one = |rel: &str| json!({"release": rel, "services": {"main": service(&image)}});
    ok(&env.apply(&target(json!({"app1": one("r1"), "app2": one("r1")}))));
    env.wait_app("app1", "applied").await;
    env.wait_app("app2", "applied").await;

    ok(&env.apply(&target(json!({"app2": one("r1")}))));
    wait_for(Duration::from_secs(30), || async {
        env.containers("app1").is_empty()
    })
    .await
    .expect("app1's containers stay");
    let status =
        || -> Value { serde_json::from_str(&ok(&env.cli(&["status", "--json"]))).unwrap() };
    wait_for(Duration::from_secs(10), || async {
        status()["apps"].get("app1").is_none()
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "app1 still listed: {}\nlog:\n{}",
            status()["apps"],
            env.log()
        )
    });
    assert_eq!(status()["apps"]["app2"]["state"], "applied");
    let saved = || std::fs::read_to_string(env.state().join("apps.json")).unwrap();
    wait_for(Duration::from_secs(5), || async {
        !saved().contains("app1")
    })
    .await
    .unwrap_or_else(|_| panic!("app1 still saved: {}", saved()));
}

/// A TCP relay to `upstream` that hands the client at most `rate` bytes a
/// second: a slow link to the registry.
fn throttled_proxy(upstream: String, rate: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let Ok(mut server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut up_r, mut up_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut up_w);
                    let _ = up_w.shutdown(std::net::Shutdown::Write);
                });
                let mut buf = [0u8; 4096];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    format!("127.0.0.1:{port}")
}

// The per-app tasks: app B's apply does not wait for app A's long pull.
#[tokio::test]
async fn a_long_pull_of_one_app_does_not_delay_another_apps_apply() {
    let mut env = Env::with_docker();
    let reg = env.registry();
    let image = env.busybox_image();
    // A 4 MiB image of random bytes behind a 320 KiB/s link: a ~13 s pull.
    let big = env.dir.join("big.bin");
    let mut data = vec![0u8; 4 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(&big, &data).unwrap();
    let tmp = format!("hf-big-{}", std::process::id());
    ok(&env.docker(&["create", "--name", &tmp, &image, "true"]));
    ok(&env.docker(&["cp", big.to_str().unwrap(), &format!("{tmp}:/big.bin")]));
    let pushed = format!("{reg}/big:1");
    ok(&env.docker(&["commit", &tmp, &pushed]));
    ok(&env.docker(&["rm", &tmp]));
    ok(&env.docker(&["push", "-q", &pushed]));
    ok(&env.docker(&["rmi", &pushed]));
    let slow = format!("{}/big:1", throttled_proxy(reg.clone(), 320 << 10));
    env.start_daemon().await;

    let b = |n: u32| {
        let mut s = service(&image);
        s["environment"] = json!({"R": n.to_string()});
        json!({"release": format!("r{n}"), "services": {"main": s}})
    };
    ok(&env.apply(&target(json!({"b": b(1)}))));
    env.wait_release("b", "applied", "r1").await;
    let b1 = env.container_of("b", "main");
    ok(&env.sh("set -C; : > $L/b/main/updates.lock"));
    env.wait_locks(&["b/main"]).await;

    let a = json!({"release": "r1", "services": {"main": service(&slow)}});
    ok(&env.apply(&target(json!({"a": a, "b": b(2)}))));
    env.wait_release("b", "waiting", "r2").await;
    env.wait_app("a", "downloading").await;
    ok(&env.sh("rm $L/b/main/updates.lock"));
    wait_applied(&env, "b", "r2", Duration::from_secs(10)).await;
    let apps = env.apps().await;
    assert_eq!(
        apps["a"]["state"], "downloading",
        "A finished first: {apps}"
    );
    assert_ne!(env.container_of("b", "main"), b1);
}
