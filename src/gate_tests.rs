//! The gate as tables: locks, unknowns, a blind root, misplaced lock
//! mounts, the override and powering.

use std::sync::Arc;

use super::*;
use crate::devconfig::Override;
use crate::locks::state::{LockEntry, LockEvent, LockTable, Misplaced};

fn id(s: &str) -> ServiceId {
    ServiceId::parse(s).unwrap()
}

fn app(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

/// A snapshot from a list of `(service, state)`: "app", "own", "unknown",
/// "misplaced" (a container mounts another directory), "misplaced-held"
/// (and holdfast holds the lock there).
fn snap(locks: &[(&str, &str)]) -> Snapshot {
    let mut t = LockTable::default();
    t.apply(LockEvent::OwnTokens(["own".to_string()].into()));
    let misplaced = locks
        .iter()
        .filter(|(_, how)| how.starts_with("misplaced"))
        .map(|(s, how)| {
            let m = Misplaced {
                reason: format!("container {s} mounts /old/{s}"),
                held: *how == "misplaced-held",
            };
            (id(s), m)
        })
        .collect();
    t.apply(LockEvent::Mounts(misplaced));
    for (i, (s, how)) in locks.iter().enumerate() {
        if how.starts_with("misplaced") {
            continue;
        }
        if *how == "unknown" {
            t.apply(LockEvent::ServiceUnreadable {
                id: id(s),
                reason: "EMFILE".into(),
            });
            continue;
        }
        t.apply(LockEvent::ServiceObserved {
            id: id(s),
            entries: vec![LockEntry::test_file(
                i as u64,
                (*how == "own").then_some("own"),
            )],
        });
    }
    Snapshot {
        table: Arc::new(t),
        ..Default::default()
    }
}

fn blockers(d: Decision) -> Vec<String> {
    match d {
        Decision::Blocked(b) => b.iter().map(ToString::to_string).collect(),
        other => panic!("not blocked: {other:?}"),
    }
}

#[test]
fn update_decisions() {
    let a1 = app("app1");
    let s = snap(&[("app1/main", "app"), ("app2/web", "app"), ("app1/w", "own")]);
    // (snapshot, forced, expected)
    assert_eq!(blockers(update(&s, &a1, None)), ["lock:app1/main"]);
    assert_eq!(update(&s, &app("app3"), None), Decision::Go);
    assert_eq!(
        update(&snap(&[("app1/w", "own")]), &a1, None),
        Decision::Go,
        "holdfast's own locks hold nothing back"
    );
    assert_eq!(
        update(&s, &a1, Some("root")),
        Decision::Through {
            why: "forced by root".into(),
            passed: vec![Blocker::Lock(id("app1/main"))]
        }
    );
    let unknown = snap(&[("app1/main", "unknown")]);
    assert_eq!(blockers(update(&unknown, &a1, None)), ["unknown:app1/main"]);
    assert_eq!(update(&unknown, &app("app2"), None), Decision::Go);
}

#[test]
fn blind_blocks_everything_and_override_passes_everything() {
    let mut s = snap(&[]);
    Arc::make_mut(&mut s.table).apply(LockEvent::Blind("EMFILE".into()));
    assert_eq!(blockers(update(&s, &app("any"), None)), ["lock-root"]);
    assert_eq!(blockers(power(&s, None)), ["lock-root"]);
    s.lock_override = Override {
        enabled: true,
        source: "BALENA_SUPERVISOR_OVERRIDE_LOCK".into(),
        error: None,
    };
    assert!(matches!(
        update(&s, &app("any"), None),
        Decision::Through { .. }
    ));
    assert!(power(&s, None).allowed());
    assert_eq!(inhibitor_why(&s), None, "override: no inhibitor");
}

#[test]
fn power_decisions() {
    assert_eq!(power(&snap(&[("a/x", "own")]), None), Decision::Go);
    let s = snap(&[("b/y", "app"), ("a/x", "unknown")]);
    assert_eq!(blockers(power(&s, None)), ["unknown:a/x", "lock:b/y"]);
    assert!(power(&s, Some("root")).allowed());
    let mut powering = snap(&[]);
    powering.powering = true;
    assert_eq!(blockers(power(&powering, Some("root"))), ["powering"]);
    assert_eq!(
        blockers(update(&powering, &app("a"), Some("root"))),
        ["powering"]
    );
}

#[test]
fn inhibitor_follows_locks_unknowns_and_blindness() {
    assert_eq!(inhibitor_why(&snap(&[])), None);
    assert_eq!(
        inhibitor_why(&snap(&[("app1/worker", "app"), ("app1/main", "own")])).unwrap(),
        "update lock held by app1/main, app1/worker"
    );
    assert_eq!(
        inhibitor_why(&snap(&[("a/x", "unknown")])).unwrap(),
        "update lock held by a/x"
    );
    let many: Vec<String> = (0..12).map(|i| format!("a/s{i:02}")).collect();
    let locks: Vec<(&str, &str)> = many.iter().map(|s| (s.as_str(), "app")).collect();
    let why = inhibitor_why(&snap(&locks)).unwrap();
    assert!(why.ends_with("a/s09, and 2 more"), "{why}");
    let mut s = snap(&[]);
    Arc::make_mut(&mut s.table).apply(LockEvent::Blind("EMFILE".into()));
    assert_eq!(
        inhibitor_why(&s).unwrap(),
        "update locks cannot be read: EMFILE"
    );
    s.powering = true;
    assert_eq!(inhibitor_why(&s), None);
}

#[test]
fn a_misplaced_lock_mount_binds_like_an_unknown_lock() {
    let a1 = app("app1");
    let s = snap(&[("app1/main", "misplaced"), ("app2/web", "app")]);
    assert_eq!(blockers(update(&s, &a1, None)), ["unknown:app1/main"]);
    assert_eq!(blockers(apply(&s, &a1, None)), ["unknown:app1/main"]);
    assert_eq!(update(&s, &app("app3"), None), Decision::Go);
    assert_eq!(
        blockers(power(&s, None)),
        ["unknown:app1/main", "lock:app2/web"]
    );
    assert_eq!(
        inhibitor_why(&s).unwrap(),
        "update lock held by app1/main, app2/web"
    );
    assert!(update(&s, &a1, Some("root")).allowed(), "a force passes it");
    // holdfast holds the lock in the directory the container sees: no
    // more than its own locks (the container is being made again); the
    // inhibitor stays.
    let held = snap(&[("app1/main", "misplaced-held")]);
    assert_eq!(update(&held, &a1, None), Decision::Go);
    assert_eq!(power(&held, None), Decision::Go);
    assert_eq!(
        inhibitor_why(&held).unwrap(),
        "update lock held by app1/main"
    );
}

#[test]
fn containers_not_listed_yet_hold_back_updates_not_power() {
    let s = Snapshot::default();
    assert_eq!(blockers(update(&s, &app("app1"), None)), ["lock-mounts"]);
    assert_eq!(blockers(apply(&s, &app("app1"), None)), ["lock-mounts"]);
    assert!(update(&s, &app("app1"), Some("root")).allowed());
    assert_eq!(power(&s, None), Decision::Go);
    assert_eq!(inhibitor_why(&s), None);
}
