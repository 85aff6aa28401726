//! The wait between an app's passes: what ends it (a new target, its
//! locks gone, its retry time, the engine settings, a request, or a crash
//! the watch after the last pass saw), and the requests served meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use super::request::PurgeReply;
use super::{AppRequest, AppTask, Rejected};
use crate::command::CommandError;
use crate::gate::{self, Decision};
use crate::locks::state::Owner;
use crate::model::Snapshot;
use crate::names::{AppName, ServiceName};
use crate::target::AppTarget;
use crate::timer::sleep_until;
use crate::update::machine::{Machine, Phase};

pub(super) type CrashWatch = Pin<Box<dyn Future<Output = Vec<(ServiceName, String)>> + Send>>;

/// The crash watch after a pass that started containers. It outlives the
/// wait it began in: kept across passes of the same target (an update
/// check, a retry) until it ends or a later pass starts a new one; dropped
/// when the target changes or a purge removes the containers.
pub(super) struct Watch {
    pub(super) crashes: CrashWatch,
    /// Services stopped, started or restarted on request meanwhile: their
    /// exit is no crash, and the release is not judged healthy by it.
    pub(super) asked: BTreeSet<ServiceName>,
}

/// Why the wait between passes ended.
pub(super) enum Wake {
    Run,
    Stop,
    /// A container the last pass started crashed: the release is unhealthy.
    Crashed(String),
    /// A purge removed the app's containers and volumes (or failed
    /// midway): apply the app again, then answer.
    Reapply(PurgeReply, Result<Vec<String>, CommandError>),
}

impl AppTask {
    /// What the wait after a pass asks: a new release waits for its locks
    /// and the maintenance window; a repair (rollback, after a purge) for
    /// its locks only.
    fn gate(&self, snap: &Snapshot, forced_by: Option<&str>) -> Decision {
        match self.repairing {
            true => gate::update(snap, &self.app, forced_by),
            false => gate::apply(snap, &self.app, forced_by),
        }
    }

    /// Waits for a reason to run a pass again: a new target, the locks
    /// that held it back gone, its retry time, the engine settings, a
    /// request, or a crash the watch after the last pass saw (the watch
    /// goes on after the wait unless it ended in it). `down`: why a purge
    /// is refused (a rejected release and no pass to bring the app back).
    pub(super) async fn wait_for_reason(
        &mut self,
        machine: &mut Machine,
        images: &BTreeMap<String, u8>,
        seen: &Option<AppTarget>,
        forced_by: &mut Option<String>,
        watch: &mut Option<Watch>,
        down: Option<String>,
    ) -> Wake {
        loop {
            let retry_at = machine.retry_at().map(tokio::time::Instant::from_std);
            tokio::select! {
                crashes = async { (&mut watch.as_mut().expect("watched").crashes).await }, if watch.is_some() => {
                    let asked = watch.take().expect("watched").asked;
                    let mut crashes = crashes.into_iter().filter(|(s, _)| !asked.contains(s));
                    if let Some((_, why)) = crashes.next() {
                        return Wake::Crashed(why);
                    }
                    // Judged healthy only when every container was watched
                    // through the window.
                    if let (Some(t), true) = (seen, asked.is_empty()) {
                        let exec = self.exec.borrow().clone();
                        exec.remember_healthy(&self.app, t).await;
                    }
                    crate::memory::give_back();
                }
                r = self.target.changed() => {
                    if r.is_err() { return Wake::Stop }
                    if self.app_target() != *seen { break }
                }
                r = self.snapshot.changed(), if machine.waits_on_locks() => {
                    if r.is_err() { return Wake::Stop }
                    let snap = self.snapshot.borrow_and_update().clone();
                    match self.gate(&snap, None) {
                        Decision::Blocked(b) => {
                            let b: Vec<String> = b.iter().map(ToString::to_string).collect();
                            if matches!(machine.phase(), Phase::Waiting { blocked_by, .. } if *blocked_by != b) {
                                machine.wait(b);
                                self.publish(machine, images);
                            }
                        }
                        // Held back by holdfast's own locks of the app (an
                        // operator's `take`): they must go first, not merely
                        // anything change.
                        _ if waits_on_own_locks(machine) && holds_own_locks(&snap, &self.app) => {}
                        _ => {
                            tracing::info!(app = %self.app, "locks of app {} cleared; resuming its update", self.app);
                            break;
                        }
                    }
                }
                _ = sleep_until(retry_at) => break,
                r = self.exec.changed() => {
                    if r.is_err() { return Wake::Stop }
                    break;
                }
                req = self.requests.recv() => match req {
                    None => return Wake::Stop,
                    Some(AppRequest::Check { forced_by: f }) => {
                        *forced_by = f;
                        break;
                    }
                    Some(AppRequest::Restart { force, who, reply }) => {
                        let r = self.restart(force, &who).await;
                        if let (true, Some(w)) = (r.is_ok(), watch.as_mut()) {
                            w.asked.extend(self.services.keys().filter_map(|s| ServiceName::new(s.as_str()).ok()));
                        }
                        let _ = reply.send(r);
                    }
                    Some(AppRequest::Service { action, service, force, who, reply }) => {
                        let r = self.service_action(action, service, force, &who).await;
                        if let (Ok((s, _)), Some(w)) = (&r, watch.as_mut()) {
                            w.asked.insert(s.clone());
                        }
                        let _ = reply.send(r.map(|(_, id)| id));
                        self.refresh_health(machine, images).await;
                    }
                    Some(AppRequest::Purge { force, who, reply }) => {
                        let r = match &down {
                            Some(why) => Err(CommandError::Conflict(why.clone())),
                            None => self.purge(force, &who).await,
                        };
                        match r {
                            // Refused before anything was touched: no pass.
                            Err(refused) => drop(reply.send(Err(refused))),
                            Ok(r) => {
                                // Forced through a lock: so is the apply after it.
                                if force && r.is_ok() {
                                    *forced_by = Some(who);
                                }
                                // Its containers are gone on request.
                                *watch = None;
                                return Wake::Reapply(reply, r);
                            }
                        }
                    }
                    Some(AppRequest::DeviceStopping) => self.stopping = true,
                },
            }
        }
        Wake::Run
    }
}

/// Why a purge is refused while a release is rejected with no healthy
/// release to fall back on: the pass after the purge would not bring the
/// app back, and its data would be gone for good. Either the app is down,
/// or it runs the containers the failed pass started again (a purge
/// removes them).
pub(super) fn purge_refusal(app: &AppName, r: &Rejected) -> String {
    let why = &r.reason;
    match r.put_back {
        false => format!(
            "app {app} is down (its release is not healthy and there is no healthy release to \
             roll back to: {why}); purging its data now would leave it down without them. \
             Apply a new target or force an update first"
        ),
        true => format!(
            "app {app} runs its previous containers again (its release failed after they were \
             stopped: {why}); purging now would remove them and leave the app with nothing to \
             run. Apply a new target or force an update first"
        ),
    }
}

fn waits_on_own_locks(machine: &Machine) -> bool {
    matches!(machine.phase(), Phase::Waiting { blocked_by, .. }
        if !blocked_by.is_empty() && blocked_by.iter().all(|b| b.starts_with("holdfast:")))
}

/// Whether the table shows a lock of `app` that holdfast holds.
fn holds_own_locks(snap: &Snapshot, app: &AppName) -> bool {
    snap.table
        .locks()
        .any(|(id, l)| id.app == *app && l.owner() == Owner::Holdfast)
}
