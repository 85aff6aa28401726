//! Nothing outside input does may stall the lock path (issue 24): while
//! holdfastd handles a big or hostile target (a 13 MB SetAppTarget or
//! SetTarget, the biggest target the bounds accept, through D-Bus and
//! through `holdfast apply`, one the bounds refuse), a lock created
//! meanwhile reaches logind's inhibitor list as fast as ever, and the
//! daemon's memory comes back down afterwards. Real components: a private
//! bus and logind, holdfastd, and dockerd where an app is planned.
//!
//! Each test measures the usual lock path first (lock file created ->
//! holdfast's inhibitor, naming it, listed by logind), then cycles locks
//! for as long as the input is being handled. The figures go to stderr
//! (`--nocapture`).

mod common;

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{ok, Env};
use holdfast::dbus::Supervisor1Proxy;
use holdfast::system::logind::Login1ManagerProxy;
use serde_json::{json, Map, Value};

/// The lock the probe takes and gives back, over and over.
const PROBE: &str = "probe/main";
/// A lock must reach logind within this while a heavy input is handled.
/// Usually a few ms; holdfastd before issue 24 took 1.8 to 25 s here.
const LOCK_BOUND: Duration = Duration::from_millis(500);
/// The daemon's RSS after a refused input, over its idle RSS: the input
/// was 13 MB (before issue 24 the daemon kept 237 MB).
const RSS_SLACK_KIB: u64 = 24 << 10;

/// Cycles a lock and times it through logind.
struct Probe<'a> {
    env: &'a Env,
    login: Login1ManagerProxy<'static>,
}

impl<'a> Probe<'a> {
    async fn new(env: &'a Env) -> Probe<'a> {
        let login = Login1ManagerProxy::new(&env.conn().await).await.unwrap();
        Probe { env, login }
    }

    async fn why(&self) -> Option<String> {
        let all = self.login.list_inhibitors().await.unwrap();
        all.into_iter()
            .find(|i| i.1 == "holdfast" && i.3 == "block")
            .map(|i| i.2)
    }

    /// Lock file created -> holdfast's inhibitor names it; then the lock
    /// goes and the inhibitor with it.
    async fn cycle(&self) -> Duration {
        let file = self.env.locks().join(PROBE).join("updates.lock");
        let start = Instant::now();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .unwrap();
        while !self.why().await.is_some_and(|w| w.contains(PROBE)) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the lock never reached logind; log:\n{}",
                self.env.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = start.elapsed();
        std::fs::remove_file(&file).unwrap();
        while self.why().await.is_some() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took
    }

    /// The usual lock path: the slowest of 20 cycles.
    async fn usual(&self) -> Duration {
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            worst = worst.max(self.cycle().await);
        }
        worst
    }

    /// Cycles while `busy` runs (and at least `min` times): the slowest.
    /// Fails at the first lock slower than [`LOCK_BOUND`], and when the
    /// input is not handled within two minutes.
    async fn during<T>(&self, busy: &JoinHandle<T>, min: usize) -> (Duration, usize) {
        let (mut worst, mut n) = (Duration::ZERO, 0);
        let start = Instant::now();
        while !busy.is_finished() || n < min {
            let took = self.cycle().await;
            assert!(
                took < LOCK_BOUND,
                "a lock took {took:?} to reach logind, {:?} into the input",
                start.elapsed()
            );
            worst = worst.max(took);
            n += 1;
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the input was not handled within 2 minutes ({n} locks, the slowest {worst:?})"
            );
        }
        (worst, n)
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits (10 s at most) for the daemon's RSS to be within `slack` of
/// `base`; answers the last reading.
async fn rss_back(env: &Env, base: u64, slack: u64) -> u64 {
    let start = Instant::now();
    loop {
        let now = rss_kib(env.daemon_pid());
        if now <= base + slack || start.elapsed() > Duration::from_secs(10) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A D-Bus call from a thread of its own (building a 13 MB message would
/// otherwise hold the probe's thread).
fn call<T: Send + 'static>(
    env: &Env,
    f: impl FnOnce(Supervisor1Proxy<'static>) -> futures_util::future::BoxFuture<'static, T>
        + Send
        + 'static,
) -> JoinHandle<(Duration, T)> {
    let bus = env.bus.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let conn = zbus::connection::Builder::address(bus.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            let p = Supervisor1Proxy::new(&conn).await.unwrap();
            let start = Instant::now();
            let r = f(p).await;
            (start.elapsed(), r)
        })
    })
}

fn set_app(env: &Env, app: &str, json: String) -> JoinHandle<(Duration, Result<String, String>)> {
    let app = app.to_owned();
    call(env, move |p| {
        Box::pin(async move {
            let r = p.set_app_target(&app, &json).await;
            r.map_err(|e| e.to_string())
        })
    })
}

fn set_target(env: &Env, json: String) -> JoinHandle<(Duration, Result<String, String>)> {
    call(env, move |p| {
        Box::pin(async move { p.set_target(&json).await.map_err(|e| e.to_string()) })
    })
}

/// An app of `n` services of one image and nothing else: 13 MB is
/// 310,000 of them, many small values (the slowest kind to parse).
fn small_services(n: usize) -> Value {
    let services: Map<String, Value> = (0..n)
        .map(|i| (format!("s{i:06}"), json!({"image": "holdfast-test/none:1"})))
        .collect();
    json!({"release": "r1", "services": services})
}

/// An app of `n` services of about `pad` bytes each, every one with an
/// image of its own that no registry has (a pass plans, then fails at the
/// first pull, and is retried).
fn app(n: usize, pad: usize) -> Value {
    let services: Map<String, Value> = (0..n)
        .map(|i| {
            let s = json!({"image": format!("holdfast-test/none-{i}:1"),
                "environment": {"PAD": "x".repeat(pad)}});
            (format!("s{i:05}"), s)
        })
        .collect();
    json!({"release": "r1", "services": services})
}

fn target_of(app_name: &str, app: Value) -> String {
    json!({"version": 1, "apps": {app_name: app}}).to_string()
}

/// A started daemon with the probe's service directory, its idle RSS and
/// its usual lock path.
async fn start(env: &mut Env) -> (u64, Duration) {
    env.service_dir(PROBE);
    env.start_daemon().await;
    let probe = Probe::new(env).await;
    let usual = probe.usual().await;
    let rss = rss_kib(env.daemon_pid());
    (rss, usual)
}

/// The input the issue measured: 13 MB for one app. Refused at once over
/// D-Bus (the target file's bound is 4 MiB); before, SetAppTarget parsed
/// it on the thread the lock path shared.
#[tokio::test]
async fn a_13_mb_set_app_target_delays_no_lock() {
    let mut env = Env::new();
    let (rss, usual) = start(&mut env).await;
    let json = small_services(310_000).to_string();
    assert!(json.len() > 13_000_000, "{}", json.len());
    let probe = Probe::new(&env).await;
    let busy = set_app(&env, "big", json);
    let (worst, cycles) = probe.during(&busy, 3).await;
    let (took, r) = busy.join().unwrap();
    let after = rss_back(&env, rss, RSS_SLACK_KIB).await;
    eprintln!("13 MB SetAppTarget: usual {usual:?}, during {worst:?} ({cycles} cycles), call {took:?}, RSS {rss} -> {after} KiB");
    let e = r.unwrap_err();
    assert!(
        e.contains("InvalidTarget") && e.contains("a target is at most 4194304 bytes"),
        "{e}"
    );
    assert!(
        worst < LOCK_BOUND,
        "a lock took {worst:?} (usually {usual:?})"
    );
    assert!(after <= rss + RSS_SLACK_KIB, "RSS {rss} -> {after} KiB");
    let log = env.log();
    assert!(log.lines().all(|l| l.len() < 4096), "a log line is long");
}

/// The same bytes as a whole target through SetTarget.
#[tokio::test]
async fn a_13_mb_set_target_delays_no_lock() {
    let mut env = Env::new();
    let (rss, usual) = start(&mut env).await;
    let json = target_of("big", small_services(310_000));
    let probe = Probe::new(&env).await;
    let busy = set_target(&env, json);
    let (worst, cycles) = probe.during(&busy, 3).await;
    let (took, r) = busy.join().unwrap();
    let after = rss_back(&env, rss, RSS_SLACK_KIB).await;
    eprintln!("13 MB SetTarget: usual {usual:?}, during {worst:?} ({cycles} cycles), call {took:?}, RSS {rss} -> {after} KiB");
    let e = r.unwrap_err();
    assert!(e.contains("a target is at most 4194304 bytes"), "{e}");
    assert!(
        worst < LOCK_BOUND,
        "a lock took {worst:?} (usually {usual:?})"
    );
    assert!(after <= rss + RSS_SLACK_KIB, "RSS {rss} -> {after} KiB");
}

/// Within the byte bound, over the count: the app of 30,000
/// services of one image (1.3 MB) is parsed on the blocking pool and
/// refused by validation; before issue 24 it was accepted, and every pass
/// planned it on the lock path's thread.
#[tokio::test]
async fn an_app_over_the_bounds_is_refused_and_delays_no_lock() {
    let mut env = Env::new();
    let (rss, usual) = start(&mut env).await;
    let probe = Probe::new(&env).await;
    let busy = set_app(&env, "big", small_services(30_000).to_string());
    let (worst, _) = probe.during(&busy, 3).await;
    let (took, r) = busy.join().unwrap();
    let after = rss_back(&env, rss, RSS_SLACK_KIB).await;
    eprintln!(
        "30,000 services over D-Bus: usual {usual:?}, during {worst:?}, call {took:?}, RSS {rss} -> {after} KiB"
    );
    let e = r.unwrap_err();
    assert!(
        e.contains("30000 services in all; a target has at most 1000"),
        "{e}"
    );
    assert!(
        worst < LOCK_BOUND,
        "a lock took {worst:?} (usually {usual:?})"
    );
    assert!(after <= rss + RSS_SLACK_KIB, "RSS {rss} -> {after} KiB");
    // The last good state stays: there was none, and there is none.
    let apps = env.fresh_supervisor().await.apps().await.unwrap();
    assert_eq!(apps, "{}");
}

/// The biggest target the bounds accept: 1,000 services, 3.9 MB. It is
/// accepted, planned and fails at its first pull, then is retried; the
/// lock path keeps its pace throughout, the D-Bus side answers, and no
/// log line carries the document.
async fn biggest_accepted(
    env: &mut Env,
    apply: impl FnOnce(&Env) -> JoinHandle<(Duration, Result<String, String>)>,
) {
    let (rss, usual) = start(env).await;
    let probe = Probe::new(env).await;
    let busy = apply(env);
    let (accepting, _) = probe.during(&busy, 3).await;
    let (took, r) = busy.join().unwrap();
    let summary = r.unwrap();
    assert!(
        summary.contains("big release r1 (1000 services)"),
        "{summary}"
    );
    // The first pass plans the app and fails at a pull; the second, 5 s
    // later, does it again.
    let mut worst = accepting;
    let mut props = Duration::ZERO;
    let sup = env.fresh_supervisor().await;
    let start = Instant::now();
    while env.log().matches("applying app big").count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no retry; log:\n{}",
            env.log()
        );
        worst = worst.max(probe.cycle().await);
        let t = Instant::now();
        sup.locked().await.unwrap();
        props = props.max(t.elapsed());
    }
    let after = rss_kib(env.daemon_pid());
    eprintln!("1000 services accepted: usual {usual:?}, while accepting {accepting:?} (call {took:?}), through two passes {worst:?}; D-Bus property read at worst {props:?}; RSS {rss} -> {after} KiB");
    assert!(
        worst < LOCK_BOUND,
        "a lock took {worst:?} (usually {usual:?})"
    );
    assert!(props < LOCK_BOUND, "a D-Bus property read took {props:?}");
    let log = env.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
    // The target in force holds 1,000 services; beyond that, memory came
    // back (before: 294 MB kept for 30,000 services).
    assert!(after <= rss + (64 << 10), "RSS {rss} -> {after} KiB");
}

#[tokio::test]
async fn the_biggest_target_the_bounds_accept_over_d_bus() {
    let mut env = Env::with_docker();
    biggest_accepted(&mut env, |env| {
        set_app(env, "big", app(1000, 3900).to_string())
    })
    .await;
}

/// The same through `holdfast apply` of a compose file: the CLI converts,
/// holdfastd gets SetAppTarget.
#[tokio::test]
async fn the_biggest_compose_app_the_bounds_accept_through_holdfast_apply() {
    let mut env = Env::with_docker();
    let file = env.dir.join("big.yml");
    write_compose(&file, 1000, 3900);
    biggest_accepted(&mut env, move |env| {
        let mut cli = cli(
            env,
            &[
                "apply",
                file.to_str().unwrap(),
                "--app",
                "big",
                "--release",
                "r1",
            ],
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            let out = cli.output().unwrap();
            let r = match out.status.success() {
                true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
                false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            };
            (start.elapsed(), r)
        })
    })
    .await;
}

/// `holdfast ARGS` against this test's bus and config, not yet run.
fn cli(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"));
    c.arg("--config")
        .arg(env.config_path())
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &env.bus);
    c
}

/// A compose app of `n` services: with `pad`, each with an image of its
/// own and an environment of about `pad` bytes; without, one image for
/// all and nothing else (30,000 services in 860 KB).
fn write_compose(path: &Path, n: usize, pad: usize) {
    let mut y = String::from("services:\n");
    let padding = "x".repeat(pad);
    for i in 0..n {
        y.push_str(&match pad {
            0 => format!("  s{i:05}:\n    image: holdfast-test/none:1\n"),
            _ => format!("  s{i:05}:\n    image: holdfast-test/none-{i}:1\n    environment:\n      PAD: {padding}\n"),
        });
    }
    std::fs::write(path, y).unwrap();
}

/// The compose app of 30,000 services through `holdfast apply`:
/// refused, the lock path untouched, memory back.
#[tokio::test]
async fn the_30000_service_compose_app_is_refused_and_delays_no_lock() {
    let mut env = Env::new();
    let (rss, usual) = start(&mut env).await;
    let file = env.dir.join("huge.yml");
    write_compose(&file, 30_000, 0);
    let probe = Probe::new(&env).await;
    let mut cli = cli(&env, &["apply", file.to_str().unwrap(), "--app", "huge"]);
    let busy = std::thread::spawn(move || cli.output().unwrap());
    let (worst, _) = probe.during(&busy, 3).await;
    let out = busy.join().unwrap();
    let after = rss_back(&env, rss, RSS_SLACK_KIB).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("30,000-service compose app: usual {usual:?}, during {worst:?}, RSS {rss} -> {after} KiB; holdfast apply: {}", stderr.trim());
    assert!(
        stderr.contains("30000 services in all; a target has at most 1000"),
        "{stderr}"
    );
    assert!(
        worst < LOCK_BOUND,
        "a lock took {worst:?} (usually {usual:?})"
    );
    assert!(after <= rss + RSS_SLACK_KIB, "RSS {rss} -> {after} KiB");
    assert!(!ok(&env.cli(&["status", "--json"])).contains("huge"));
}
