//! The logind `block` inhibitor: held exactly while at least one lock
//! exists. A subscriber of the lock table; the only code that calls
//! `org.freedesktop.login1.Manager.Inhibit`.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use zbus::zvariant::OwnedFd;
use zbus::{Connection, MatchRule, MessageStream};

use crate::devconfig::Override;
use crate::locks::LockTable;
use crate::logging::msgid;

pub const WHO: &str = "holdfast";
const LOGIND: &str = "org.freedesktop.login1";
/// Services named in `why` before it says "and N more".
const WHY_MAX_NAMES: usize = 10;

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
pub trait Login1Manager {
    fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> zbus::Result<OwnedFd>;

    fn reboot(&self, interactive: bool) -> zbus::Result<()>;

    fn power_off(&self, interactive: bool) -> zbus::Result<()>;

    #[allow(clippy::type_complexity)]
    fn list_inhibitors(&self) -> zbus::Result<Vec<(String, String, String, String, u32, u32)>>;

    #[zbus(signal)]
    fn prepare_for_shutdown(&self, start: bool) -> zbus::Result<()>;

    #[zbus(property, name = "InhibitDelayMaxUSec")]
    fn inhibit_delay_max_usec(&self) -> zbus::Result<u64>;
}

/// What the inhibitor should be right now: `Some(why)` while locked.
pub fn desired_why(table: &LockTable) -> Option<String> {
    let ids = table.locked_ids();
    if ids.is_empty() {
        return None;
    }
    let mut names: Vec<String> = ids
        .iter()
        .take(WHY_MAX_NAMES)
        .map(|id| id.to_string())
        .collect();
    if ids.len() > WHY_MAX_NAMES {
        names.push(format!("and {} more", ids.len() - WHY_MAX_NAMES));
    }
    Some(format!("update lock held by {}", names.join(", ")))
}

/// Published for status lines and D-Bus properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InhibitorStatus {
    pub held: bool,
    pub what: String,
    pub why: String,
    /// Why we could not take it, while we want it.
    pub error: Option<String>,
}

struct Held {
    what: String,
    why: String,
    _fd: OwnedFd,
}

/// Why [`run`] returned.
#[derive(Debug)]
pub enum Ended {
    /// The bus connection is gone; reconnect and call again.
    Disconnected,
    /// The lock table's publisher is gone: the daemon is stopping.
    Shutdown,
}

pub struct Inhibitor {
    held: Option<Held>,
}

impl Default for Inhibitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Inhibitor {
    pub fn new() -> Self {
        Self { held: None }
    }

    /// Follows the lock table on one bus connection until it ends. The held
    /// fd survives a reconnect (logind tracks the fd, not our connection).
    pub async fn run(
        &mut self,
        conn: &Connection,
        table: &mut watch::Receiver<Arc<LockTable>>,
        what: &mut watch::Receiver<String>,
        powering: &mut watch::Receiver<bool>,
        lock_override: &mut watch::Receiver<Override>,
        status: &watch::Sender<InhibitorStatus>,
    ) -> Ended {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.DBus")
            .and_then(|b| b.interface("org.freedesktop.DBus"))
            .and_then(|b| b.member("NameOwnerChanged"))
            .and_then(|b| b.add_arg(LOGIND))
            .map(|b| b.build());
        let rule = match rule {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "bad match rule");
                return Ended::Disconnected;
            }
        };
        let mut owners = match MessageStream::for_match_rule(rule, conn, Some(16)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch logind on the bus");
                return Ended::Disconnected;
            }
        };
        let login = match Login1ManagerProxy::new(conn).await {
            Ok(p) => p,
            Err(_) => return Ended::Disconnected,
        };
        // A new connection may mean logind restarted too: retake.
        let mut force = self.held.is_some();
        loop {
            // During our own reboot the inhibitor goes: from systemd 257 on
            // it would refuse our own request too. Under the lock override
            // locks hold nothing back, reboots included.
            let suspended =
                *powering.borrow_and_update() || lock_override.borrow_and_update().enabled;
            let want = match suspended {
                true => None,
                false => desired_why(&table.borrow_and_update()),
            };
            let what_arg = what.borrow_and_update().clone();
            self.reconcile(&login, want, what_arg, force, status).await;
            force = false;
            tokio::select! {
                r = table.changed() => if r.is_err() { return Ended::Shutdown },
                r = what.changed() => if r.is_err() { return Ended::Shutdown },
                r = powering.changed() => if r.is_err() { return Ended::Shutdown },
                r = lock_override.changed() => if r.is_err() { return Ended::Shutdown },
                msg = owners.next() => match msg {
                    Some(Ok(m)) => {
                        let new_owner = m.body().deserialize::<(String, String, String)>()
                            .map(|(_, _, new)| new).unwrap_or_default();
                        if new_owner.is_empty() {
                            tracing::warn!("logind left the bus; its inhibitors are gone");
                            self.held = None;
                        } else {
                            tracing::info!("logind (re)appeared on the bus");
                            force = true;
                        }
                    }
                    _ => return Ended::Disconnected,
                },
            }
        }
    }

    async fn reconcile(
        &mut self,
        login: &Login1ManagerProxy<'_>,
        want: Option<String>,
        what: String,
        force: bool,
        status: &watch::Sender<InhibitorStatus>,
    ) {
        let current = self
            .held
            .as_ref()
            .map(|h| (h.what.as_str(), h.why.as_str()));
        let unchanged = match (&want, current) {
            (None, None) => true,
            (Some(why), Some((w, y))) => !force && why == y && what == w,
            _ => false,
        };
        if unchanged {
            return;
        }
        let mut error = None;
        match want {
            Some(why) => match login.inhibit(&what, WHO, &why, "block").await {
                Ok(fd) => {
                    // New one first, then the old one goes: no gap.
                    let first = self.held.is_none();
                    self.held = Some(Held {
                        what: what.clone(),
                        why: why.clone(),
                        _fd: fd,
                    });
                    if first {
                        tracing::info!(message_id = msgid::INHIBITOR_TAKEN, what = %what, why = %why,
                            "logind block inhibitor taken");
                    } else {
                        tracing::debug!(what = %what, why = %why, "logind block inhibitor renewed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take a logind inhibitor; retrying when logind appears");
                    error = Some(e.to_string());
                    if force {
                        self.held = None;
                    }
                }
            },
            None => {
                self.held = None;
                tracing::info!(
                    message_id = msgid::INHIBITOR_RELEASED,
                    "logind block inhibitor released"
                );
            }
        }
        let new = match &self.held {
            Some(h) => InhibitorStatus {
                held: true,
                what: h.what.clone(),
                why: h.why.clone(),
                error,
            },
            None => InhibitorStatus {
                held: false,
                what,
                why: String::new(),
                error,
            },
        };
        status.send_replace(new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locks::state::{EntryKind, LockEntry, LockEvent};
    use crate::names::ServiceId;

    fn locked(ids: &[&str]) -> LockTable {
        let mut t = LockTable::default();
        for (i, id) in ids.iter().enumerate() {
            t.apply(LockEvent::ServiceObserved {
                id: ServiceId::parse(id).unwrap(),
                entries: vec![LockEntry {
                    name: "updates.lock".into(),
                    kind: EntryKind::File,
                    uid: 0,
                    mtime_usec: 0,
                    dev: 0,
                    ino: i as u64,
                    own_tag: false,
                }],
            });
        }
        t
    }

    #[test]
    fn why_names_the_locked_services() {
        assert_eq!(desired_why(&LockTable::default()), None);
        assert_eq!(
            desired_why(&locked(&["app1/worker", "app1/main"])).unwrap(),
            "update lock held by app1/main, app1/worker"
        );
        let many: Vec<String> = (0..12).map(|i| format!("a/s{i:02}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let why = desired_why(&locked(&refs)).unwrap();
        assert!(why.ends_with("a/s09, and 2 more"), "{why}");
    }
}
