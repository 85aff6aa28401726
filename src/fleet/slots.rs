//! The fleet slot task: owns the backend (etcd or FleetLock), takes and
//! gives back this device's slot when the power path or an app apply asks
//! ([`Slots`]),
//! keeps our etcd liveness key alive, reports stale holders (and removes
//! them under `stale_after`), and gives the slot back once the device is
//! up again with every app applied and healthy (FleetLock's
//! `steady-state`).

mod liveness;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::etcd::{Etcd, Taken};
use super::fleetlock::{Answer, FleetLock};
use super::semaphore::Semaphore;
use super::{FleetStatus, SlotStatus};
use crate::config::{FleetLockSettings, LockBackend};
use crate::model::{AppState, Snapshot, UpdateStatus};
use crate::target::Target;

/// A release that failed (etcd or the server unreachable) is tried again
/// this often.
const RELEASE_RETRY: Duration = Duration::from_secs(5);

/// What asking for a slot came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Granted,
    /// No slot now; the blocker as status shows it, e.g.
    /// `default (2/2 held)` (shown as `fleet-slot:default (2/2 held)`).
    NotGranted(String),
}

/// Who in holdfast holds the device's one slot: `reboot`, or
/// `app:<name>` for an app apply (`updates = true`). The slot is given
/// back when the last of them lets go.
enum Request {
    Take(String, oneshot::Sender<Result<Grant, String>>),
    Release(String, oneshot::Sender<()>),
}

/// The power path's handle on the slot task.
#[derive(Clone)]
pub struct Slots {
    tx: mpsc::Sender<Request>,
    /// `[fleet.lock] reboots`.
    pub reboots: bool,
    /// `[fleet.lock] updates`.
    pub updates: bool,
    pub group: String,
}

impl Slots {
    /// One attempt for `purpose` (the caller retries with its own
    /// back-off).
    pub async fn take(&self, purpose: &str) -> Result<Grant, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Take(purpose.to_owned(), reply))
            .await
            .map_err(|_| "the fleet slot task is gone".to_owned())?;
        rx.await
            .map_err(|_| "the fleet slot task is gone".to_owned())?
    }

    /// `purpose` lets go; the slot goes back when nothing else holds it
    /// (the task retries until it is done).
    pub async fn release(&self, purpose: &str) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Request::Release(purpose.to_owned(), reply))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

enum Backend {
    Etcd(Box<Etcd>),
    FleetLock(FleetLock),
    /// Why no backend could be made.
    Unusable(String),
}

pub struct FleetTask {
    pub id: String,
    pub group: String,
    pub settings: FleetLockSettings,
    pub status: watch::Sender<FleetStatus>,
    pub apps: watch::Receiver<UpdateStatus>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub snapshot: watch::Receiver<Snapshot>,
}

/// Every app of the target applied, every service healthy (or running,
/// without a healthcheck); no target (nothing to run) counts as steady.
pub fn steady(target: Option<&Target>, u: &UpdateStatus) -> bool {
    let Some(t) = target else {
        return true;
    };
    u.target
        && u.engine == "available"
        && t.apps.keys().all(|name| {
            u.apps.get(name.as_str()).is_some_and(|a| {
                a.state == AppState::Applied
                    && a.services
                        .values()
                        .all(|s| s.health == "healthy" || s.health == "running")
            })
        })
}

struct Run {
    id: String,
    group: String,
    settings: FleetLockSettings,
    backend: Backend,
    status: watch::Sender<FleetStatus>,
    lease: Option<i64>,
    /// Give the slot back once steady: set at start (a slot taken before
    /// the reboot), cleared once done or when this run takes one.
    release_when_steady: bool,
    /// A release asked for that has not gone through yet.
    release_owed: bool,
    stale_since: HashMap<String, Instant>,
    /// Purposes holding the slot in this run.
    holds: BTreeSet<String>,
}

impl FleetTask {
    /// A backend that cannot be made (a TLS file that does not read) is
    /// an error every slot request gets: reboots wait, they never go
    /// without a slot.
    pub fn start(self) -> (Slots, impl std::future::Future<Output = ()>) {
        let backend = match &self.settings.backend {
            LockBackend::Etcd {
                endpoints,
                user,
                password_file,
                tls,
            } => Etcd::new(endpoints, user.clone(), password_file.clone(), tls)
                .map(|e| Backend::Etcd(Box::new(e))),
            LockBackend::Fleetlock { url, tls } => FleetLock::new(url, tls).map(Backend::FleetLock),
        };
        let backend = backend.unwrap_or_else(|e| {
            let e = format!("fleet slots unavailable: {e}");
            tracing::error!(error = %e, "{e}; reboots wait for a slot that cannot be taken");
            self.status.send_modify(|f| {
                if let Some(l) = f.lock.as_mut() {
                    l.error = Some(e.clone());
                }
            });
            Backend::Unusable(e)
        });
        let (tx, rx) = mpsc::channel(4);
        let slots = Slots {
            tx,
            reboots: self.settings.reboots,
            updates: self.settings.updates,
            group: self.group.clone(),
        };
        let run = Run {
            id: self.id,
            group: self.group,
            settings: self.settings,
            backend,
            status: self.status,
            lease: None,
            release_when_steady: true,
            release_owed: false,
            stale_since: HashMap::new(),
            holds: BTreeSet::new(),
        };
        (slots, run.run(rx, self.apps, self.target, self.snapshot))
    }
}

impl Run {
    fn set(&self, f: impl FnOnce(&mut SlotStatus)) {
        self.status.send_if_modified(|s| {
            let Some(l) = s.lock.as_mut() else {
                return false;
            };
            let before = l.clone();
            f(l);
            *l != before
        });
    }

    fn show(&self, sem: &Semaphore) {
        let held = sem.holders.contains(&self.id);
        self.set(|l| {
            l.total_slots = Some(sem.total_slots);
            l.set_holders(&sem.holders);
            l.held = held;
            l.error = None;
        });
    }

    fn failed(&self, e: &str) {
        self.set(|l| l.error = Some(e.to_owned()));
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut apps: watch::Receiver<UpdateStatus>,
        mut target: watch::Receiver<Option<Arc<Target>>>,
        mut snapshot: watch::Receiver<Snapshot>,
    ) {
        let ttl = self.settings.lease_ttl;
        let etcd = matches!(self.backend, Backend::Etcd(_));
        // Keepalive at a third of the TTL; look at the holders at half.
        let mut keepalive = tokio::time::interval((ttl / 3).max(Duration::from_millis(500)));
        let mut poll =
            tokio::time::interval((ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)));
        let mut retry = tokio::time::interval(RELEASE_RETRY);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now_steady = {
                let t = target.borrow_and_update().clone();
                steady(t.as_deref(), &apps.borrow_and_update())
            };
            if self.release_when_steady && now_steady {
                tracing::info!(id = %self.id, group = %self.group,
                    "apps applied and healthy: giving the fleet slot back (if held)");
                self.release_when_steady = false;
                self.release_owed = true;
            }
            if self.release_owed {
                self.release_owed = !self.release().await;
            }
            if snapshot.borrow_and_update().pending_reboot.is_none() {
                self.set(|l| l.blocked_by.clear());
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Some(Request::Take(purpose, reply)) => {
                        self.release_when_steady = false;
                        self.release_owed = false;
                        let r = self.take().await;
                        if matches!(r, Ok(Grant::Granted)) {
                            self.holds.insert(purpose);
                        }
                        let _ = reply.send(r);
                    }
                    Some(Request::Release(purpose, reply)) => {
                        self.holds.remove(&purpose);
                        if self.holds.is_empty() {
                            self.release_owed = !self.release().await;
                        } else {
                            tracing::info!(purpose = %purpose, still = ?self.holds,
                                "{purpose} lets go of the fleet slot; still held for {}",
                                self.holds.iter().cloned().collect::<Vec<_>>().join(", "));
                        }
                        let _ = reply.send(());
                    }
                    None => return,
                },
                _ = keepalive.tick(), if etcd => self.keep_alive().await,
                _ = poll.tick(), if etcd => self.look().await,
                _ = retry.tick(), if self.release_owed => {}
                r = apps.changed() => if r.is_err() { return },
                r = target.changed() => if r.is_err() { return },
                r = snapshot.changed() => if r.is_err() { return },
            }
        }
    }

    async fn take(&mut self) -> Result<Grant, String> {
        let (id, group) = (self.id.clone(), self.group.clone());
        if id.is_empty() {
            return Err("no fleet id (no [fleet] id, config.json uuid or /etc/machine-id)".into());
        }
        let r = match &mut self.backend {
            Backend::Etcd(e) => e.take(&group, &id).await.map(|t| match t {
                Taken::Granted(s) => (Grant::Granted, Some(s)),
                Taken::Full(s) => (
                    Grant::NotGranted(format!("{group} ({})", s.describe())),
                    Some(s),
                ),
            }),
            Backend::FleetLock(f) => f.pre_reboot(&id, &group).await.map(|a| match a {
                Answer::Granted => (Grant::Granted, None),
                Answer::Refused(why) => (Grant::NotGranted(format!("{group} ({why})")), None),
            }),
            Backend::Unusable(e) => Err(e.clone()),
        };
        match r {
            Ok((grant, sem)) => {
                if let Some(s) = &sem {
                    self.show(s);
                }
                let granted = grant == Grant::Granted;
                let blocked: Vec<String> = match &grant {
                    Grant::Granted => {
                        tracing::info!(id = %id, group = %group, "fleet slot taken in group {group}");
                        Vec::new()
                    }
                    Grant::NotGranted(b) => {
                        tracing::info!(id = %id, group = %group, "no fleet slot free: {b}");
                        vec![format!("fleet-slot:{b}")]
                    }
                };
                self.set(|l| {
                    l.blocked_by = blocked;
                    l.error = None;
                    if granted {
                        l.held = true;
                    }
                });
                Ok(grant)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a fleet slot: {e}");
                self.set(|l| {
                    l.blocked_by = vec![format!("fleet-slot:{group} (unreachable)")];
                    l.error = Some(e.clone());
                });
                Err(e)
            }
        }
    }

    /// `true` when done (or nothing was held).
    async fn release(&mut self) -> bool {
        let (id, group) = (self.id.clone(), self.group.clone());
        if id.is_empty() {
            return true;
        }
        let r = match &mut self.backend {
            Backend::Etcd(e) => e.release(&group, &[&id]).await.map(|was| {
                if was {
                    tracing::info!(id = %id, group = %group, "fleet slot given back in group {group}");
                }
            }),
            Backend::FleetLock(f) => match f.steady_state(&id, &group).await {
                Ok(Answer::Granted) => {
                    tracing::info!(id = %id, group = %group, "steady-state: fleet slot given back");
                    Ok(())
                }
                Ok(Answer::Refused(why)) => Err(format!("steady-state refused: {why}")),
                Err(e) => Err(e),
            },
            // Nothing can be given back; the status shows why.
            Backend::Unusable(_) => return true,
        };
        match r {
            Ok(()) => {
                self.set(|l| {
                    l.held = false;
                    if let Some(i) = l.holders.iter().position(|h| *h == id) {
                        l.holders.remove(i);
                        l.holder_count = l.holder_count.saturating_sub(1);
                    }
                    l.error = None;
                });
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot give the fleet slot back yet: {e}");
                self.failed(&e);
                false
            }
        }
    }
}

/// The status the daemon publishes before the task has looked.
pub fn initial(settings: &FleetLockSettings) -> SlotStatus {
    SlotStatus {
        backend: settings.backend.name().into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppStatus, ServiceStatus};

    #[test]
    fn steady_means_every_target_app_applied_and_healthy() {
        let target: Target = serde_json::from_str(
            r#"{"version":1,"apps":{"app1":{"release":"r1","services":{"main":{"image":"x:1"}}}}}"#,
        )
        .unwrap();
        let mut u = UpdateStatus {
            engine: "unknown".into(),
            ..Default::default()
        };
        assert!(steady(None, &u), "nothing to run");
        assert!(!steady(Some(&target), &u), "not looked yet");
        u.target = true;
        u.engine = "available".into();
        let mut app = AppStatus::new(AppState::Waiting, "r1");
        u.apps.insert("app1".into(), app.clone());
        assert!(!steady(Some(&target), &u));
        app.state = AppState::Applied;
        app.services.insert(
            "main".into(),
            ServiceStatus {
                health: "starting".into(),
            },
        );
        u.apps.insert("app1".into(), app.clone());
        assert!(!steady(Some(&target), &u));
        app.services.get_mut("main").unwrap().health = "healthy".into();
        u.apps.insert("app1".into(), app);
        assert!(steady(Some(&target), &u));
        u.engine = "unavailable: gone".into();
        assert!(!steady(Some(&target), &u));
    }
}
