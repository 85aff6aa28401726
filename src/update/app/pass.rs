//! One pass of an app: list its containers, plan, run the steps; at the
//! lock gate ask the gate, then the keeper; put back what a failed pass
//! changed.

use std::collections::BTreeMap;

use super::{AppTask, Outcome, Undo};
use crate::command::{Command, CommandError};
use crate::engine::EngineError;
use crate::fleet::slots::Grant;
use crate::gate::{self, Blocker, Decision};
use crate::locks::own::OwnLockError;
use crate::logging::msgid;
use crate::names::ServiceName;
use crate::target::AppTarget;
use crate::update::exec::{ExecError, Executor, Pass};
use crate::update::machine::Machine;
use crate::update::plan::{plan_blocking, volume_conflict, Step};

impl AppTask {
    pub(super) async fn pass(
        &mut self,
        target: Option<&AppTarget>,
        machine: &mut Machine,
        forced_by: Option<String>,
        images: &mut BTreeMap<String, u8>,
        verify_all: bool,
    ) -> Outcome {
        let exec = self.exec.borrow().clone();
        let current = match exec.containers(Some(&self.app)).await {
            Ok(c) => c,
            Err(e) => {
                if e.is_unavailable() {
                    crate::update::set_engine(&self.status, Err(e.to_string()));
                }
                return engine_outcome(e.into());
            }
        };
        crate::update::set_engine(&self.status, Ok(()));
        let (objects, volumes) = match exec.objects(&self.app, target).await {
            Ok(o) => o,
            Err(e) => return engine_outcome(e.into()),
        };
        if target.is_none()
            && current.is_empty()
            && objects.networks.is_empty()
            && (!objects.remove_volumes || objects.volumes.is_empty())
        {
            return Outcome::Done { gone: true };
        }
        if let Some(why) = target.and_then(|t| volume_conflict(&self.app, t, &volumes)) {
            return Outcome::Failed(why);
        }
        let present = match exec.present(target).await {
            Ok(p) => p,
            Err(e) => return engine_outcome(e.into()),
        };
        let mut steps = plan_blocking(&self.app, target, &current, &present, &objects).await;
        // A forced retry of a release that was not healthy judges every
        // service again, changed or not.
        if verify_all
            && !steps
                .iter()
                .any(|s| matches!(s, Step::VerifyHealthy { .. }))
        {
            if let Some(t) = target.filter(|t| !t.services.is_empty()) {
                steps.push(Step::VerifyHealthy {
                    services: t.services.keys().cloned().collect(),
                });
            }
        }
        if steps.is_empty() {
            return Outcome::Done { gone: false };
        }
        let release = target.map(|t| t.release.clone()).unwrap_or_default();
        // The steps name every service: counted, not listed, in one line.
        tracing::info!(app = %self.app, release = %crate::text::shown(&release), steps = steps.len(), "applying app {}", self.app);
        let pass = Pass {
            app: &self.app,
            target,
            release: &release,
        };
        let mut undo = Undo::default();
        let cx = StepCx {
            exec: &exec,
            pass,
            forced_by: forced_by.as_deref(),
        };
        let mut outcome = self
            .run_steps(&cx, &steps, machine, images, &mut undo)
            .await;
        let done = matches!(outcome, Outcome::Done { .. });
        // Services judged up only by running: watched a while longer.
        self.watch_after = match (done, target) {
            (true, Some(t)) => steps
                .iter()
                .filter_map(|s| match s {
                    Step::VerifyHealthy { services } => Some(services),
                    _ => None,
                })
                .flatten()
                .filter(|s| {
                    t.services
                        .get(*s)
                        .is_some_and(|spec| !spec.has_healthcheck())
                })
                .map(|s| (s.clone(), pass.container(s)))
                .collect(),
            _ => Vec::new(),
        };
        // A container the pass stopped runs again: a retry would stop it
        // again.
        let mut runs_again = false;
        if !done && (!undo.stopped.is_empty() || !undo.started.is_empty()) {
            // Put back what ran before: the new ones stop, the old ones start.
            tracing::warn!(app = %self.app, "apply failed midway; starting the previous containers again");
            let down = exec.put_back(&undo.started, &undo.stopped).await;
            runs_again = down.len() < undo.stopped.len();
            if !down.is_empty() && !undo.stopped.is_empty() {
                outcome = match outcome {
                    Outcome::Failed(e) => Outcome::Failed(previous_down(&e, &down)),
                    Outcome::Unhealthy(e) => Outcome::Unhealthy(previous_down(&e, &down)),
                    other => other,
                };
            }
        }
        outcome = after_put_back(outcome, runs_again);
        if undo.locked {
            if let Err(e) = self.release_locks().await {
                if done {
                    outcome = Outcome::Failed(e.to_string());
                }
            }
        }
        if undo.slot {
            // After the health check: the next device may go now.
            if let Some(s) = &self.fleet {
                s.release(&self.slot_purpose()).await;
            }
        }
        if target.is_none() && matches!(outcome, Outcome::Done { .. }) {
            // Out of the target and its containers removed: the app is gone
            // (not "applied" at release "").
            return Outcome::Done { gone: true };
        }
        if matches!(outcome, Outcome::Done { .. }) {
            tracing::info!(message_id = msgid::UPDATE_APPLIED, app = %self.app, release = %release,
                "app {} is at release {release}", self.app);
        }
        outcome
    }

    async fn run_steps(
        &self,
        cx: &StepCx<'_>,
        steps: &[Step],
        machine: &mut Machine,
        images: &mut BTreeMap<String, u8>,
        undo: &mut Undo,
    ) -> Outcome {
        let exec = cx.exec;
        let pass = cx.pass;
        let mut i = 0;
        let mut slot_asked = false;
        while i < steps.len() {
            // The window and the fleet slot before the first step that
            // changes what runs (taking the locks asks the lock gate again).
            let wave_starts = steps[i..]
                .iter()
                .take_while(|s| matches!(s, Step::Create { .. } | Step::Start { .. }))
                .any(changes_what_runs);
            if !slot_asked && (changes_what_runs(&steps[i]) || wave_starts) {
                slot_asked = true;
                match self.before_first_change(cx.forced_by).await {
                    Ok(taken) => undo.slot = taken,
                    Err(outcome) => return outcome,
                }
            }
            // Consecutive creates/starts run concurrently, dependencies first.
            let run = steps[i..]
                .iter()
                .take_while(|s| matches!(s, Step::Create { .. } | Step::Start { .. }))
                .count();
            if run > 1 {
                let wave = &steps[i..i + run];
                undo.started
                    .extend(wave.iter().filter_map(|s| started_name(pass, s)));
                if let Err(e) = exec.wave(pass, wave).await {
                    return exec_outcome(e);
                }
                i += run;
                continue;
            }
            let step = &steps[i];
            i += 1;
            let r = match step {
                Step::Pull { image } => {
                    let all: Vec<&str> = steps
                        .iter()
                        .filter_map(|s| match s {
                            Step::Pull { image } => Some(image.as_str()),
                            _ => None,
                        })
                        .collect();
                    if let Err(e) = self.pull(exec, image, &all, machine, images).await {
                        return engine_outcome(e.into());
                    }
                    continue;
                }
                Step::TakeLocks { services } => {
                    match self.take_locks(services, cx.forced_by).await {
                        Ok(()) => {
                            undo.locked = true;
                            machine.applying();
                            images.clear();
                            self.publish(machine, images);
                        }
                        Err(outcome) => return outcome,
                    }
                    continue;
                }
                Step::ReleaseLocks => {
                    undo.locked = false;
                    match self.release_locks().await {
                        Ok(_) => continue,
                        Err(e) => return Outcome::Failed(e.to_string()),
                    }
                }
                Step::Stop { id, .. } => {
                    let r = exec.step(pass, step).await;
                    if r.is_ok() {
                        undo.stopped.push(id.clone());
                    }
                    r
                }
                Step::Remove { id, .. } => {
                    undo.stopped.retain(|s| s != id);
                    exec.step(pass, step).await
                }
                Step::Start { .. } => {
                    undo.started.extend(started_name(pass, step));
                    exec.step(pass, step).await
                }
                // The locks are back and nothing is to be put back: an
                // unhealthy release is the task's to roll back.
                Step::VerifyHealthy { .. } => {
                    undo.started.clear();
                    undo.stopped.clear();
                    exec.step(pass, step).await
                }
                _ => exec.step(pass, step).await,
            };
            if let Err(e) = r {
                return exec_outcome(e);
            }
        }
        Outcome::Done { gone: false }
    }

    fn slot_purpose(&self) -> String {
        format!("app:{}", self.app)
    }

    /// Before the first step that changes what runs: the maintenance
    /// window (asked here because a plan may take no lock: a new app, or a
    /// container made in an earlier pass; a repair passes it), then, with
    /// `[fleet.lock] updates`, the lock gate (an app whose locks would hold
    /// the apply back takes no slot) and the fleet slot. `Ok(true)`: a slot
    /// taken, to be given back when the pass ends.
    async fn before_first_change(&self, forced_by: Option<&str>) -> Result<bool, Outcome> {
        let snap = self.snapshot.borrow().clone();
        if let Some(b) = gate::window(&snap, forced_by).filter(|_| !self.repairing) {
            return Err(Outcome::Waiting(vec![b.to_string()]));
        }
        let Some(slots) = self.fleet.as_ref().filter(|s| s.updates) else {
            return Ok(false);
        };
        if let Decision::Blocked(b) = gate::update(&snap, &self.app, forced_by) {
            return Err(Outcome::Waiting(
                b.iter().map(ToString::to_string).collect(),
            ));
        }
        match slots.take(&self.slot_purpose()).await {
            Ok(Grant::Granted) => Ok(true),
            Ok(Grant::NotGranted(b)) if forced_by.is_none() => {
                Err(Outcome::SlotBusy(vec![format!("fleet-slot:{b}")]))
            }
            Err(e) if forced_by.is_none() => {
                tracing::warn!(app = %self.app, error = %e, "cannot reach the fleet lock: {e}");
                Err(Outcome::SlotBusy(vec![format!(
                    "fleet-slot:{} (unreachable)",
                    slots.group
                )]))
            }
            Ok(Grant::NotGranted(b)) => {
                tracing::warn!(app = %self.app, "forced update of app {} without a fleet slot (fleet-slot:{b})", self.app);
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(app = %self.app, error = %e, "forced update of app {} without a fleet slot: {e}", self.app);
                Ok(false)
            }
        }
    }

    /// The lock gate, then every lock of the app (all-or-nothing). Locks
    /// only: restarts, stops and purges take them here too, and a pass has
    /// asked the maintenance window before its first change.
    pub(super) async fn take_locks(
        &self,
        services: &[ServiceName],
        forced_by: Option<&str>,
    ) -> Result<(), Outcome> {
        let snap = self.snapshot.borrow().clone();
        let through = match gate::update(&snap, &self.app, forced_by) {
            Decision::Blocked(b) => {
                return Err(Outcome::Waiting(
                    b.iter().map(ToString::to_string).collect(),
                ))
            }
            Decision::Through { why, passed } => {
                let names: Vec<String> = passed.iter().map(ToString::to_string).collect();
                tracing::warn!(message_id = msgid::UPDATE_FORCED, app = %self.app, locks = ?names,
                    "updating app {} through its locks {} ({why})", self.app, names.join(", "));
                true
            }
            Decision::Go => false,
        };
        let taken = self
            .handle
            .request(|reply| Command::TakeForUpdate {
                app: self.app.clone(),
                services: services.to_vec(),
                through,
                reply,
            })
            .await;
        match taken {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(CommandError::OwnLock(OwnLockError::Contended { id, .. }))) => {
                Err(Outcome::Waiting(vec![Blocker::Lock(id).to_string()]))
            }
            Ok(Err(CommandError::OwnLock(OwnLockError::AlreadyHeld { purpose, .. }))) => {
                let by = format!("{purpose:?}").to_lowercase();
                Err(Outcome::Waiting(vec![format!("holdfast:{by}")]))
            }
            Ok(Err(e)) | Err(e) => Err(Outcome::Failed(e.to_string())),
        }
    }

    async fn pull(
        &self,
        exec: &Executor,
        image: &str,
        all: &[&str],
        machine: &mut Machine,
        images: &mut BTreeMap<String, u8>,
    ) -> Result<(), EngineError> {
        let shown = crate::text::shown(image);
        tracing::info!(app = %self.app, image = %shown, "pulling {shown}");
        for i in all {
            images.entry((*i).to_owned()).or_insert(0);
        }
        let report = |pct: u8, machine: &mut Machine, images: &mut BTreeMap<String, u8>| {
            images.insert(image.to_owned(), pct);
            let sum: u32 = images.values().map(|p| u32::from(*p)).sum();
            let overall = (sum / images.len().max(1) as u32) as u8;
            machine.downloading(Some(overall));
            self.publish(machine, images);
        };
        report(0, machine, images);
        exec.pull(image, |pct| report(pct, machine, images)).await?;
        report(100, machine, images);
        Ok(())
    }
}

fn changes_what_runs(step: &Step) -> bool {
    matches!(
        step,
        Step::TakeLocks { .. } | Step::Stop { .. } | Step::Start { .. } | Step::Remove { .. }
    )
}

struct StepCx<'a> {
    exec: &'a Executor,
    pass: Pass<'a>,
    forced_by: Option<&'a str>,
}

fn started_name(pass: Pass<'_>, step: &Step) -> Option<String> {
    let Step::Start { service } = step else {
        return None;
    };
    pass.target?.services.get(service)?;
    Some(pass.container(service))
}

/// The keeper refused the app's locks because holdfast holds them already
/// (`holdfast:operator`, `holdfast:power`, ...).
fn engine_outcome(e: ExecError) -> Outcome {
    exec_outcome(e)
}

/// A pass that failed after it had stopped running containers, and started
/// (some of) them again (`runs_again`): retrying it would stop them again,
/// every time, so it is not retried on a timer. When none of them could be
/// started again, nothing of them runs for a retry to stop: it stays a
/// failure retried on the back-off, which may bring the app back (as the
/// put back did not). The engine gone midway stays an outage, retried
/// soon: nothing says the release is at fault.
fn after_put_back(outcome: Outcome, runs_again: bool) -> Outcome {
    match outcome {
        Outcome::Failed(e) | Outcome::Unhealthy(e) if runs_again => Outcome::PutBack(e),
        other => other,
    }
}

/// A pass's error, and that the containers it stopped could not be
/// started again: the app runs nothing of them now.
fn previous_down(e: &str, down: &[String]) -> String {
    format!(
        "{e}; the previous containers could not be started again ({})",
        down.join("; ")
    )
}

fn exec_outcome(e: ExecError) -> Outcome {
    if matches!(e, ExecError::Unhealthy { .. }) {
        Outcome::Unhealthy(e.to_string())
    } else if e.engine_unavailable() {
        Outcome::EngineDown(e.to_string())
    } else {
        Outcome::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests;
