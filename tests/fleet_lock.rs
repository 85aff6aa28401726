//! Fleet-wide reboot slots against a real three-member etcd cluster
//! (Debian's etcd-server on loopback) and several holdfastd, each with its
//! own bus, logind and lock root. The harness's logind refuses every
//! reboot (no service manager on the private bus), so "asked logind to
//! reboot" is what the CLI reports as "logind refused to reboot", and
//! every refused reboot gives its slot back.
#![cfg(feature = "fleet")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::etcd::Cluster;
use common::{ok, wait_for, Env};
use serde_json::Value;

const KEY: &str = "com.coreos.airlock/groups/default/v1/semaphore";

fn fleet_config(id: &str, cluster: &Cluster, extra: &str) -> String {
    format!(
        "[fleet]\nid = \"{id}\"\n[fleet.lock]\nbackend = \"etcd\"\nendpoints = {}\nlease_ttl = \"2s\"\n{extra}",
        cluster.toml_endpoints()
    )
}

async fn fleet(env: &Env) -> Value {
    serde_json::from_str(&env.supervisor().await.fleet().await.unwrap()).unwrap()
}

/// airlock's canonical value: sorted unique holders, nothing else.
fn semaphore(value: &str) -> (u64, Vec<String>) {
    let v: Value = serde_json::from_str(value).unwrap();
    let total = v["total_slots"].as_u64().unwrap();
    let holders: Vec<String> = v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    let mut canonical = holders.clone();
    canonical.sort();
    canonical.dedup();
    assert_eq!(holders, canonical, "holders not sorted and unique: {value}");
    assert_eq!(
        value,
        format!(
            "{{\"total_slots\":{total},\"holders\":{}}}",
            serde_json::to_string(&holders).unwrap()
        ),
        "not airlock's exact encoding"
    );
    (total, holders)
}

/// airlock's compare-and-swap, done by etcdctl: read, then write only if
/// the key is still at the revision read. Retries until it goes through.
fn external_cas(cluster: &Cluster, change: impl Fn(u64, &[String]) -> Option<Vec<String>>) {
    loop {
        let (value, rev) = cluster.get(KEY, 0).expect("semaphore exists");
        let (total, holders) = semaphore(&value);
        let Some(new) = change(total, &holders) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let new = format!(
            "{{\"total_slots\":{total},\"holders\":{}}}",
            serde_json::to_string(&new).unwrap()
        );
        let txn = format!(
            "mod(\"{KEY}\") = \"{rev}\"\n\nput {KEY} {}\n\n\n",
            serde_json::to_string(&new).unwrap()
        );
        let out = cluster.ctl_stdin(&["txn"], &txn);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.starts_with("SUCCESS") {
            return;
        }
        // While a killed member's election runs, a txn can time out (and
        // may still have gone through): airlock reads again and retries,
        // and so does this writer; its changes are idempotent.
        let err = String::from_utf8_lossy(&out.stderr);
        let transient = [
            "request timed out",
            "Unavailable",
            "deadline exceeded",
            "leader changed",
        ]
        .iter()
        .any(|t| err.contains(t));
        if transient {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert!(text.starts_with("FAILURE"), "etcdctl txn: {text}{err}");
    }
}

fn put(cluster: &Cluster, value: &str) {
    ok(&cluster.ctl(&["put", KEY, value]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_at_every_revision_with_a_member_killed_and_an_external_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 3);
    let start_rev = cluster.revision();
    let mut devices: Vec<Env> = Vec::new();
    for id in ["dev-a", "dev-b", "dev-c", "dev-d"] {
        let env = Env::new();
        env.write_config(&fleet_config(id, &cluster, ""));
        devices.push(env);
    }
    for env in &mut devices[..3] {
        env.start_daemon().await;
    }
    // dev-d's app holds its lock the whole time.
    devices[3].start_with_app1_main_locked().await;

    // The run goes on until every device has had a slot, a member has been
    // killed and some reboot got a slot after that (an election, or a
    // proposal lost with the killed leader, can stall etcd for its request
    // timeout), and the external writer is done: events, with a bound.
    let killed_at = std::sync::Mutex::new(None::<Instant>);
    let asked_after_kill = AtomicUsize::new(0);
    let devices_asked = AtomicUsize::new(0);
    let writer_rounds = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for env in &devices[..3] {
            let (killed_at, asked_after_kill) = (&killed_at, &asked_after_kill);
            let (devices_asked, stop) = (&devices_asked, &stop);
            s.spawn(move || {
                let mut asked = 0;
                while !stop.load(Ordering::SeqCst) {
                    let out = env.cli(&["reboot"]);
                    let err = String::from_utf8_lossy(&out.stderr);
                    if err.contains("logind refused to reboot") {
                        asked += 1;
                        if asked == 1 {
                            devices_asked.fetch_add(1, Ordering::SeqCst);
                        }
                        if killed_at.lock().unwrap().is_some() {
                            asked_after_kill.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        assert!(
                            err.contains("no fleet slot is free in group default ("),
                            "{err}\n{}",
                            env.log()
                        );
                        assert_eq!(out.status.code(), Some(75), "{err}");
                    }
                    std::thread::sleep(Duration::from_millis(30));
                }
                assert!(asked > 0, "never got a slot:\n{}", env.log());
            });
        }
        let locked = &devices[3];
        let stop = &stop;
        s.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = locked.cli(&["reboot"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("update locks are held by app1/main"), "{err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // An airlock-style writer takes and gives back a slot, five times.
        let (cluster, writer_rounds) = (&cluster, &writer_rounds);
        s.spawn(move || {
            for _ in 0..5 {
                external_cas(cluster, |total, h| {
                    // Taken already (a timed-out write that went through).
                    if h.iter().any(|x| x == "ext") {
                        return Some(h.to_vec());
                    }
                    ((h.len() as u64) < total).then(|| {
                        let mut h = h.to_vec();
                        h.push("ext".into());
                        h.sort();
                        h
                    })
                });
                std::thread::sleep(Duration::from_millis(200));
                // After a timed-out removal that went through, ext is gone
                // by our own hand: the check holds for the first read only.
                let first = std::cell::Cell::new(true);
                external_cas(cluster, |_, h| {
                    assert!(
                        !first.replace(false) || h.contains(&"ext".to_owned()),
                        "our slot was lost: {h:?}"
                    );
                    Some(h.iter().filter(|x| *x != "ext").cloned().collect())
                });
                std::thread::sleep(Duration::from_millis(300));
                writer_rounds.fetch_add(1, Ordering::SeqCst);
            }
        });
        let until = |what: &str, bound: Duration, done: &dyn Fn() -> bool| {
            let start = Instant::now();
            while !done() {
                if start.elapsed() > bound {
                    stop.store(true, Ordering::SeqCst);
                    panic!("{what} within {bound:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        until(
            "not every device got a slot",
            Duration::from_secs(60),
            &|| devices_asked.load(Ordering::SeqCst) == 3,
        );
        cluster.kill(0);
        *killed_at.lock().unwrap() = Some(Instant::now());
        until(
            "no reboot got a slot after a member was killed",
            Duration::from_secs(60),
            &|| asked_after_kill.load(Ordering::SeqCst) >= 3,
        );
        until(
            "the external writer did not finish",
            Duration::from_secs(60),
            &|| writer_rounds.load(Ordering::SeqCst) == 5,
        );
        stop.store(true, Ordering::SeqCst);
    });

    // Every revision since the start: at most one holder, never dev-d,
    // airlock's exact encoding.
    let end_rev = cluster.revision();
    let mut seen = BTreeSet::new();
    let mut last_mod = 0;
    let mut ext_rounds = 0;
    let mut had_ext = false;
    for rev in start_rev..=end_rev {
        let Some((value, m)) = cluster.get(KEY, rev) else {
            continue;
        };
        if m == last_mod {
            continue;
        }
        last_mod = m;
        let (total, holders) = semaphore(&value);
        assert_eq!(total, 1);
        assert!(holders.len() <= 1, "revision {rev}: {holders:?}");
        let has_ext = holders.contains(&"ext".to_owned());
        if has_ext && !had_ext {
            ext_rounds += 1;
        }
        had_ext = has_ext;
        seen.extend(holders);
    }
    assert_eq!(
        seen,
        ["dev-a", "dev-b", "dev-c", "ext"]
            .map(String::from)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(ext_rounds, 5, "each of the writer's slots is one interval");
    let (value, _) = cluster.get(KEY, 0).unwrap();
    assert_eq!(
        value, r#"{"total_slots":1,"holders":[]}"#,
        "a slot was lost"
    );
}

#[tokio::test]
async fn a_holder_killed_with_sigkill_is_reported_stale_then_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 3);
    // dev-a holds a slot (taken before its reboot) and its apps are not
    // healthy yet (no engine), so it keeps it.
    put(&cluster, r#"{"total_slots":1,"holders":["dev-a"]}"#);
    let mut a = Env::new();
    a.write_config(&fleet_config("dev-a", &cluster, ""));
    std::fs::create_dir_all(a.state()).unwrap();
    std::fs::write(
        a.target_file(),
        r#"{"version":1,"apps":{"app1":{"release":"r1","services":{"main":{"image":"x:1"}}}}}"#,
    )
    .unwrap();
    a.start_daemon().await;
    let mut b = Env::new();
    b.write_config(&fleet_config("dev-b", &cluster, "stale_after = \"4s\"\n"));
    b.start_daemon().await;
    wait_for(Duration::from_secs(10), || async {
        let f = fleet(&b).await;
        f["lock"]["holders"] == serde_json::json!(["dev-a"]) && f["lock"].get("stale").is_none()
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "b never saw dev-a as a live holder: {}\n{}\n{}",
            status_json(&b),
            b.log(),
            a.log()
        )
    });
    assert_eq!(fleet(&a).await["lock"]["held"], true);

    a.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    wait_for(Duration::from_secs(10), || async {
        fleet(&b).await["lock"]["stale"] == serde_json::json!(["dev-a"])
    })
    .await
    .unwrap_or_else(|_| panic!("dev-a never reported stale: {}", b.log()));
    let stale_after = killed.elapsed();
    let out = ok(&b.cli(&["status"]));
    assert!(out.contains("stale: dev-a"), "{out}");
    assert!(b
        .log()
        .contains("fleet slot holder dev-a has no live liveness key: stale"));
    // Still held: removed only under stale_after.
    assert_eq!(
        cluster.get(KEY, 0).unwrap().0,
        r#"{"total_slots":1,"holders":["dev-a"]}"#
    );
    wait_for(Duration::from_secs(15), || async {
        cluster.get(KEY, 0).unwrap().0 == r#"{"total_slots":1,"holders":[]}"#
    })
    .await
    .unwrap_or_else(|_| panic!("stale dev-a never removed: {}", b.log()));
    assert!(
        killed.elapsed() >= stale_after + Duration::from_secs(3),
        "removed before stale_after"
    );
    assert!(b.log().contains("removed stale fleet slot holders dev-a"));
}

#[tokio::test]
async fn a_pending_reboot_waits_for_a_slot_and_the_slot_is_given_back_once_steady() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 3);
    // dev-a comes back from a reboot still holding its slot: no target, so
    // it is steady at once and gives the slot back.
    put(&cluster, r#"{"total_slots":2,"holders":["dev-a","ext"]}"#);
    let mut a = Env::new();
    a.write_config(&fleet_config("dev-a", &cluster, ""));
    a.start_daemon().await;
    wait_for(Duration::from_secs(10), || async {
        cluster.get(KEY, 0).unwrap().0 == r#"{"total_slots":2,"holders":["ext"]}"#
    })
    .await
    .unwrap_or_else(|_| panic!("dev-a kept its slot: {}", a.log()));
    assert!(a.log().contains("fleet slot given back in group default"));

    // One slot, held by someone else: the pending reboot waits, and says so.
    put(&cluster, r#"{"total_slots":1,"holders":["ext"]}"#);
    ok(&a.cli(&["reboot", "--when-unlocked"]));
    wait_for(Duration::from_secs(10), || async {
        fleet(&a).await["lock"]["blocked_by"]
            == serde_json::json!(["fleet-slot:default (1/1 held)"])
    })
    .await
    .unwrap_or_else(|_| panic!("no blocked_by: {}", a.log()));
    let status: Value = serde_json::from_str(&ok(&a.cli(&["status", "--json"]))).unwrap();
    assert_eq!(status["fleet"]["id"], "dev-a");
    assert_eq!(status["fleet"]["id_source"], "config");
    assert_eq!(status["fleet"]["group"], "default");
    assert_eq!(
        status["fleet"]["lock"]["blocked_by"],
        serde_json::json!(["fleet-slot:default (1/1 held)"])
    );
    let text = ok(&a.cli(&["status"]));
    assert!(
        text.contains("reboot waiting (fleet-slot:default (1/1 held))"),
        "{text}"
    );
    assert!(!a.log().contains("logind refused to reboot"));
    // The slot frees: the reboot goes (logind refuses it here) and gives
    // the slot back.
    external_cas(&cluster, |_, _| Some(Vec::new()));
    a.wait_log(
        "logind refused to reboot",
        Duration::from_secs(40),
        "the reboot never went",
    )
    .await;
    wait_for(Duration::from_secs(10), || async {
        cluster.get(KEY, 0).unwrap().0 == r#"{"total_slots":1,"holders":[]}"#
    })
    .await
    .unwrap();
}

fn status_json(env: &Env) -> String {
    String::from_utf8_lossy(&env.cli(&["status", "--json"]).stdout).into_owned()
}

/// No [fleet] id and no config.json: the id systemd derives for our app id.
#[tokio::test]
async fn the_fleet_id_defaults_to_config_json_then_the_machine_id() {
    let mut env = Env::new();
    env.start_daemon().await;
    let f = fleet(&env).await;
    let out = std::process::Command::new("systemd-id128")
        .args([
            "machine-id",
            "--app-specific=4b21fc4d66754b0e9924c623ae68c1d3",
        ])
        .output()
        .unwrap();
    assert_eq!(f["id"], String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(f["id_source"], "machine-id (app-specific)");
    assert_eq!(f["group"], "default");
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
    std::fs::write(env.dir.join("boot/config.json"), r#"{"uuid":"5e3c0ffee"}"#).unwrap();
    env.write_config("[fleet]\ngroup = \"canary\"\n");
    env.start_daemon().await;
    let f = fleet(&env).await;
    assert_eq!(f["id"], "5e3c0ffee");
    assert_eq!(f["id_source"], "config.json uuid");
    assert_eq!(f["group"], "canary");
    let text = ok(&env.cli(&["status"]));
    assert!(
        text.contains("fleet: id 5e3c0ffee (config.json uuid), group canary"),
        "{text}"
    );
}

/// `updates = true`: an app apply waits for a slot, takes it, and gives it
/// back once the release is applied and healthy.
#[tokio::test]
async fn with_updates_an_app_apply_takes_a_slot_and_gives_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 3);
    put(&cluster, r#"{"total_slots":1,"holders":["ext"]}"#);
    let mut env = Env::with_docker();
    env.write_config(&fleet_config("dev-a", &cluster, "updates = true\n"));
    env.start_daemon().await;
    let image = env.busybox_image();
    ok(&env.apply(&common::engine::release(&image, 1)));
    let st = env.wait_app("app1", "waiting").await;
    assert_eq!(
        st["blocked_by"],
        serde_json::json!(["fleet-slot:default (1/1 held)"]),
        "{st}"
    );
    let rev0 = cluster.revision();
    external_cas(&cluster, |_, _| Some(Vec::new()));
    env.wait_app("app1", "applied").await;
    wait_for(Duration::from_secs(10), || async {
        cluster.get(KEY, 0).unwrap().0 == r#"{"total_slots":1,"holders":[]}"#
    })
    .await
    .unwrap_or_else(|_| panic!("the slot was not given back: {}", env.log()));
    let held: Vec<i64> = (rev0..=cluster.revision())
        .filter(|r| {
            cluster
                .get(KEY, *r)
                .is_some_and(|(v, _)| v == r#"{"total_slots":1,"holders":["dev-a"]}"#)
        })
        .collect();
    assert!(
        !held.is_empty(),
        "dev-a never held the slot while applying: {:?}\n{}",
        (rev0..=cluster.revision())
            .map(|r| cluster.get(KEY, r))
            .collect::<Vec<_>>(),
        env.log()
    );
    assert!(env.log().contains("fleet slot taken in group default"));
}

/// etcd with authentication: `user` and `password_file`.
#[tokio::test]
async fn etcd_with_a_user_and_password() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 1);
    let root = "--user=root:rootpw";
    ok(&cluster.ctl(&["user", "add", "root", "--new-user-password=rootpw"]));
    ok(&cluster.ctl(&["user", "add", "dev", "--new-user-password=devpw"]));
    ok(&cluster.ctl(&["role", "add", "fleet"]));
    ok(&cluster.ctl(&[
        "role",
        "grant-permission",
        "fleet",
        "readwrite",
        "com.",
        "--prefix=true",
    ]));
    ok(&cluster.ctl(&["user", "grant-role", "dev", "fleet"]));
    ok(&cluster.ctl(&["auth", "enable"]));
    let mut env = Env::new();
    std::fs::write(env.dir.join("etcd-password"), "devpw\n").unwrap();
    env.write_config(&fleet_config(
        "dev-a",
        &cluster,
        &format!(
            "user = \"dev\"\npassword_file = \"{}\"\n",
            env.dir.join("etcd-password").display()
        ),
    ));
    env.start_daemon().await;
    let out = env.cli(&["reboot"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("logind refused to reboot"),
        "{err}\n{}",
        env.log()
    );
    assert!(env.log().contains("fleet slot taken in group default"));
    let out = ok(&cluster.ctl(&["get", KEY, "--print-value-only", root]));
    assert_eq!(out.trim(), r#"{"total_slots":1,"holders":[]}"#);
    // A wrong password takes nothing: the reboot is refused.
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    std::fs::write(env.dir.join("etcd-password"), "wrong\n").unwrap();
    env.start_daemon().await;
    let out = env.cli(&["reboot"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fleet-slot") || err.contains("no fleet slot"),
        "{err}"
    );
    assert!(env.log().contains("etcd refused user dev"), "{}", env.log());
}

/// The order: the window first. A pending reboot in a closed window takes
/// no slot (a device would sit on it for days); once a window is open it
/// takes the slot, reboots (refused here) and gives it back.
#[tokio::test]
async fn a_closed_window_takes_no_slot() {
    use common::periodic_window as periodic;
    use jiff::{Timestamp, ToSpan};
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 1);
    put(&cluster, r#"{"total_slots":1,"holders":[]}"#);
    let mut env = Env::new();
    let config = |window: String| format!("{window}{}", fleet_config("dev-w", &cluster, ""));
    env.write_config(&config(periodic(Timestamp::now() + 72.hours(), 60)));
    env.start_daemon().await;
    // The liveness key (on its lease) moves the store's revision; the
    // semaphore's own mod revision is what must stay.
    let sem_rev = || cluster.get(KEY, 0).unwrap().1;
    let rev0 = sem_rev();
    ok(&env.cli(&["reboot", "--when-unlocked"]));
    env.wait_log(
        "pending reboot waits: the maintenance window is closed until",
        Duration::from_secs(10),
        "the pending reboot did not say it waits for the window",
    )
    .await;
    let out = env.cli(&["reboot"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert_eq!(
        sem_rev(),
        rev0,
        "the semaphore was touched in a closed window: {}",
        env.log()
    );

    // A window open now: slot, reboot (refused here), slot given back.
    env.write_config(&config(periodic(Timestamp::now() - 30.minutes(), 120)));
    env.reload();
    env.wait_log(
        "logind refused to reboot",
        Duration::from_secs(20),
        "the reboot never went",
    )
    .await;
    assert!(env.log().contains("fleet slot taken in group default"));
    wait_for(Duration::from_secs(10), || async {
        cluster.get(KEY, 0).unwrap().0 == r#"{"total_slots":1,"holders":[]}"#
    })
    .await
    .unwrap_or_else(|_| panic!("the slot was not given back: {}", env.log()));
}
