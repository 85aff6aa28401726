//! holdfastd under faults: out of file descriptors, a rebuild of the lock
//! watch that fails, a refused `Inhibit`, a client that goes away in the
//! middle of a reboot, a read-only lock root. What holdfast cannot read
//! must keep counting as locked, and what it took it must give back.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{ok, wait_for, Env};
use holdfast::dbus::Supervisor1Proxy;
use holdfast::system::logind::Login1ManagerProxy;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

async fn fresh(env: &Env) -> Supervisor1Proxy<'static> {
    env.fresh_supervisor().await
}

fn open_fds(pid: i32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The daemon's descriptors once they have not moved for 200 ms (a holder
/// scan or a record write may still be closing one).
async fn settled_fds(pid: i32) -> BTreeSet<u64> {
    let mut last = open_fds(pid);
    let mut quiet = 0;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = open_fds(pid);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet == 20 {
            return last;
        }
    }
    panic!("holdfastd's descriptors never settled: {last:?}");
}

/// holdfastd's sockets: (descriptor, `socket:[inode]`).
fn socket_fds(pid: i32) -> BTreeSet<(u64, String)> {
    open_fds(pid)
        .into_iter()
        .filter_map(|fd| {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            let link = link.to_str()?.to_owned();
            link.starts_with("socket:").then_some((fd, link))
        })
        .collect()
}

fn soft_nofile(pid: i32) -> String {
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
        ])
        .args(["--output", "SOFT"])
        .output()
        .unwrap();
    ok(&out).trim().to_owned()
}

fn set_soft_nofile(pid: i32, soft: &str) {
    ok(&Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .output()
        .unwrap());
}

/// The directory of config.json, so that holdfastd's watch of it is set up
/// and it does not open descriptors now and then to look for it.
fn boot_dir(env: &Env) {
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
}

/// Lowers holdfastd's soft descriptor limit so that exactly `free` more
/// descriptors can be opened (the kernel hands out the lowest free number,
/// and refuses any at or above the limit). Returns the old soft limit.
async fn starve(env: &Env, free: usize) -> String {
    assert!(env.dir.join("boot").is_dir(), "call boot_dir() first");
    let pid = env.daemon_pid();
    let old = soft_nofile(pid);
    let used = settled_fds(pid).await;
    let limit = (0..).filter(|n| !used.contains(n)).nth(free).unwrap();
    set_soft_nofile(pid, &limit.to_string());
    old
}

/// Watches logind's list until stopped; returns every moment holdfast had
/// no block inhibitor naming `service`.
fn inhibitor_gaps(
    env: &Env,
    service: &'static str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let bus = env.bus.clone();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let conn = zbus::connection::Builder::address(bus.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let login = Login1ManagerProxy::new(&conn).await.unwrap();
        let mut gaps = Vec::new();
        while !stopped.load(Ordering::Relaxed) {
            let list = login.list_inhibitors().await.unwrap();
            let held = list
                .iter()
                .any(|i| i.1 == "holdfast" && i.3 == "block" && i.2.contains(service));
            if !held {
                gaps.push(format!("{list:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gaps
    });
    (stop, task)
}

/// The own locks `own-locks.json` lists, as sorted `app/service/file`.
fn recorded_own_locks(env: &Env) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(env.state().join("own-locks.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut all: Vec<String> = v["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = &e["service"];
            let (app, service) = (id["app"].as_str().unwrap(), id["service"].as_str().unwrap());
            format!("{app}/{service}/{}", e["file"].as_str().unwrap())
        })
        .collect();
    all.sort();
    all
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Item 1: out of descriptors, holdfastd cannot read app1/main again as a
/// lock file comes and goes beside its lock. Before, that read as "the
/// service is gone": the lock left the table and the inhibitor went, for
/// good. Now it stays locked as "unknown", the inhibitor never goes, and
/// with descriptors back it is read right again without a reload.
#[tokio::test]
async fn out_of_descriptors_a_lock_stays_a_lock() {
    let mut env = Env::new();
    boot_dir(&env);
    env.start_with_app1_main_locked().await;
    let p = fresh(&env).await;
    let (stop, gaps) = inhibitor_gaps(&env, "app1/main");
    let soft = starve(&env, 0).await;

    for round in 0..4 {
        ok(&env.sh("set -C; : > $L/app1/main/resin-updates.lock"));
        if round == 0 {
            let unknown = wait_for(Duration::from_secs(10), || async {
                let locks = p.locks().await.unwrap();
                locks.len() == 1 && locks[0].service == "app1/main" && locks[0].kind == "unknown"
            })
            .await;
            assert!(unknown.is_ok(), "{:?}\n{}", p.locks().await, env.log());
        }
        ok(&env.sh("rm $L/app1/main/resin-updates.lock"));
    }
    let unreadable = p.unreadable_locks().await.unwrap();
    assert!(unreadable.contains_key("app1/main"), "{unreadable:?}");
    assert!(p.locked().await.unwrap());

    set_soft_nofile(env.daemon_pid(), &soft);
    // Read again by itself: a normal lock, nothing unreadable.
    let back = wait_for(Duration::from_secs(15), || async {
        let locks = p.locks().await.unwrap();
        locks.len() == 1
            && locks[0].kind == "file"
            && locks[0].owner == "app"
            && p.unreadable_locks().await.unwrap().is_empty()
    })
    .await;
    assert!(back.is_ok(), "{:?}\n{}", p.locks().await, env.log());
    // And it watches again: a lock taken now is seen.
    env.service_dir("app3/x");
    ok(&env.sh("set -C; : > $L/app3/x/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main, app3/x"))
        .await;
    stop.store(true, Ordering::Relaxed);
    let gaps = gaps.await.unwrap();
    assert!(
        gaps.is_empty(),
        "inhibitor gone {} times: {:?}",
        gaps.len(),
        gaps.first()
    );
}

/// Item 1 (power): with no app lock but no descriptor free, holdfast cannot
/// take the apps' locks, so an unforced reboot is refused (before, it
/// warned and asked logind anyway); once descriptors are back nothing of
/// that attempt is left.
#[tokio::test]
async fn reboot_is_refused_when_the_locks_cannot_be_taken() {
    let mut env = Env::new();
    boot_dir(&env);
    env.service_dir("app2/web");
    env.start_daemon().await;
    env.wait_locks(&[]).await;
    let soft = starve(&env, 0).await;
    let out = env.cli(&["reboot"]);
    set_soft_nofile(env.daemon_pid(), &soft);

    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("cannot take every app's locks"), "{err}");
    assert!(!env.log().contains("logind refused"), "{}", env.log());
    for f in ["updates.lock", "resin-updates.lock"] {
        assert!(!env.locks().join("app2/web").join(f).exists(), "{f} left");
    }
    assert_eq!(recorded_own_locks(&env), Vec::<String>::new());
    env.wait_locks(&[]).await;
    env.wait_inhibitor(None).await;
    ok(&env.cli(&["take", "app2"]));
    ok(&env.cli(&["release", "app2"]));
}

/// Item 3: the lock root renamed away and back makes holdfastd rebuild its
/// watch; with one descriptor free the new inotify instance is made but
/// the scan fails. Before, that instance (with no watches) replaced the old
/// one and nothing was ever seen again. Now the table is blind while it
/// fails, and once descriptors are back the rebuild is retried: locks made
/// meanwhile and afterwards are seen, without a restart.
#[tokio::test]
async fn the_lock_watch_recovers_after_a_failed_rebuild() {
    let mut env = Env::new();
    boot_dir(&env);
    // The root one level down, so that it can be renamed (the tmpfs
    // mount point cannot).
    let root = env.locks().join("root");
    let cfg = std::fs::read_to_string(env.config_path()).unwrap();
    let line = |p: &std::path::Path| format!("lock_root = \"{}\"", p.display());
    std::fs::write(
        env.config_path(),
        cfg.replacen(&line(&env.locks()), &line(&root), 1),
    )
    .unwrap();
    env.service_dir("root/app1/main");
    env.service_dir("root/app2/web");
    ok(&env.sh("set -C; : > $L/root/app1/main/updates.lock"));
    env.start_daemon().await;
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let p = fresh(&env).await;
    let soft = starve(&env, 1).await;

    // (-T: holdfastd may have made an empty root meanwhile.)
    ok(&env.sh("mv $L/root $L/moved && mv -T $L/moved $L/root"));
    let blind = wait_for(Duration::from_secs(10), || async {
        p.unreadable_locks()
            .await
            .unwrap()
            .contains_key(root.to_str().unwrap())
    })
    .await;
    assert!(blind.is_ok(), "never blind:\n{}", env.log());
    // Blind binds: the lock is kept, the inhibitor stays.
    assert!(p.locked().await.unwrap());
    // Going blind changes the inhibitor's why: the new one is taken before
    // the old one goes, so for a moment logind lists both.
    let one = wait_for(Duration::from_secs(5), || async {
        env.holdfast_inhibitors().await.len() == 1
    })
    .await;
    let inh = env.holdfast_inhibitors().await;
    assert!(
        one.is_ok() && inh[0].1.contains("app1/main") && inh[0].2 == "block",
        "{inh:?}"
    );
    ok(&env.sh("set -C; : > $L/root/app2/web/updates.lock"));

    set_soft_nofile(env.daemon_pid(), &soft);
    let back = wait_for(Duration::from_secs(15), || async {
        p.unreadable_locks().await.unwrap().is_empty()
    })
    .await;
    assert!(back.is_ok(), "still blind:\n{}", env.log());
    env.wait_locks(&["app1/main", "app2/web"]).await;
    // The rebuilt watch works.
    env.service_dir("root/app3/x");
    ok(&env.sh("set -C; : > $L/root/app3/x/updates.lock"));
    ok(&env.sh("rm $L/root/app2/web/updates.lock"));
    env.wait_locks(&["app1/main", "app3/x"]).await;
    env.wait_inhibitor(Some("update lock held by app1/main, app3/x"))
        .await;
}

/// Item 6: logind refuses holdfast's `Inhibit` (its only inhibitor slot is
/// taken). When the slot frees up, holdfast takes its inhibitor by itself,
/// with nothing changing in the lock table (before, only a table change
/// made it try again).
#[tokio::test]
async fn a_refused_inhibitor_is_taken_once_logind_allows() {
    let mut env = Env::new();
    env.set_logind_conf("InhibitorsMax=1");
    let conn = env.conn().await;
    let login = Login1ManagerProxy::new(&conn).await.unwrap();
    let other = login
        .inhibit("shutdown", "test", "the only slot", "block")
        .await
        .unwrap();
    env.service_dir("app1/main");
    env.start_daemon().await;
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    // Refused, and the table settled (the holder scan has reported).
    let p = fresh(&env).await;
    let refused = wait_for(Duration::from_secs(10), || async {
        let locks = p.locks().await.unwrap();
        env.log().contains("cannot take a logind inhibitor") && locks.len() == 1 && locks[0].stale
    })
    .await;
    assert!(refused.is_ok(), "{}", env.log());
    assert_eq!(env.holdfast_inhibitors().await, vec![]);
    assert!(!p.inhibitor_held().await.unwrap());

    drop(other);
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
}

/// Item 6: the inhibitor does not wait for holdfast's bus name. With
/// another connection owning `org.holdfast.Supervisor1`, holdfastd cannot
/// serve D-Bus, yet it takes its inhibitor for a lock.
#[tokio::test]
async fn the_inhibitor_does_not_need_the_bus_name() {
    let mut env = Env::new();
    // Owned without allowing replacement (zbus's builder would allow it).
    let squatter = env.conn().await;
    squatter
        .request_name_with_flags(
            "org.holdfast.Supervisor1",
            zbus::fdo::RequestNameFlags::DoNotQueue.into(),
        )
        .await
        .unwrap();
    env.service_dir("app1/main");
    env.daemon = Some(env.daemon_cmd().spawn().unwrap());
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    // The lock path has a thread of its own: the inhibitor may come before
    // the D-Bus side has asked for the name and logged the refusal.
    env.wait_log(
        "cannot serve org.holdfast.Supervisor1",
        Duration::from_secs(10),
        "the refused name is said",
    )
    .await;
}

/// Item 5: a client asks for a forced reboot over HTTP and hangs up while
/// holdfast holds every app's locks and waits for logind (stopped for the
/// moment). Before, the handler was dropped right there: "powering" stuck,
/// no inhibitor, every later take failed "already held". Now the power
/// path runs to its end: logind refuses (no systemd as PID 1) and
/// everything is given back.
#[tokio::test]
async fn a_reboot_client_that_hangs_up_leaves_nothing_behind() {
    let mut env = Env::new();
    env.service_dir("app2/web");
    env.start_with_app1_main_locked().await;
    let pid = env.daemon_pid();
    let before = socket_fds(pid);
    let logind = Pid::from_raw(
        std::fs::read_to_string(env.dir.join("logind.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    kill(logind, Signal::SIGSTOP).unwrap();

    let key = std::fs::read_to_string(env.state().join("api-key")).unwrap();
    let body = r#"{"force":true}"#;
    let mut s = std::os::unix::net::UnixStream::connect(env.dir.join("api.sock")).unwrap();
    write!(
        s,
        "POST /v1/reboot HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        key.trim(),
        body.len()
    )
    .unwrap();
    // Mid-reboot: app2's locks taken, the inhibitor let go, logind asked.
    let mid = wait_for(Duration::from_secs(10), || async {
        env.locks().join("app2/web/updates.lock").exists()
            && env.log().contains("releasing holdfast's inhibitor first")
    })
    .await;
    if mid.is_err() {
        kill(logind, Signal::SIGCONT).unwrap();
        panic!("the reboot never started:\n{}", env.log());
    }
    let conn: Vec<(u64, String)> = socket_fds(pid)
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    assert_eq!(conn.len(), 1, "the client's connection: {conn:?}");
    drop(s);
    // holdfastd has closed its end: whatever served the request is gone.
    let closed = wait_for(Duration::from_secs(10), || async {
        !socket_fds(pid).contains(&conn[0])
    })
    .await;
    kill(logind, Signal::SIGCONT).unwrap();
    assert!(closed.is_ok(), "holdfastd kept the connection open");

    let done = wait_for(Duration::from_secs(10), || async {
        env.log().contains("logind refused to reboot")
    })
    .await;
    assert!(done.is_ok(), "{}", env.log());
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    env.wait_locks(&["app1/main"]).await;
    for f in ["updates.lock", "resin-updates.lock"] {
        assert!(!env.locks().join("app2/web").join(f).exists(), "{f} left");
    }
    assert_eq!(recorded_own_locks(&env), Vec::<String>::new());
    ok(&env.cli(&["take", "app2"]));
    ok(&env.cli(&["release", "app2"]));
}

/// Item 8: holdfast's own locks carry a `flock` while it holds them, so
/// `flock(1)` fails against them; and a file an app writes with
/// holdfast's tag but a token holdfast never recorded is the app's lock.
#[tokio::test]
async fn own_locks_are_flocked_and_a_forged_tag_is_an_app_lock() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.service_dir("app2/web");
    env.start_daemon().await;

    ok(&env.cli(&["take", "app1"]));
    for f in ["updates.lock", "resin-updates.lock"] {
        let out = env.sh(&format!("flock -n $L/app1/main/{f} true"));
        assert_eq!(out.status.code(), Some(1), "flock got {f}: {out:?}");
    }
    ok(&env.cli(&["release", "app1"]));
    ok(&env.sh("flock -n $L/app1/main/updates.lock true && rm $L/app1/main/updates.lock"));

    // holdfast's tag with a token it never recorded: an app's lock.
    ok(&env.sh("set -C; printf 'holdfast-own-lock 5f3a9c0e1b2d4f6a8c7e9d0b1a2c3d4e\\n' > $L/app2/web/updates.lock"));
    let locks = env.wait_locks(&["app2/web"]).await;
    assert_eq!(locks[0].owner, "app", "{locks:?}");
    let out = env.cli(&["reboot"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        stderr(&out).contains("update locks are held by app2/web"),
        "{out:?}"
    );
}

/// Item 8, after a crash: holdfastd dies holding app1's locks and an app
/// then takes `flock(1)` on the file left behind, as the README shows.
/// That file is the app's lock now: the restart must not delete it under
/// the app (it did, and then nothing held updates or a reboot back while
/// the app was in its critical section).
#[tokio::test]
async fn a_leftover_an_app_has_flocked_is_the_apps_lock() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.start_daemon().await;
    ok(&env.cli(&["take", "app1"]));
    env.kill_daemon(Signal::SIGKILL);
    let path = env.locks().join("app1/main/updates.lock");
    let _app = Flock::lock(
        std::fs::File::open(&path).unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .unwrap();

    env.start_daemon().await;
    assert!(path.exists(), "the app's flocked file was deleted");
    assert!(!env.locks().join("app1/main/resin-updates.lock").exists());
    assert_eq!(recorded_own_locks(&env), Vec::<String>::new());
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].owner, "app", "{locks:?}");
    let out = env.cli(&["reboot"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
}

/// Item 10: holdfast cannot remove its own locks on a read-only lock root.
/// Before, the release said "released 0", forgot the files and they stayed
/// forever. Now the release fails naming them, they stay recorded (across
/// a restart too), and once the root is writable again the keeper removes
/// them by itself, so the app can lock again.
#[tokio::test]
async fn own_locks_on_a_read_only_root_stay_recorded_until_removed() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.start_daemon().await;
    ok(&env.cli(&["take", "app1"]));
    let files = ["app1/main/updates.lock", "app1/main/resin-updates.lock"];
    let mut want: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(recorded_own_locks(&env), want);

    env.set_locks_writable(false);
    let out = env.cli(&["release", "app1"]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    for f in files {
        assert!(err.contains(f), "{err}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("released"),
        "{out:?}"
    );
    for f in files {
        assert!(env.locks().join(f).exists(), "{f} gone");
    }
    assert_eq!(recorded_own_locks(&env), want);

    // Across a restart: still recorded, still holdfast's.
    env.kill_daemon(Signal::SIGTERM);
    assert_eq!(recorded_own_locks(&env), want);
    env.start_daemon().await;
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].owner, "holdfast", "{locks:?}");
    assert_eq!(recorded_own_locks(&env), want);
    // Held as before the restart: flocked.
    let out = env.sh("flock -n $L/app1/main/updates.lock true");
    assert_eq!(out.status.code(), Some(1), "flock got a leftover: {out:?}");

    env.set_locks_writable(true);
    // Removed, then the record rewritten.
    let removed = wait_for(Duration::from_secs(15), || async {
        files.iter().all(|f| !env.locks().join(f).exists()) && recorded_own_locks(&env).is_empty()
    })
    .await;
    assert!(removed.is_ok(), "leftovers never removed:\n{}", env.log());
    env.wait_locks(&[]).await;
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    let locks = env.wait_locks(&["app1/main"]).await;
    assert_eq!(locks[0].owner, "app");
}

/// Item 14: thousands of apps whose locks cannot be taken (read-only lock
/// root). Before, a reboot warned once per app and went ahead. Now it is
/// refused with one error and nothing is left behind.
#[tokio::test]
async fn reboot_with_thousands_of_unlockable_apps_is_one_refusal() {
    let mut env = Env::new();
    for i in 0..3000 {
        std::fs::create_dir_all(env.locks().join(format!("app{i:04}/main"))).unwrap();
    }
    env.start_daemon().await;
    env.set_locks_writable(false);
    let before = env.log().len();
    let out = env.cli(&["reboot"]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("cannot take every app's locks"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let log = env.log();
    let noisy: Vec<&str> = log[before..]
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains("ERROR"))
        .collect();
    assert!(
        noisy.len() <= 2,
        "{} warnings:\n{}",
        noisy.len(),
        noisy.join("\n")
    );
    assert!(!log.contains("logind refused"), "{log}");
    assert_eq!(recorded_own_locks(&env), Vec::<String>::new());
    env.wait_inhibitor(None).await;

    env.set_locks_writable(true);
    env.wait_locks(&[]).await;
    ok(&env.cli(&["take", "app0001"]));
    ok(&env.cli(&["release", "app0001"]));
}
