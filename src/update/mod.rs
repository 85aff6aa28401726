//! Container updates: the pure planner (`plan`), one pure state machine per
//! app (`machine`), one task per app driving it (`app`), and the executor
//! (`exec`), the only caller of the engine. This module's task keeps one
//! app task per app in the target or in the engine, routes requests to
//! them, and saves their states in `apps.json`.

mod app;
mod discover;
pub mod exec;
pub mod health;
pub mod machine;
pub mod plan;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{ApiKeys, AppListeners};
use crate::command::{Command, CommandError, Handle};
use crate::config::Settings;
use crate::devconfig::DeviceInfo;
use crate::fsutil::atomic_write;
use crate::logging::msgid;
use crate::model::{Snapshot, UpdateStatus};
use crate::names::AppName;
use crate::target::{Injected, Target};
use crate::timer::sleep_until;
use app::{AppRequest, AppTask};
use exec::{Executor, Policy};

const DISCOVER_RETRY_MIN: Duration = Duration::from_millis(100);
const DISCOVER_RETRY_MAX: Duration = Duration::from_secs(5);
/// While an old key or port is kept for containers that may hold it, the
/// containers are looked at this often.
const SETTLE_EVERY: Duration = Duration::from_secs(2);

type EngineSettings = (PathBuf, Policy, PathBuf);

mod keys;

pub struct Updates {
    pub handle: Handle,
    pub snapshot: watch::Receiver<Snapshot>,
    /// The target as set; the app tasks get it with what holdfast injects
    /// into each app's containers (`AppTarget::injected`).
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub status: watch::Sender<UpdateStatus>,
    /// The API keys: the device key, and the app keys kept here (made for
    /// each app in the target, rotated, removed with the app).
    pub keys: watch::Sender<Arc<ApiKeys>>,
    /// config.json's device values (None until first read).
    pub device: watch::Receiver<Option<DeviceInfo>>,
    /// Where app containers reach the API.
    pub listeners: AppListeners,
    /// Fleet-wide slots (`[fleet.lock] updates`: an apply takes one).
    pub fleet: Option<crate::fleet::slots::Slots>,
}

impl Updates {
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let (lock_root, state_dir) = {
            let s = self.settings.borrow_and_update();
            (s.lock_root.clone(), s.state_dir.clone())
        };
        // A lock root other than the default is in every config hash: the
        // containers made under another one are made again (locks::mounts).
        let hashed_root =
            (lock_root != Settings::default().lock_root).then(|| lock_root.display().to_string());
        let mut engine = self.engine_settings();
        let (exec_tx, exec_rx) = watch::channel(self.executor(&engine, &lock_root, &state_dir));
        // The target with the injected values, as the app tasks see it.
        let (effective_tx, effective_rx) = watch::channel(None::<Arc<Target>>);
        let settings = self.settings.borrow().clone();
        let mut host = keys::Host::read(&settings, None).await;
        // What app keys are hashed with in config hashes.
        let mut secret = keys::hash_secret(&state_dir, true).await;
        // Apps whose key cannot be read: left as they are until it reads.
        let mut held: BTreeSet<AppName> = BTreeSet::new();
        // os-release or a key to read again.
        let mut retry_at = None;
        // The API's port in force, and earlier ones containers may hold.
        let mut port_now = None;
        let mut old_ports: BTreeSet<u16> = BTreeSet::new();
        // A look at whether containers still hold an old key or port.
        let mut settle_at = None;
        let mut dirty = true;
        let mut apps: BTreeMap<AppName, mpsc::UnboundedSender<AppRequest>> = BTreeMap::new();
        let mut tasks: JoinSet<AppName> = JoinSet::new();
        // Apps the engine has containers of (found at start and after each
        // new target): an app gone from the target is removed by its task.
        let mut in_engine: BTreeSet<AppName> = BTreeSet::new();
        let mut discover_at = None;
        let mut backoff = DISCOVER_RETRY_MIN;
        let mut status_rx = self.status.subscribe();
        let mut saved = Vec::new();
        loop {
            if std::mem::take(&mut dirty) {
                let raw = self.target.borrow_and_update().clone();
                let device = self.device.borrow_and_update().clone();
                if let Some(t) = &raw {
                    keys::ensure(&self.keys, &state_dir, t, &mut held).await;
                }
                let prev = effective_rx.borrow().clone();
                let new = device
                    .and_then(|d| Some((raw?, host.injected(&d)?, secret.clone()?)))
                    .map(|(t, i, hash_secret)| {
                        let i = Injected {
                            hash_secret,
                            lock_root: hashed_root.clone(),
                            ..i
                        };
                        keys::effective(&t, &i, &self.keys.borrow(), &held, prev.as_deref())
                    });
                retry_at = (!host.known() || !held.is_empty() || secret.is_none())
                    .then(|| Instant::now() + keys::RETRY);
                let known = self.device.borrow().is_some();
                let port = host.port(self.device.borrow().as_ref());
                // Only a port containers could have been told is kept.
                let before = if known { port_now.replace(port) } else { None };
                if let Some(old) = before.filter(|p| *p != port) {
                    old_ports.insert(old);
                }
                old_ports.remove(&port);
                self.listeners.keep_ports(old_ports.clone());
                self.listeners
                    .configure(port, new.as_deref().is_some_and(keys::wants_loopback));
                let changed = effective_tx.send_if_modified(|cur| {
                    let changed = *cur != new;
                    *cur = new.clone();
                    changed
                });
                if changed && new.is_some() {
                    discover_at = Some(Instant::now());
                }
                let pending =
                    !old_ports.is_empty() || self.keys.borrow().previous_apps().next().is_some();
                if pending && settle_at.is_none() {
                    settle_at = Some(Instant::now() + SETTLE_EVERY);
                }
            }
            let target = effective_rx.borrow().clone();
            self.status.send_if_modified(|s| {
                std::mem::replace(&mut s.target, target.is_some()) != target.is_some()
            });
            if let Some(t) = &target {
                // A held app not in the effective target gets no task: its
                // containers stay as they are.
                let leaving = in_engine.iter().filter(|a| !held.contains(*a));
                let wanted: BTreeSet<&AppName> = t.apps.keys().chain(leaving).collect();
                for app in wanted {
                    if !apps.contains_key(app) {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let task = AppTask {
                            app: app.clone(),
                            handle: self.handle.clone(),
                            snapshot: self.snapshot.clone(),
                            target: effective_rx.clone(),
                            exec: exec_rx.clone(),
                            status: self.status.clone(),
                            requests: rx,
                            services: BTreeMap::new(),
                            watch_after: Vec::new(),
                            stopping: false,
                            fleet: self.fleet.clone(),
                            repairing: false,
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
                // No target: holdfast touches no container, asks nothing.
                r = self.target.changed() => {
                    if r.is_err() { return }
                    dirty = true;
                }
                r = self.device.changed() => {
                    if r.is_err() { return }
                    dirty = true;
                }
                _ = sleep_until(settle_at) => {
                    settle_at = None;
                    let exec = exec_rx.borrow().clone();
                    match keys::stale_apps(&exec, target.as_deref()).await {
                        Ok(stale) => {
                            let pending = keys::settle(&self.keys, &stale);
                            if stale.is_empty() && !old_ports.is_empty() {
                                tracing::info!(ports = ?old_ports, "every container has the API's port in force; the API no longer listens on {old_ports:?}");
                                old_ports.clear();
                                self.listeners.keep_ports(BTreeSet::new());
                            }
                            if pending || !old_ports.is_empty() {
                                settle_at = Some(Instant::now() + SETTLE_EVERY);
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot list the containers; looking again later");
                            settle_at = Some(Instant::now() + SETTLE_EVERY);
                        }
                    }
                }
                _ = sleep_until(retry_at) => {
                    retry_at = None;
                    if !host.known() {
                        let settings = self.settings.borrow().clone();
                        host = keys::Host::read(&settings, Some(&host)).await;
                    }
                    if secret.is_none() {
                        secret = keys::hash_secret(&state_dir, false).await;
                    }
                    dirty = true;
                }
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    let settings = self.settings.borrow_and_update().clone();
                    let new_host = keys::Host::read(&settings, Some(&host)).await;
                    if new_host != host {
                        host = new_host;
                        dirty = true;
                    }
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
                        let raw = self.target.borrow().clone();
                        if !raw.is_some_and(|t| t.apps.contains_key(&app)) {
                            keys::forget(&self.keys, &state_dir, &app).await;
                        }
                        // Its volumes may now be orphans: look again.
                        discover_at = Some(Instant::now());
                    }
                }
                _ = sleep_until(discover_at) => {
                    discover_at = None;
                    let exec = exec_rx.borrow().clone();
                    match discover::discover(exec, target.as_deref()).await {
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
                    Some(Command::Update { force, only, who, reply }) => {
                        if target.is_none() {
                            tracing::info!(who = %who, "update check asked by {who}: no target in force");
                        } else if force {
                            tracing::warn!(message_id = msgid::UPDATE_FORCED, who = %who,
                                "one-time forced update asked by {who}: pending updates go through locks");
                        } else {
                            tracing::info!(who = %who, "update check asked by {who}");
                        }
                        for (name, tx) in &apps {
                            let forced = force && only.as_ref().is_none_or(|a| a == name);
                            let _ = tx.send(AppRequest::Check { forced_by: forced.then(|| who.clone()) });
                        }
                        let _ = reply.send(Ok(target.is_some()));
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
                    Some(Command::ServiceAction { app, service, action, force, who, reply }) => {
                        let req = AppRequest::Service { action, service, force, who, reply };
                        app::send(apps.get(&app), &app, req);
                    }
                    Some(Command::PurgeApp { app, force, who, reply }) => {
                        app::send(apps.get(&app), &app, AppRequest::Purge { force, who, reply });
                    }
                    Some(Command::EngineState { reply }) => {
                        let exec = exec_rx.borrow().clone();
                        let target = target.clone();
                        tokio::spawn(async move {
                            let _ = reply.send(view::engine_view(exec, target).await);
                        });
                    }
                    Some(Command::PruneVolumes { app, force, who, reply }) => {
                        let exec = exec_rx.borrow().clone();
                        let snap = self.snapshot.borrow().clone();
                        let leaving = apps.contains_key(&app);
                        let set = self.target.borrow().clone();
                        let targets = [set.as_deref(), target.as_deref()];
                        discover::prune_volumes(exec, &snap, targets, leaving,
                            (app, force, who), self.status.clone(), reply);
                    }
                    Some(Command::RotateApiKey { app, who, reply }) => {
                        let in_target = |a: &AppName| {
                            self.target.borrow().as_ref().is_some_and(|t| t.apps.contains_key(a))
                        };
                        let r = match &app {
                            Some(a) if !in_target(a) => Err(CommandError::NotFound(format!(
                                "app {a} is not in the target; only an app in the target has a key"
                            ))),
                            _ => keys::rotate(&self.keys, &state_dir, app.as_ref(), &who).await,
                        };
                        dirty |= r.is_ok();
                        let _ = reply.send(r);
                    }
                    Some(Command::LoadImages { archives, reply }) => {
                        let exec = exec_rx.borrow().clone();
                        tokio::spawn(async move {
                            let r = exec.load_images(&archives).await;
                            let _ = reply.send(r.map_err(|e| CommandError::Failed(e.to_string())));
                        });
                    }
                    Some(Command::StopAll { grace, reply }) => {
                        for tx in apps.values() {
                            let _ = tx.send(AppRequest::DeviceStopping);
                        }
                        let exec = exec_rx.borrow().clone();
                        tokio::spawn(async move {
                            let n = exec.stop_all(grace).await;
                            let _ = reply.send(n);
                        });
                    }
                    Some(other) => tracing::error!(command = %other.shown(), "command sent to the updater by mistake; dropped"),
                },
            }
        }
    }

    /// What the executor is made from: the engine socket, the `[update]`
    /// policy, the registry credentials file.
    fn engine_settings(&self) -> EngineSettings {
        let s = self.settings.borrow();
        let policy = Policy {
            healthy_timeout: s.healthy_timeout,
            rollback: s.rollback,
            remove_volumes_with_app: s.remove_volumes_with_app,
        };
        (s.engine_socket(), policy, s.registry_auth.clone())
    }

    fn executor(
        &self,
        (socket, policy, auth): &EngineSettings,
        lock_root: &std::path::Path,
        state_dir: &std::path::Path,
    ) -> Executor {
        Executor::new(
            socket,
            lock_root,
            state_dir,
            self.listeners.clone(),
            policy.clone(),
            auth,
        )
    }
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
