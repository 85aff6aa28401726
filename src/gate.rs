//! The one place that answers "may we act now?": update or restart an app,
//! reboot or power off, hold the block inhibitor. Pure: a [`Snapshot`] in,
//! a [`Decision`] out; every caller asks here and nowhere else.

use std::fmt;

use crate::model::Snapshot;
use crate::names::{AppName, ServiceId};

/// Services named in the inhibitor's `why` before it says "and N more".
const WHY_MAX_NAMES: usize = 10;

/// What holds an action back; shown as `blocked_by` entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocker {
    /// An app holds this service's update lock.
    Lock(ServiceId),
    /// This service's lock directory could not be read: it binds.
    Unknown(ServiceId),
    /// The lock root cannot be watched: every lock binds.
    LockRoot,
    /// holdfast is rebooting or powering off.
    Powering,
    /// holdfast is updating this app (it holds the app's locks).
    Updating(AppName),
    /// No fleet-wide slot free: `default (2/2 held)`.
    FleetSlot(String),
    /// Outside every maintenance window: `closed until Mon 22:30 CET`.
    Window(String),
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Lock(id) => write!(f, "lock:{id}"),
            Blocker::Unknown(id) => write!(f, "unknown:{id}"),
            Blocker::LockRoot => f.write_str("lock-root"),
            Blocker::Powering => f.write_str("powering"),
            Blocker::Updating(app) => write!(f, "updating:{app}"),
            Blocker::FleetSlot(s) => write!(f, "fleet-slot:{s}"),
            Blocker::Window(s) => write!(f, "window:{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing holds it back.
    Go,
    /// Locks would hold it back, but the override or a force passes them.
    Through {
        why: String,
        passed: Vec<Blocker>,
    },
    Blocked(Vec<Blocker>),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        !matches!(self, Decision::Blocked(_))
    }
}

/// Restarting or stopping `app`'s services, or removing its volumes: its
/// locks decide. `forced_by` names who forced it once, if anyone did.
pub fn update(s: &Snapshot, app: &AppName, forced_by: Option<&str>) -> Decision {
    decide(s, |id| id.app == *app, forced_by)
}

/// Applying a new release of `app`: its locks and the maintenance window.
pub fn apply(s: &Snapshot, app: &AppName, forced_by: Option<&str>) -> Decision {
    in_window(s, update(s, app, forced_by), forced_by)
}

/// The maintenance window alone: what holds back the first change of what
/// runs in an apply whose plan takes no lock (a new app, a new service).
pub fn window(s: &Snapshot, forced_by: Option<&str>) -> Option<Blocker> {
    closed_window(s).filter(|_| forced_by.is_none())
}

fn closed_window(s: &Snapshot) -> Option<Blocker> {
    s.window_closed.clone().map(Blocker::Window)
}

/// Powering off the device: every app's locks.
pub fn power(s: &Snapshot, forced_by: Option<&str>) -> Decision {
    decide(s, |_| true, forced_by)
}

/// Rebooting the device: every app's locks and the maintenance window.
pub fn reboot(s: &Snapshot, forced_by: Option<&str>) -> Decision {
    in_window(s, power(s, forced_by), forced_by)
}

/// A closed window holds back what the locks let through, unless someone
/// forced it (the lock override is about locks, not windows).
fn in_window(s: &Snapshot, locks: Decision, forced_by: Option<&str>) -> Decision {
    let Some(window) = closed_window(s) else {
        return locks;
    };
    match (locks, forced_by) {
        (Decision::Blocked(mut b), _) => {
            b.insert(0, window);
            Decision::Blocked(b)
        }
        (Decision::Through { why, mut passed }, Some(_)) => {
            passed.insert(0, window);
            Decision::Through { why, passed }
        }
        (Decision::Go, Some(who)) => Decision::Through {
            why: format!("forced by {who}"),
            passed: vec![window],
        },
        (Decision::Go | Decision::Through { .. }, None) => Decision::Blocked(vec![window]),
    }
}

fn decide(
    s: &Snapshot,
    concerns: impl Fn(&ServiceId) -> bool,
    forced_by: Option<&str>,
) -> Decision {
    if s.powering {
        return Decision::Blocked(vec![Blocker::Powering]);
    }
    let mut blockers: Vec<Blocker> = Vec::new();
    if s.table.blind().is_some() {
        blockers.push(Blocker::LockRoot);
    }
    for id in s.table.held_by_apps().into_iter().filter(|id| concerns(id)) {
        let unknown = s.table.get(id).is_some_and(|l| l.unknown.is_some());
        blockers.push(match unknown {
            true => Blocker::Unknown(id.clone()),
            false => Blocker::Lock(id.clone()),
        });
    }
    if blockers.is_empty() {
        return Decision::Go;
    }
    if s.lock_override.enabled {
        return Decision::Through {
            why: format!("lock override {}", s.lock_override.describe()),
            passed: blockers,
        };
    }
    match forced_by {
        Some(who) => Decision::Through {
            why: format!("forced by {who}"),
            passed: blockers,
        },
        None => Decision::Blocked(blockers),
    }
}

/// What a forced action went through, for its log line.
pub fn passed_what(passed: &[Blocker]) -> &'static str {
    let window = passed.iter().any(|b| matches!(b, Blocker::Window(_)));
    match (window, passed.len()) {
        (false, _) => "update locks",
        (true, 1) => "the closed maintenance window",
        (true, _) => "the closed maintenance window and update locks",
    }
}

/// The block inhibitor's `why` while one should be held: while any lock
/// exists (holdfast's own included) or the locks cannot be seen; none
/// while powering (it would refuse our own request from systemd 257 on)
/// or under the lock override (locks hold nothing back then).
pub fn inhibitor_why(s: &Snapshot) -> Option<String> {
    if s.powering || s.lock_override.enabled {
        return None;
    }
    let ids = s.table.locked_ids();
    let blind = s.table.blind();
    if ids.is_empty() {
        return blind.map(|r| format!("update locks cannot be read: {r}"));
    }
    let mut names: Vec<String> = ids
        .iter()
        .take(WHY_MAX_NAMES)
        .map(|id| id.to_string())
        .collect();
    if ids.len() > WHY_MAX_NAMES {
        names.push(format!("and {} more", ids.len() - WHY_MAX_NAMES));
    }
    let mut why = format!("update lock held by {}", names.join(", "));
    if let Some(r) = blind {
        why.push_str(&format!("; locks cannot be read: {r}"));
    }
    Some(why)
}

#[cfg(test)]
#[path = "gate_window_tests.rs"]
mod window_tests;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::devconfig::Override;
    use crate::locks::state::{LockEntry, LockEvent, LockTable};

    fn id(s: &str) -> ServiceId {
        ServiceId::parse(s).unwrap()
    }

    fn app(s: &str) -> AppName {
        AppName::new(s).unwrap()
    }

    /// A snapshot from a list of `(service, state)`: "app", "own", "unknown".
    fn snap(locks: &[(&str, &str)]) -> Snapshot {
        let mut t = LockTable::default();
        t.apply(LockEvent::OwnTokens(["own".to_string()].into()));
        for (i, (s, how)) in locks.iter().enumerate() {
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
}
