//! Container update benchmark on a real dockerd (scripts/harness.sh
//! --docker). Run as root:
//!   cargo bench --bench updatebench
//! Env: HOLDFAST_BENCH_UPDATES (default 200), HOLDFAST_BENCH_ROUNDS (5).
//! Needs the docker-registry package (scripts/setup.sh) for the slow-pull case.
//! Prints a markdown table for docs/performance.md.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{env_num, ms, proc_kib, rss_kib, spread, stop, Harness, REPO};
use holdfast::dbus::Supervisor1Proxy;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Notify;

const IMAGE: &str = "holdfast-bench/busybox:1";

/// A byte-for-byte proxy in front of the engine socket that records when
/// each chunk of a request arrives: the first one after a mark is the
/// first engine call holdfast makes.
#[derive(Clone, Default)]
struct Recorder {
    times: Arc<Mutex<Vec<Instant>>>,
    notify: Arc<Notify>,
}

impl Recorder {
    fn first_after(&self, t0: Instant) -> Option<Instant> {
        self.times
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|t| *t >= t0)
    }
}

async fn proxy(listener: UnixListener, engine: PathBuf, rec: Recorder) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let engine = engine.clone();
        let rec = rec.clone();
        tokio::spawn(async move {
            let Ok(server) = UnixStream::connect(&engine).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                rec.times.lock().unwrap().push(Instant::now());
                rec.notify.notify_waiters();
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn service(round: usize) -> Value {
    json!({
        "image": IMAGE,
        "command": ["sh", "-c", SCRIPT],
        "network_mode": "none",
        "stop_timeout": 2,
        "environment": {"ROUND": round.to_string()},
    })
}

const SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 0.2; done";

/// A service on its app's network (as compose puts it on `<project>_default`).
fn networked(round: usize) -> Value {
    let mut s = service(round);
    s.as_object_mut().unwrap().remove("network_mode");
    s
}

/// The engine floor: the app network, then the 10 creates and the 10
/// starts each at once, straight on the Engine API; the seconds it took.
async fn engine_floor(docker: &bollard::Docker, round: usize) -> f64 {
    use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
    use bollard::query_parameters::CreateContainerOptions;
    let net = format!("floor{round}_default");
    let t0 = Instant::now();
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("floor{round}_s{i}")).collect();
    let creates = names.iter().map(|name| {
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["sh".into(), "-c".into(), SCRIPT.into()]),
            env: Some(vec!["ROUND=0".into()]),
            stop_timeout: Some(2),
            host_config: Some(HostConfig {
                network_mode: Some(net.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker.create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
    });
    for r in futures_util::future::join_all(creates).await {
        r.unwrap();
    }
    let starts = names.iter().map(|n| {
        docker.start_container(n, None::<bollard::query_parameters::StartContainerOptions>)
    });
    for r in futures_util::future::join_all(starts).await {
        r.unwrap();
    }
    let took = t0.elapsed().as_secs_f64();
    for n in &names {
        docker
            .remove_container(
                n,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }
    docker.remove_network(&net).await.unwrap();
    took
}

async fn set_target(p: &Supervisor1Proxy<'_>, apps: Value) {
    p.set_target(&json!({"version": 1, "apps": apps}).to_string())
        .await
        .unwrap();
}

/// Woken by the Apps property's PropertiesChanged signal, never polled: a
/// poll of the uncached property every millisecond had holdfastd answer a
/// thousand Gets a second while it applied, on the same 2 cores as dockerd.
async fn wait_state(p: &Supervisor1Proxy<'_>, app: &str, state: &str, release: &str) {
    use futures_util::StreamExt;
    let cached = Supervisor1Proxy::builder(p.inner().connection())
        .cache_properties(zbus::proxy::CacheProperties::Yes)
        .build()
        .await
        .unwrap();
    let mut changes = cached.receive_apps_changed().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let apps: Value = serde_json::from_str(&cached.apps().await.unwrap()).unwrap();
        if apps[app]["state"] == state && apps[app]["release"] == release {
            return;
        }
        tokio::time::timeout_at(deadline, changes.next())
            .await
            .unwrap_or_else(|_| panic!("{app} never {state}: {apps}"));
    }
}

fn compose_file(dir: &Path, n: usize) -> PathBuf {
    let mut y = String::from("version: \"2.4\"\nservices:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  s{i}:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.2; done\"]\n    stop_grace_period: 2s\n    environment:\n      ROUND: \"0\"\n"
        ));
    }
    let p = dir.join("docker-compose.yml");
    std::fs::write(&p, y).unwrap();
    p
}

/// The big image's random layer and the slow registry's rate.
const BIG_MIB: u64 = 24;
const SLOW_KIB_S: u64 = 2048;

/// Relays TCP connections to `upstream`, its answers throttled to
/// `SLOW_KIB_S`: a registry on a slow link.
async fn slow_registry(listener: TcpListener, upstream: String) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let chunk = 16 * 1024;
            let pause = Duration::from_secs_f64(chunk as f64 / (SLOW_KIB_S * 1024) as f64);
            let mut buf = vec![0u8; chunk];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
        });
    }
}

/// A busybox image with a `BIG_MIB` MiB random layer, pushed to the
/// registry at `direct` and removed locally: pulling it takes a while.
fn push_big_image(host: &str, direct: &str) -> String {
    let name = format!("{direct}/big:1");
    let script = format!(
        "set -e; r=$(mktemp -d); trap 'rm -rf $r' EXIT; mkdir -p $r/bin; cp /bin/busybox $r/bin/; \
         ln -s busybox $r/bin/sh; ln -s busybox $r/bin/sleep; head -c {BIG_MIB}M /dev/urandom > $r/big; \
         tar -C $r -c . | docker -H {host} import -c 'CMD [\"/bin/sh\"]' - {name} >/dev/null; \
         docker -H {host} push -q {name} >/dev/null; docker -H {host} rmi {name} >/dev/null"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

/// App A pulls the big image through the slow registry while app B goes
/// through lock-wait-unlock cycles; B's latencies and A's pull time.
async fn b_while_a_pulls(
    h: &Harness,
    host: &str,
    p: &Supervisor1Proxy<'_>,
    locks: &Path,
    rec: &Recorder,
    cycles: usize,
) -> (Vec<f64>, f64) {
    h.run("registry");
    let port = std::fs::read_to_string(h.dir.join("registry/port")).unwrap();
    let direct = format!("127.0.0.1:{}", port.trim());
    let pushed = push_big_image(host, &direct);
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    tokio::spawn(slow_registry(slow, direct.clone()));
    let big = pushed.replacen(&direct, &slow_addr.to_string(), 1);

    let a = |rel: &str| json!({"release": rel, "services": {"main": {"image": big, "command": ["sleep", "3600"], "network_mode": "none", "stop_timeout": 1}}});
    let b = |n: usize| json!({"release": format!("b{n}"), "services": {"main": service(n)}});
    set_target(p, json!({"b": b(0)})).await;
    wait_state(p, "b", "applied", "b0").await;
    let lock = locks.join("b/main/updates.lock");
    std::fs::write(&lock, b"").unwrap();
    let pull_started = Instant::now();
    set_target(p, json!({"a": a("a1"), "b": b(1)})).await;
    let mut lat = Vec::new();
    for n in 1..=cycles {
        wait_state(p, "b", "waiting", &format!("b{n}")).await;
        let apps: Value = serde_json::from_str(&p.apps().await.unwrap()).unwrap();
        if apps["a"]["state"] != "downloading" {
            break; // A's pull is over: the rest would not measure anything
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        std::fs::remove_file(&lock).unwrap();
        let first = loop {
            if let Some(t) = rec.first_after(t0) {
                break t;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no engine call for b"
            );
        };
        lat.push(ms(first - t0));
        rec.times.lock().unwrap().clear();
        wait_state(p, "b", "applied", &format!("b{n}")).await;
        std::fs::write(&lock, b"").unwrap();
        set_target(p, json!({"a": a("a1"), "b": b(n + 1)})).await;
    }
    std::fs::remove_file(&lock).unwrap();
    wait_state(p, "a", "applied", "a1").await;
    let pull_s = pull_started.elapsed().as_secs_f64();
    assert!(lat.len() >= 3, "A's pull ended before B could be measured");
    (lat, pull_s)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let updates = env_num("HOLDFAST_BENCH_UPDATES", 200) as usize;
    let rounds = env_num("HOLDFAST_BENCH_ROUNDS", 5) as usize;
    let h = Harness::up_with(&["--docker"]);
    let sock = h.dir.join("docker/docker.sock");
    let host = format!("unix://{}", sock.display());
    let out = Command::new(format!("{REPO}/scripts/busybox-image.sh"))
        .args([&host, IMAGE])
        .output()
        .unwrap();
    assert!(out.status.success());
    let proxy_sock = h.dir.join("engine-proxy.sock");
    let locks = h.dir.join("locks");
    let config = h.config_with(
        &locks,
        &format!(
            "engine.socket = \"{}\"\ntarget.file = \"{}\"\n",
            proxy_sock.display(),
            h.dir.join("state/target.json").display()
        ),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rec = Recorder::default();
        let listener = UnixListener::bind(&proxy_sock).unwrap();
        tokio::spawn(proxy(listener, sock.clone(), rec.clone()));
        let (child, _, log) = h.start(&config, "update");
        let conn = zbus::connection::Builder::address(h.bus.as_str()).unwrap().build().await.unwrap();
        let p = Supervisor1Proxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap();

        // Last lock removed -> first engine call of the apply.
        set_target(&p, json!({"b": {"release": "r0", "services": {"main": service(0)}}})).await;
        wait_state(&p, "b", "applied", "r0").await;
        let lock = locks.join("b/main/updates.lock");
        let mut lat = Vec::new();
        for round in 1..=updates {
            std::fs::write(&lock, b"").unwrap();
            let rel = format!("r{round}");
            set_target(&p, json!({"b": {"release": rel, "services": {"main": service(round)}}})).await;
            wait_state(&p, "b", "waiting", &rel).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let notified = rec.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let t0 = Instant::now();
            std::fs::remove_file(&lock).unwrap();
            let first = loop {
                if let Some(t) = rec.first_after(t0) {
                    break t;
                }
                tokio::time::timeout(Duration::from_secs(10), notified.as_mut())
                    .await
                    .expect("no engine call within 10 s of the unlock");
                notified.set(rec.notify.notified());
                notified.as_mut().enable();
            };
            lat.push(ms(first - t0));
            rec.times.lock().unwrap().clear();
            wait_state(&p, "b", "applied", &rel).await;
        }
        set_target(&p, json!({})).await;

        // App B's unlock -> its first engine call while app A pulls a large
        // image through a slow registry: the apps' tasks are independent.
        let (mut during, pull_s) = b_while_a_pulls(&h, &host, &p, &locks, &rec, updates.min(20)).await;
        set_target(&p, json!({})).await;

        // A 10-service release vs docker-compose up -d of the same services
        // vs the engine floor, every one on its app's own network. holdfastd
        // talks to the engine straight from here on (no recording proxy).
        std::fs::write(
            &config,
            std::fs::read_to_string(&config)
                .unwrap()
                .replace(&proxy_sock.display().to_string(), &sock.display().to_string()),
        )
        .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        let docker = bollard::Docker::connect_with_unix(&sock.display().to_string(), 120, bollard::API_DEFAULT_VERSION).unwrap();
        let compose = compose_file(&h.dir, 10);
        let mut hf = Vec::new();
        let mut dc = Vec::new();
        let mut fl = Vec::new();
        for round in 0..rounds {
            fl.push(engine_floor(&docker, round).await);
            let services: serde_json::Map<String, Value> =
                (0..10).map(|i| (format!("s{i}"), networked(0))).collect();
            let rel = format!("t{round}");
            let t0 = Instant::now();
            set_target(&p, json!({"ten": {"release": rel, "services": services}})).await;
            wait_state(&p, "ten", "applied", &rel).await;
            hf.push(t0.elapsed().as_secs_f64());
            set_target(&p, json!({})).await;
            let start = Instant::now();
            while !Command::new("docker")
                .args(["-H", &host, "ps", "-aq", "--filter", "label=io.holdfast.app=ten"])
                .output()
                .unwrap()
                .stdout
                .is_empty()
            {
                assert!(start.elapsed() < Duration::from_secs(60));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }

            let t0 = Instant::now();
            let out = Command::new("docker-compose")
                .args(["-p", &format!("cmp{round}"), "-f", compose.to_str().unwrap(), "up", "-d"])
                .env("DOCKER_HOST", &host)
                .output()
                .unwrap();
            dc.push(t0.elapsed().as_secs_f64());
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let out = Command::new("docker-compose")
                .args(["-p", &format!("cmp{round}"), "-f", compose.to_str().unwrap(), "down", "-t", "2"])
                .env("DOCKER_HOST", &host)
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        // Idle memory with 20 services on their app network.
        let services: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("s{i}"), networked(0))).collect();
        set_target(&p, json!({"twenty": {"release": "x", "services": services}})).await;
        wait_state(&p, "twenty", "applied", "x").await;
        // Idle: after the 10 s crash watch of services without a healthcheck.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let rss20 = rss_kib(child.id());
        let anon20 = proc_kib(child.id(), "smaps_rollup", "Anonymous:");
        set_target(&p, json!({})).await;
        stop(child);
        let _ = log;
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let (hm, dm, fm) = (med(&mut hf), med(&mut dc), med(&mut fl));
        println!("| measurement | result | target |");
        println!("|---|---|---|");
        println!(
            "| last lock removed -> first engine call of the apply ({updates} updates) | {} | p99 <= 20 ms |",
            spread(&mut lat, 0.99, 2)
        );
        println!(
            "| 10-service release applied (holdfast, {rounds} rounds) | median {hm:.2} s (min {:.2}, max {:.2}) | - |",
            hf[0],
            hf[hf.len() - 1]
        );
        println!(
            "| `docker-compose up -d` of the same 10 services ({rounds} rounds) | median {dm:.2} s (min {:.2}, max {:.2}) | - |",
            dc[0],
            dc[dc.len() - 1]
        );
        println!(
            "| engine floor: network + 10 creates + 10 starts at once on the Engine API ({rounds} rounds) | median {fm:.2} s (min {:.2}, max {:.2}) | - |",
            fl[0],
            fl[fl.len() - 1]
        );
        println!("| ratio holdfast / compose (medians) | {:.2} | <= 0.7 |", hm / dm);
        println!("| ratio holdfast / engine floor (medians) | {:.2} | <= 1.3 |", hm / fm);
        println!(
            "| holdfastd RSS, idle with 20 services applied (of it anonymous: heap, stacks) | {:.2} MiB ({:.2} MiB) | <= 6 MiB |",
            rss20 as f64 / 1024.0,
            anon20 as f64 / 1024.0
        );
        println!(
            "| app B: last lock removed -> first engine call, while app A pulls {BIG_MIB} MiB at {SLOW_KIB_S} KiB/s ({} updates; A's pull took {pull_s:.1} s) | {} | p99 <= 20 ms |",
            during.len(),
            spread(&mut during, 0.99, 2)
        );
    });
}
