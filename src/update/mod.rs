//! Container updates: the pure planner (`plan`), one pure state machine per
//! app (`machine`), one task per app driving it (`app`), and the executor
//! (`exec`), the only caller of the engine. This module's task keeps one
//! app task per app in the target or in the engine, routes requests to
//! them, and saves their states in `apps.json`.

mod app;
pub mod exec;
pub mod health;
pub mod machine;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::command::{Command, CommandError, Handle};
use crate::config::Settings;
use crate::engine::SupervisorApi;
use crate::fsutil::atomic_write;
use crate::logging::msgid;
use crate::model::{Snapshot, UpdateStatus};
use crate::names::AppName;
use crate::target::Target;
use crate::timer::sleep_until;
use app::{AppRequest, AppTask};
use exec::{Executor, Policy};

const DISCOVER_RETRY_MIN: Duration = Duration::from_millis(100);
const DISCOVER_RETRY_MAX: Duration = Duration::from_secs(5);

type EngineSettings = (PathBuf, Option<SupervisorApi>, Policy, PathBuf);

pub struct Updates {
    pub handle: Handle,
    pub snapshot: watch::Receiver<Snapshot>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub status: watch::Sender<UpdateStatus>,
    /// The HTTP API key, told (with `api.tcp`) to services that ask for the
    /// API by label.
    pub api_key: Option<String>,
    /// Fleet-wide slots (`[fleet.lock] updates`: an apply takes one).
    pub fleet: Option<crate::fleet::slots::Slots>,
}

impl Updates {
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let (lock_root, state_dir) = {
            let s = self.settings.borrow_and_update();
            (s.lock_root.clone(), s.state_dir.clone())
        };
        let mut engine = self.engine_settings();
        let (exec_tx, exec_rx) = watch::channel(self.executor(&engine, &lock_root, &state_dir));
        let mut apps: BTreeMap<AppName, mpsc::UnboundedSender<AppRequest>> = BTreeMap::new();
        let mut tasks: JoinSet<AppName> = JoinSet::new();
        // Apps the engine has containers of (found at start and after each
        // new target): an app gone from the target is removed by its task.
        let mut in_engine: BTreeSet<AppName> = BTreeSet::new();
        let mut discover_at = self.target.borrow().is_some().then(Instant::now);
        let mut backoff = DISCOVER_RETRY_MIN;
        let mut status_rx = self.status.subscribe();
        let mut saved = Vec::new();
        loop {
            let target = self.target.borrow_and_update().clone();
            self.status.send_if_modified(|s| {
                std::mem::replace(&mut s.target, target.is_some()) != target.is_some()
            });
            if let Some(t) = &target {
                let wanted: BTreeSet<&AppName> = t.apps.keys().chain(in_engine.iter()).collect();
                for app in wanted {
                    if !apps.contains_key(app) {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let task = AppTask {
                            app: app.clone(),
                            handle: self.handle.clone(),
                            snapshot: self.snapshot.clone(),
                            target: self.target.clone(),
                            exec: exec_rx.clone(),
                            status: self.status.clone(),
                            requests: rx,
                            services: BTreeMap::new(),
                            watch_after: Vec::new(),
                            fleet: self.fleet.clone(),
                        };
                        let name = app.clone();
                        tasks.spawn(async move {
                            task.run().await;
                            name
                        });
                        apps.insert(app.clone(), tx);
                    }
                }
            }
            tokio::select! {
                r = self.target.changed() => {
                    if r.is_err() { return }
                    // No target: holdfast touches no container, asks nothing.
                    if self.target.borrow().is_some() {
                        discover_at = Some(Instant::now());
                    }
                }
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    self.settings.borrow_and_update();
                    let now = self.engine_settings();
                    if now != engine {
                        tracing::info!(socket = %now.0.display(), "engine or update settings changed; using them from now on");
                        engine = now;
                        exec_tx.send_replace(self.executor(&engine, &lock_root, &state_dir));
                    }
                }
                Some(done) = tasks.join_next() => {
                    if let Ok(app) = done {
                        apps.remove(&app);
                        in_engine.remove(&app);
                        // Its volumes may now be orphans: look again.
                        discover_at = Some(Instant::now());
                    }
                }
                _ = sleep_until(discover_at) => {
                    discover_at = None;
                    let exec = exec_rx.borrow().clone();
                    match discover(exec, target.as_deref()).await {
                        Ok((found, orphans)) => {
                            in_engine = found;
                            self.status.send_if_modified(|s| {
                                std::mem::replace(&mut s.orphaned_volumes, orphans.clone()) != orphans
                            });
                            backoff = DISCOVER_RETRY_MIN;
                            set_engine(&self.status, Ok(()));
                        }
                        Err(e) => {
                            set_engine(&self.status, Err(e));
                            discover_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(DISCOVER_RETRY_MAX);
                        }
                    }
                }
                r = status_rx.changed() => {
                    if r.is_err() { return }
                    let data = serde_json::to_vec_pretty(&status_rx.borrow_and_update().apps)
                        .expect("status serializes");
                    if data != saved {
                        save(state_dir.join("apps.json"), data.clone()).await;
                        saved = data;
                    }
                }
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Update { force, who, reply }) => {
                        if target.is_none() {
                            tracing::info!(who = %who, "update check asked by {who}: no target in force");
                        } else if force {
                            tracing::warn!(message_id = msgid::UPDATE_FORCED, who = %who,
                                "one-time forced update asked by {who}: pending updates go through locks");
                        } else {
                            tracing::info!(who = %who, "update check asked by {who}");
                        }
                        for tx in apps.values() {
                            let forced_by = force.then(|| who.clone());
                            let _ = tx.send(AppRequest::Check { forced_by });
                        }
                        let _ = reply.send(Ok(()));
                    }
                    Some(Command::RestartApp { app, force, who, reply }) => match apps.get(&app) {
                        Some(tx) => {
                            if let Err(e) = tx.send(AppRequest::Restart { force, who, reply }) {
                                let AppRequest::Restart { reply, .. } = e.0 else { unreachable!() };
                                let _ = reply.send(Err(CommandError::Unavailable));
                            }
                        }
                        None => {
                            let _ = reply.send(Err(CommandError::NotFound(format!(
                                "app {app} is not managed by holdfast (not in the target)"
                            ))));
                        }
                    },
                    Some(Command::PruneVolumes { app, force, who, reply }) => {
                        let exec = exec_rx.borrow().clone();
                        let snap = self.snapshot.borrow().clone();
                        let leaving = apps.contains_key(&app);
                        prune_volumes(exec, &snap, target.as_deref(), leaving,
                            (app, force, who), self.status.clone(), reply);
                    }
                    Some(Command::StopAll { grace, reply }) => {
                        let exec = exec_rx.borrow().clone();
                        tokio::spawn(async move {
                            let n = exec.stop_all(grace).await;
                            let _ = reply.send(n);
                        });
                    }
                    Some(other) => tracing::error!(command = ?other, "command sent to the updater by mistake; dropped"),
                },
            }
        }
    }

    /// What the executor is made from: the engine socket, where
    /// containers reach the HTTP API, the `[update]` policy, the registry
    /// credentials file.
    fn engine_settings(&self) -> EngineSettings {
        let s = self.settings.borrow();
        let api = s
            .api_tcp
            .zip(self.api_key.as_deref())
            .map(|(addr, key)| SupervisorApi::from_bind(addr, key));
        let policy = Policy {
            healthy_timeout: s.healthy_timeout,
            rollback: s.rollback,
            remove_volumes_with_app: s.remove_volumes_with_app,
        };
        (s.engine_socket(), api, policy, s.registry_auth.clone())
    }

    fn executor(
        &self,
        (socket, api, policy, auth): &EngineSettings,
        lock_root: &std::path::Path,
        state_dir: &std::path::Path,
    ) -> Executor {
        Executor::new(
            socket,
            lock_root,
            state_dir,
            api.clone(),
            policy.clone(),
            auth,
        )
    }
}

/// Apps the engine has managed containers or networks of, and the
/// volumes of apps no longer in the target.
async fn discover(
    exec: Executor,
    target: Option<&Target>,
) -> Result<(BTreeSet<AppName>, BTreeMap<String, Vec<String>>), String> {
    let apps = exec.apps_in_engine().await.map_err(|e| e.to_string())?;
    let volumes = exec.volumes_by_app().await.map_err(|e| e.to_string())?;
    let orphans = volumes
        .into_iter()
        .filter(|(app, _)| target.is_some_and(|t| !t.apps.contains_key(app)))
        .map(|(app, v)| (app.to_string(), v))
        .collect();
    Ok((apps, orphans))
}

/// `holdfast volumes prune APP`: only for an app out of the target and
/// gone from the engine, and through the gate like an update.
fn prune_volumes(
    exec: Executor,
    snapshot: &Snapshot,
    target: Option<&Target>,
    leaving: bool,
    (app, force, who): (AppName, bool, String),
    status: watch::Sender<UpdateStatus>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<String>, CommandError>>,
) {
    if target.is_some_and(|t| t.apps.contains_key(&app)) {
        let _ = reply.send(Err(CommandError::Failed(format!(
            "app {app} is in the target and its services use its volumes; take it out of the target first"
        ))));
        return;
    }
    if leaving {
        let _ = reply.send(Err(CommandError::Failed(format!(
            "app {app} is still leaving (its containers wait on its locks); prune once it is gone"
        ))));
        return;
    }
    let forced_by = force.then(|| who.clone());
    if let crate::gate::Decision::Blocked(blocked_by) =
        crate::gate::update(snapshot, &app, forced_by.as_deref())
    {
        let _ = reply.send(Err(CommandError::Locked {
            blocked_by,
            action: format!("remove the volumes of {app}"),
        }));
        return;
    }
    tracing::info!(app = %app, who = %who, "removing the volumes of app {app}, asked by {who}");
    tokio::spawn(async move {
        let r = exec.remove_app_volumes(&app).await;
        if r.is_ok() {
            status.send_if_modified(|s| s.orphaned_volumes.remove(app.as_str()).is_some());
        }
        let _ = reply.send(r.map_err(|e| CommandError::Failed(e.to_string())));
    });
}

/// The `engine` line of the status: `available` or `unavailable: why`.
pub(crate) fn set_engine(status: &watch::Sender<UpdateStatus>, r: Result<(), String>) {
    let line = match r {
        Ok(()) => "available".to_owned(),
        Err(e) => format!("unavailable: {e}"),
    };
    status.send_if_modified(|s| {
        if s.engine == line {
            return false;
        }
        if line == "available" {
            tracing::info!("container engine available");
        }
        s.engine = line;
        true
    });
}

async fn save(path: PathBuf, data: Vec<u8>) {
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || atomic_write(&path, &data)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(path = %shown, error = %e, "cannot save update progress"),
        Err(e) => tracing::warn!(path = %shown, error = %e, "saving update progress failed"),
    }
}
