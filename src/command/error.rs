//! How a command fails, in words the adapters map to their own errors
//! (HTTP statuses, D-Bus error names).

use crate::gate::Blocker;
use crate::locks::own::OwnLockError;
use crate::names::NameError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{}; not going to {action} (force overrides)", describe(.blocked_by))]
    Locked {
        blocked_by: Vec<Blocker>,
        action: String,
    },
    #[error(transparent)]
    OwnLock(#[from] OwnLockError),
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit what it names (a v1 route on an app of
    /// several services).
    #[error("{0}")]
    Invalid(String),
    /// The app's state does not allow it now (a purge of an app that is
    /// down for an unhealthy release).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
    #[error("holdfastd is shutting down")]
    Unavailable,
}

/// `update locks are held by app1/main; the lock state of a/x is not known
/// (holdfast locks says why)`.
pub fn describe(blockers: &[Blocker]) -> String {
    let mut locks = Vec::new();
    let mut unknown = Vec::new();
    let mut parts = Vec::new();
    for b in blockers {
        match b {
            Blocker::Lock(id) => locks.push(id.to_string()),
            Blocker::Unknown(id) => unknown.push(id.to_string()),
            Blocker::LockRoot => parts.push("the lock directories cannot be read".to_owned()),
            Blocker::LockMounts => {
                parts.push("the containers' lock mounts were not looked at yet".to_owned())
            }
            Blocker::Powering => parts.push("a reboot or power-off is under way".to_owned()),
            Blocker::Updating(app) => parts.push(format!("app {app} is being updated")),
            Blocker::FleetSlot(s) => parts.push(format!("no fleet slot is free in group {s}")),
            Blocker::Window(s) => parts.push(format!("the maintenance window is {s}")),
        }
    }
    if !unknown.is_empty() {
        parts.insert(
            0,
            format!(
                "the lock state of {} is not known (holdfast locks says why)",
                unknown.join(", ")
            ),
        );
    }
    if !locks.is_empty() {
        parts.insert(0, format!("update locks are held by {}", locks.join(", ")));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::ServiceId;

    #[test]
    fn blockers_read_as_a_sentence() {
        let id = |s: &str| ServiceId::parse(s).unwrap();
        assert_eq!(
            describe(&[
                Blocker::LockRoot,
                Blocker::Unknown(id("a/x")),
                Blocker::Lock(id("b/y")),
                Blocker::Lock(id("b/z")),
            ]),
            "update locks are held by b/y, b/z; the lock state of a/x is not known \
             (holdfast locks says why); \
             the lock directories cannot be read"
        );
        let e = CommandError::Locked {
            blocked_by: vec![Blocker::Lock(id("app1/main"))],
            action: "reboot".into(),
        };
        assert_eq!(
            e.to_string(),
            "update locks are held by app1/main; not going to reboot (force overrides)"
        );
    }
}
