//! One task per app: drives the app's [`Machine`] from its target, the
//! engine's containers and the gate. A long pull or hand-over of one app
//! never delays another app, and a locked app waits without polling: the
//! snapshot change that frees it resumes it at once.

mod pass;
mod record;
mod request;
mod restart;
mod service;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::exec::Executor;
use super::machine::{Machine, NOT_RETRIED};
use crate::command::{Command, CommandError, Handle};
use crate::fleet::slots::Slots;
use crate::logging::msgid;
use crate::model::{ServiceStatus, Snapshot, UpdateStatus};
use crate::names::{AppName, ServiceName};
use crate::target::{AppTarget, Target};
use record::Record;
use request::{not_done, PurgeReply};
pub use request::{send, AppRequest};
use wait::{purge_refusal, Wake, Watch};

/// How a pass ended.
enum Outcome {
    /// At the target; `gone` when the app has no target and no containers.
    Done {
        gone: bool,
    },
    Waiting(Vec<String>),
    /// The gate agreed, but no fleet slot is free (`[fleet.lock] updates`).
    SlotBusy(Vec<String>),
    EngineDown(String),
    Failed(String),
    /// The release's containers did not come up healthy.
    Unhealthy(String),
    /// The pass failed after it had stopped running containers, and started
    /// them again: a retry would stop them again.
    PutBack(String),
}

impl Outcome {
    /// The outcome with its text as it is shown (`record::shown_reason`).
    fn shown(self) -> Self {
        let shown = |e: String| record::shown_reason(&e);
        match self {
            Outcome::EngineDown(e) => Outcome::EngineDown(shown(e)),
            Outcome::Failed(e) => Outcome::Failed(shown(e)),
            Outcome::Unhealthy(e) => Outcome::Unhealthy(shown(e)),
            Outcome::PutBack(e) => Outcome::PutBack(shown(e)),
            other => other,
        }
    }
}

/// A release that came up unhealthy, or failed after the running
/// containers were stopped: not tried again until a new target or a forced
/// update; meanwhile the app runs `fallback` (its last healthy release),
/// when rolling back, or its previous containers, when `put_back`.
struct Rejected {
    reason: String,
    fallback: Option<AppTarget>,
    /// The failed pass started the previous containers again: the app runs
    /// them, and no pass runs.
    put_back: bool,
}

pub struct AppTask {
    pub app: AppName,
    pub handle: Handle,
    pub snapshot: watch::Receiver<Snapshot>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub exec: watch::Receiver<Executor>,
    pub status: watch::Sender<UpdateStatus>,
    pub requests: mpsc::UnboundedReceiver<AppRequest>,
    /// Each service's health as last seen.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Containers the last pass started that have no healthcheck: watched
    /// for a crash loop for a while after the pass.
    pub watch_after: Vec<(ServiceName, String)>,
    /// The device is shutting down (every container is being stopped): no
    /// service is started on request any more.
    pub stopping: bool,
    /// Fleet-wide slots, taken for an apply with `[fleet.lock] updates`.
    pub fleet: Option<Slots>,
    /// The pass under way (and the wait after it) puts back what ran: a
    /// rollback, or the app again after a purge. The maintenance window
    /// does not hold it back; the locks still do.
    pub repairing: bool,
}

/// How long a service without a healthcheck must keep running after its
/// start (at most `healthy_timeout`): an exit or a restart within it is a
/// crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(10);

/// What one pass works with and what it did to put back on failure.
#[derive(Default)]
struct Undo {
    locked: bool,
    /// The fleet slot was taken for this pass.
    slot: bool,
    /// Old containers stopped (not removed) in this pass.
    stopped: Vec<String>,
    /// New containers started in this pass.
    started: Vec<String>,
}

impl AppTask {
    pub async fn run(mut self) {
        let mut seen: Option<AppTarget> = None;
        let mut machine = Machine::new("");
        let mut forced_by: Option<String> = None;
        let mut images: BTreeMap<String, u8> = BTreeMap::new();
        let mut first = true;
        let mut rejected: Option<Rejected> = None;
        let mut watch: Option<Watch> = None;
        let mut crashed: Option<String> = None;
        let mut purged: Option<(PurgeReply, Result<Vec<String>, CommandError>)> = None;
        // The rejected release as recorded on disk (`record`).
        let mut kept: Option<Record> = None;
        loop {
            let target = self.app_target();
            if first || target != seen {
                machine.new_target(target.as_ref().map(|t| t.release.as_str()).unwrap_or(""));
                seen = target.clone();
                // Rejected before holdfastd restarted: still rejected.
                rejected = match first {
                    true => self.restore(target.as_ref(), &mut machine, &mut kept).await,
                    false => None,
                };
                first = false;
                // Its containers are replaced: what they do is no verdict.
                watch = None;
            }
            let forced = forced_by.take();
            let retried = forced.is_some() && rejected.take().is_some();
            if retried {
                machine.forced();
            }
            // An unhealthy release runs its fallback, or nothing at all.
            let (effective, rolling_back) = match (&rejected, &target) {
                (Some(r), Some(_)) => (r.fallback.clone(), r.fallback.is_some()),
                _ => (target.clone(), false),
            };
            let outcome = if let Some(why) = crashed.take() {
                Some(Outcome::Unhealthy(why))
            } else if rejected.is_some() && !rolling_back {
                None
            } else {
                self.repairing = rolling_back || purged.is_some();
                Some(
                    self.pass(
                        effective.as_ref(),
                        &mut machine,
                        forced,
                        &mut images,
                        retried,
                    )
                    .await,
                )
            };
            // Its text quotes the engine, which quotes the target (a
            // command, a path): escaped and bounded for the status and log.
            let outcome = outcome.map(Outcome::shown);
            if let Some((reply, r)) = purged.take() {
                let _ = reply.send(r.and_then(|v| match &outcome {
                    Some(Outcome::Done { gone: false }) => Ok(v),
                    other => Err(CommandError::Failed(format!(
                        "the data of app {} was removed, but the app did not come back: {}",
                        self.app,
                        not_done(other.as_ref())
                    ))),
                }));
            }
            let now = Instant::now();
            // Straight to the rollback pass, under the same gate.
            let mut again = false;
            if let Some(outcome) = outcome {
                self.refresh_health(&machine, &images).await;
                match outcome {
                    Outcome::Done { gone: false } if rolling_back => {
                        let r = rejected.as_ref().expect("rolling back");
                        let to = effective.as_ref().map(|t| t.release.clone());
                        tracing::warn!(message_id = msgid::UPDATE_FAILED, app = %self.app, rolled_back_to = ?to,
                            "app {} is back at its healthy release {}", self.app, to.as_deref().unwrap_or(""));
                        machine.unhealthy(r.reason.clone(), to);
                    }
                    Outcome::Done { gone: false } => {
                        machine.applied();
                        // What a later release rolls back to: only a release
                        // seen healthy (a pass with nothing to do judges
                        // nothing itself).
                        let healthy = self
                            .services
                            .values()
                            .all(|s| s.health == "healthy" || s.health == "running");
                        let exec = self.exec.borrow().clone();
                        // With containers still to watch, remembered once they
                        // made it through the window.
                        if let (Some(t), true, true) =
                            (&target, healthy, self.watch_after.is_empty())
                        {
                            exec.remember_healthy(&self.app, t).await;
                        }
                        if !self.watch_after.is_empty() {
                            let window = CRASH_WINDOW.min(exec.policy.healthy_timeout);
                            let watched = std::mem::take(&mut self.watch_after);
                            watch = Some(Watch {
                                crashes: Box::pin(exec.crash_watch(watched, window)),
                                asked: BTreeSet::new(),
                            });
                        }
                    }
                    Outcome::Unhealthy(e) | Outcome::PutBack(e) if rolling_back => {
                        let r = rejected.as_mut().expect("rolling back");
                        tracing::error!(message_id = msgid::UPDATE_FAILED, app = %self.app, error = %e,
                            "rolling app {} back failed too: {e}", self.app);
                        r.reason = format!("{}; rolling back failed too: {e}", r.reason);
                        r.fallback = None;
                        machine.unhealthy(r.reason.clone(), None);
                    }
                    Outcome::Unhealthy(e) => {
                        let fallback = self.fallback(target.as_ref()).await;
                        tracing::error!(message_id = msgid::UPDATE_FAILED, app = %self.app, error = %e,
                            rollback_to = ?fallback.as_ref().map(|f| f.release.clone()),
                            "release of app {} is not healthy: {e}", self.app);
                        again = fallback.is_some();
                        rejected = Some(Rejected {
                            reason: e.clone(),
                            fallback,
                            put_back: false,
                        });
                        machine.unhealthy(e, None);
                    }
                    Outcome::PutBack(e) => {
                        let release = machine.release().to_owned();
                        tracing::error!(message_id = msgid::UPDATE_FAILED, app = %self.app, release = %release, error = %e,
                            "release {release} of app {} failed after the pass stopped its running containers; \
                             {release} is {NOT_RETRIED}: {e}", self.app);
                        rejected = Some(Rejected {
                            reason: e.clone(),
                            fallback: None,
                            put_back: true,
                        });
                        machine.put_back(e);
                    }
                    Outcome::Done { gone: true } => {
                        self.keep_record(None, None, &mut kept).await;
                        self.status
                            .send_if_modified(|s| s.apps.remove(self.app.as_str()).is_some());
                        tracing::info!(app = %self.app, "app {} is gone", self.app);
                        return;
                    }
                    Outcome::Waiting(b) => {
                        tracing::info!(message_id = msgid::UPDATE_WAITING, app = %self.app, blocked_by = ?b,
                            "update of app {} waits: {}", self.app, b.join(", "));
                        machine.wait(b)
                    }
                    Outcome::SlotBusy(b) => {
                        tracing::info!(message_id = msgid::UPDATE_WAITING, app = %self.app, blocked_by = ?b,
                            "update of app {} waits for a fleet slot: {}", self.app, b.join(", "));
                        machine.slot_busy(b, now)
                    }
                    Outcome::EngineDown(e) => {
                        tracing::warn!(message_id = msgid::ENGINE_UNAVAILABLE, app = %self.app, error = %e,
                            "container engine unavailable; app {} retries", self.app);
                        machine.engine_down(now)
                    }
                    Outcome::Failed(e) => {
                        tracing::error!(message_id = msgid::UPDATE_FAILED, app = %self.app, error = %e,
                            "update of app {} failed: {e}", self.app);
                        machine.fail(e, now)
                    }
                }
            }
            self.keep_record(rejected.as_ref(), seen.as_ref(), &mut kept)
                .await;
            if again {
                continue;
            }
            images.clear();
            self.publish(&machine, &images);
            // The pass is over; the app idles from here, maybe for days.
            crate::memory::give_back();
            // Rejected with nothing to fall back on: a purge would leave the
            // app with nothing to run.
            let down = rejected
                .as_ref()
                .filter(|r| r.fallback.is_none())
                .map(|r| purge_refusal(&self.app, r));
            let woke = self
                .wait_for_reason(
                    &mut machine,
                    &images,
                    &seen,
                    &mut forced_by,
                    &mut watch,
                    down,
                )
                .await;
            match woke {
                Wake::Stop => return,
                Wake::Run => {}
                Wake::Crashed(why) => crashed = Some(why),
                Wake::Reapply(reply, r) => purged = Some((reply, r)),
            }
        }
    }

    /// The last healthy release to roll `target` back to, with `[update]
    /// rollback` and one known (told what this release's containers are
    /// told).
    async fn fallback(&self, target: Option<&AppTarget>) -> Option<AppTarget> {
        let exec = self.exec.borrow().clone();
        let t = target.filter(|_| exec.policy.rollback)?;
        exec.last_healthy(&self.app)
            .await
            .filter(|h| h.release != t.release)
            .map(|h| AppTarget {
                injected: t.injected.clone(),
                ..h
            })
    }

    /// Gives the app's locks back to the keeper (after an update or a
    /// restart).
    async fn release_locks(&self) -> Result<u32, CommandError> {
        let app = self.app.clone();
        self.handle
            .request(|reply| Command::ReleaseForUpdate { app, reply })
            .await?
    }

    /// The health of each of the app's services, from the engine's listing.
    async fn refresh_health(&mut self, machine: &Machine, images: &BTreeMap<String, u8>) {
        let exec = self.exec.borrow().clone();
        let Ok(containers) = exec.containers(Some(&self.app)).await else {
            return;
        };
        let mut services: BTreeMap<String, ServiceStatus> = BTreeMap::new();
        for c in containers {
            // Several containers of a service (mid-update): the running one.
            let running = c.state == crate::engine::RunState::Running;
            let entry = services.entry(c.service.to_string());
            match entry {
                std::collections::btree_map::Entry::Occupied(mut o) if running => {
                    o.insert(ServiceStatus { health: c.health });
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(ServiceStatus { health: c.health });
                }
            }
        }
        self.services = services;
        self.publish(machine, images);
    }

    fn app_target(&self) -> Option<AppTarget> {
        self.target
            .borrow()
            .as_ref()
            .and_then(|t| t.apps.get(&self.app).cloned())
    }

    fn publish(&self, machine: &Machine, images: &BTreeMap<String, u8>) {
        let mut st = machine.status(wall);
        st.images = images.clone();
        st.services = self.services.clone();
        self.status.send_if_modified(|s| {
            let old = s.apps.insert(self.app.to_string(), st.clone());
            old.as_ref() != Some(&st)
        });
    }
}

/// A monotonic deadline as wall-clock RFC 3339, for people.
fn wall(t: Instant) -> String {
    let ahead = t.saturating_duration_since(Instant::now()).as_micros() as u64;
    crate::model::utc(crate::model::now_usec().saturating_add(ahead))
}
