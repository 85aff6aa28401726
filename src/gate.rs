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
    /// This service's lock directory could not be read, or a container of
    /// it mounts another directory than the watched one: it binds.
    Unknown(ServiceId),
    /// The engine's containers were not listed yet: one may mount a lock
    /// directory holdfast does not watch (only at start, or while the
    /// engine has never answered).
    LockMounts,
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
            Blocker::LockMounts => f.write_str("lock-mounts"),
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
    decide(s, |id| id.app == *app, !s.table.mounts_known(), forced_by)
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

/// Powering off the device: every app's locks. Containers not listed yet
/// do not hold it back: an engine that never answers must not keep the
/// device from rebooting (what was listed binds, `Unknown`).
pub fn power(s: &Snapshot, forced_by: Option<&str>) -> Decision {
    decide(s, |_| true, false, forced_by)
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
    unlisted: bool,
    forced_by: Option<&str>,
) -> Decision {
    if s.powering {
        return Decision::Blocked(vec![Blocker::Powering]);
    }
    let mut blockers: Vec<Blocker> = Vec::new();
    if s.table.blind().is_some() {
        blockers.push(Blocker::LockRoot);
    }
    if unlisted {
        blockers.push(Blocker::LockMounts);
    }
    for id in s.table.held_by_apps().into_iter().filter(|id| concerns(id)) {
        let unknown = s.table.get(id).is_some_and(|l| l.unseen().is_some());
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
#[path = "gate_tests.rs"]
mod tests;
