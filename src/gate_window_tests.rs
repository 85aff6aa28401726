//! The maintenance window in the gate: it holds back applies and reboots,
//! not restarts or power-offs; a force passes it, the lock override not.

use std::sync::Arc;

use super::*;
use crate::devconfig::Override;
use crate::locks::state::{LockEntry, LockEvent, LockTable};

fn snap(locked: bool, closed: bool) -> Snapshot {
    let mut t = LockTable::default();
    t.apply(LockEvent::Mounts(Default::default()));
    if locked {
        t.apply(LockEvent::ServiceObserved {
            id: ServiceId::parse("app1/main").unwrap(),
            entries: vec![LockEntry::test_file(1, None)],
        });
    }
    Snapshot {
        table: Arc::new(t),
        window_closed: closed.then(|| "closed until Mon 22:30 UTC".to_string()),
        ..Default::default()
    }
}

fn shown(d: Decision) -> String {
    match d {
        Decision::Go => "go".into(),
        Decision::Blocked(b) => format!("blocked {}", describe(&b)),
        Decision::Through { why, passed } => format!("through {} ({why})", describe(&passed)),
    }
}

fn describe(b: &[Blocker]) -> String {
    b.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn a_closed_window_holds_back_applies_and_reboots_only() {
    let app = AppName::new("app1").unwrap();
    let closed = snap(false, true);
    let window = "window:closed until Mon 22:30 UTC";
    assert_eq!(
        shown(apply(&closed, &app, None)),
        format!("blocked {window}")
    );
    assert_eq!(shown(reboot(&closed, None)), format!("blocked {window}"));
    assert_eq!(shown(update(&closed, &app, None)), "go", "a restart");
    assert_eq!(shown(power(&closed, None)), "go", "a power-off");
    let both = snap(true, true);
    assert_eq!(
        shown(apply(&both, &app, None)),
        format!("blocked {window}, lock:app1/main")
    );
    assert_eq!(
        shown(apply(&snap(true, false), &app, None)),
        "blocked lock:app1/main"
    );
    assert_eq!(shown(apply(&snap(false, false), &app, None)), "go");
}

#[test]
fn a_force_passes_the_window_and_the_override_does_not() {
    let app = AppName::new("app1").unwrap();
    let window = "window:closed until Mon 22:30 UTC";
    assert_eq!(
        shown(apply(&snap(false, true), &app, Some("root"))),
        format!("through {window} (forced by root)")
    );
    assert_eq!(
        shown(reboot(&snap(true, true), Some("root"))),
        format!("through {window}, lock:app1/main (forced by root)")
    );
    let mut over = snap(true, true);
    over.lock_override = Override {
        enabled: true,
        ..Default::default()
    };
    assert_eq!(shown(apply(&over, &app, None)), format!("blocked {window}"));
    over.window_closed = None;
    assert!(shown(apply(&over, &app, None)).starts_with("through lock:app1/main (lock override"));
}
