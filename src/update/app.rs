//! One task per app: drives the app's [`Machine`] from its target, the
//! engine's containers and the gate. A long pull or hand-over of one app
//! never delays another app, and a locked app waits without polling: the
//! snapshot change that frees it resumes it at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use super::exec::{ExecError, Executor, Pass};
use super::machine::{Machine, Phase};
use super::plan::{container_name, plan, Step};
use crate::command::{Command, CommandError, Handle};
use crate::engine::{EngineError, RunState};
use crate::gate::{self, Blocker, Decision};
use crate::locks::own::OwnLockError;
use crate::locks::state::Owner;
use crate::logging::msgid;
use crate::model::{Snapshot, UpdateStatus};
use crate::names::{AppName, ServiceName};
use crate::target::{AppTarget, Target};

pub enum AppRequest {
    /// Run a pass now; `forced_by` goes through locks for this pass.
    Check { forced_by: Option<String> },
    Restart {
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
}

/// How a pass ended.
enum Outcome {
    /// At the target; `gone` when the app has no target and no containers.
    Done {
        gone: bool,
    },
    Waiting(Vec<String>),
    EngineDown(String),
    Failed(String),
}

pub struct AppTask {
    pub app: AppName,
    pub handle: Handle,
    pub snapshot: watch::Receiver<Snapshot>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub exec: watch::Receiver<Executor>,
    pub status: watch::Sender<UpdateStatus>,
    pub requests: mpsc::UnboundedReceiver<AppRequest>,
}

/// What one pass works with and what it did to put back on failure.
#[derive(Default)]
struct Undo {
    locked: bool,
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
        loop {
            let target = self.app_target();
            if first || target != seen {
                machine.new_target(target.as_ref().map(|t| t.release.as_str()).unwrap_or(""));
                seen = target.clone();
                first = false;
            }
            let outcome = self
                .pass(target.as_ref(), &mut machine, forced_by.take(), &mut images)
                .await;
            let now = Instant::now();
            match outcome {
                Outcome::Done { gone: true } => {
                    self.status
                        .send_if_modified(|s| s.apps.remove(self.app.as_str()).is_some());
                    tracing::info!(app = %self.app, "app {} is gone", self.app);
                    return;
                }
                Outcome::Done { gone: false } => machine.applied(),
                Outcome::Waiting(b) => {
                    tracing::info!(message_id = msgid::UPDATE_WAITING, app = %self.app, blocked_by = ?b,
                        "update of app {} waits: {}", self.app, b.join(", "));
                    machine.wait(b)
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
            images.clear();
            self.publish(&machine, &images);
            // Wait for a reason to run again.
            loop {
                let retry_at = machine.retry_at().map(tokio::time::Instant::from_std);
                tokio::select! {
                    r = self.target.changed() => {
                        if r.is_err() { return }
                        if self.app_target() != seen { break }
                    }
                    r = self.snapshot.changed(), if machine.waits_on_locks() => {
                        if r.is_err() { return }
                        let snap = self.snapshot.borrow_and_update().clone();
                        match gate::update(&snap, &self.app, None) {
                            Decision::Blocked(b) => {
                                let b: Vec<String> = b.iter().map(ToString::to_string).collect();
                                if matches!(machine.phase(), Phase::Waiting { blocked_by, .. } if *blocked_by != b) {
                                    machine.wait(b);
                                    self.publish(&machine, &images);
                                }
                            }
                            // Held back by holdfast's own locks of the app (an
                            // operator's `take`): they must go first, not merely
                            // anything change.
                            _ if waits_on_own_locks(&machine) && holds_own_locks(&snap, &self.app) => {}
                            _ => {
                                tracing::info!(app = %self.app, "locks of app {} cleared; resuming its update", self.app);
                                break;
                            }
                        }
                    }
                    _ = sleep_until(retry_at) => break,
                    r = self.exec.changed() => {
                        if r.is_err() { return }
                        break;
                    }
                    req = self.requests.recv() => match req {
                        None => return,
                        Some(AppRequest::Check { forced_by: f }) => {
                            forced_by = f;
                            break;
                        }
                        Some(AppRequest::Restart { force, who, reply }) => {
                            let r = self.restart(force, &who).await;
                            let _ = reply.send(r);
                        }
                    },
                }
            }
        }
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
        self.status.send_if_modified(|s| {
            let old = s.apps.insert(self.app.to_string(), st.clone());
            old.as_ref() != Some(&st)
        });
    }

    async fn pass(
        &mut self,
        target: Option<&AppTarget>,
        machine: &mut Machine,
        forced_by: Option<String>,
        images: &mut BTreeMap<String, u8>,
    ) -> Outcome {
        let exec = self.exec.borrow().clone();
        let current = match exec.containers(Some(&self.app)).await {
            Ok(c) => c,
            Err(e) => {
                if e.is_unavailable() {
                    super::set_engine(&self.status, Err(e.to_string()));
                }
                return engine_outcome(e.into());
            }
        };
        super::set_engine(&self.status, Ok(()));
        if target.is_none() && current.is_empty() {
            return Outcome::Done { gone: true };
        }
        let present = match exec.present(target).await {
            Ok(p) => p,
            Err(e) => return engine_outcome(e.into()),
        };
        let steps = plan(target, &current, &present);
        if steps.is_empty() {
            return Outcome::Done { gone: false };
        }
        let release = target.map(|t| t.release.clone()).unwrap_or_default();
        tracing::info!(app = %self.app, release = %release, steps = ?steps, "applying app {}", self.app);
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
        if !done && (!undo.stopped.is_empty() || !undo.started.is_empty()) {
            // Put back what ran before: the new ones stop, the old ones start.
            tracing::warn!(app = %self.app, "apply failed midway; starting the previous containers again");
            exec.stop_ids(&undo.started).await;
            exec.start_ids(&undo.stopped).await;
        }
        if undo.locked {
            let released = self
                .handle
                .request(|reply| Command::ReleaseForUpdate {
                    app: self.app.clone(),
                    reply,
                })
                .await;
            if let Ok(Err(e)) | Err(e) = released {
                if done {
                    outcome = Outcome::Failed(e.to_string());
                }
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
        while i < steps.len() {
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
                    let r = self
                        .handle
                        .request(|reply| Command::ReleaseForUpdate {
                            app: self.app.clone(),
                            reply,
                        })
                        .await;
                    undo.locked = false;
                    match r {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) | Err(e) => return Outcome::Failed(e.to_string()),
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
                _ => exec.step(pass, step).await,
            };
            if let Err(e) = r {
                return exec_outcome(e);
            }
        }
        Outcome::Done { gone: false }
    }

    /// The lock gate, then every lock of the app (all-or-nothing).
    async fn take_locks(
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
        tracing::info!(app = %self.app, image, "pulling {image}");
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

    /// Restarts the app's running containers under its locks.
    async fn restart(&mut self, force: bool, who: &str) -> Result<u32, CommandError> {
        let snap = self.snapshot.borrow().clone();
        let decision = gate::update(&snap, &self.app, force.then_some(who));
        if let Decision::Blocked(b) = decision {
            return Err(CommandError::Locked {
                blocked_by: b,
                action: format!("restart app {}", self.app),
            });
        }
        let exec = self.exec.borrow().clone();
        let running: Vec<_> = exec
            .containers(Some(&self.app))
            .await
            .map_err(|e| CommandError::Failed(e.to_string()))?
            .into_iter()
            .filter(|c| c.state == RunState::Running)
            .collect();
        if running.is_empty() {
            return Err(CommandError::NotFound(format!(
                "app {} has no running containers",
                self.app
            )));
        }
        let services: Vec<ServiceName> = running.iter().map(|c| c.service.clone()).collect();
        if let Decision::Through { why, passed } = &decision {
            tracing::warn!(message_id = msgid::UPDATE_FORCED, app = %self.app, locks = ?passed, who,
                "restarting app {} through its locks ({why})", self.app);
        }
        self.take_locks(&services, force.then_some(who))
            .await
            .map_err(|o| match o {
                Outcome::Waiting(b) => CommandError::Locked {
                    blocked_by: Vec::new(),
                    action: format!("restart app {} ({})", self.app, b.join(", ")),
                },
                Outcome::Failed(e) | Outcome::EngineDown(e) => CommandError::Failed(e),
                Outcome::Done { .. } => CommandError::Failed("unexpected".into()),
            })?;
        tracing::info!(app = %self.app, who, "restarting app {} (asked by {who})", self.app);
        let r = exec.restart(&running).await;
        let released = self
            .handle
            .request(|reply| Command::ReleaseForUpdate {
                app: self.app.clone(),
                reply,
            })
            .await;
        r.map_err(|e| CommandError::Failed(e.to_string()))?;
        if let Ok(Err(e)) | Err(e) = released {
            return Err(e);
        }
        Ok(running.len() as u32)
    }
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
    let hash = pass.target?.services.get(service)?.config_hash();
    Some(container_name(pass.app, service, &hash))
}

/// The keeper refused the app's locks because holdfast holds them already
/// (`holdfast:operator`, `holdfast:power`, ...).
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

fn engine_outcome(e: ExecError) -> Outcome {
    exec_outcome(e)
}

fn exec_outcome(e: ExecError) -> Outcome {
    if e.engine_unavailable() {
        Outcome::EngineDown(e.to_string())
    } else {
        Outcome::Failed(e.to_string())
    }
}

/// A monotonic deadline as wall-clock RFC 3339, for people.
fn wall(t: Instant) -> String {
    let at = SystemTime::now() + t.saturating_duration_since(Instant::now());
    humantime::format_rfc3339_seconds(at).to_string()
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
