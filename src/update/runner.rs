//! The updater task: turns the target, the engine's containers and the lock
//! table into plans and runs them. It is the only caller of the engine.
//! A locked app waits (no polling): the lock table's next change that
//! leaves the app without app-held locks resumes it at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::plan::{container_name, plan, Container, Step};
use super::status::{AppState, AppStatus, UpdateStatus};
use crate::command::{request, Command, CommandError};
use crate::devconfig::Override;
use crate::engine::{Engine, EngineError, ServiceContext, SupervisorApi};
use crate::fsutil::atomic_write;
use crate::inotify::NamesWatch;
use crate::locks::own::OwnLockError;
use crate::locks::LockTable;
use crate::logging::msgid;
use crate::names::{AppName, ServiceName};
use crate::target::{AppTarget, Target};

pub const HANDOVER_FILES: [&str; 2] = ["handover-complete", "resin-kill-me"];
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failed apply is retried after this, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

pub struct Updater {
    pub socket: PathBuf,
    pub engine: Option<Engine>,
    pub lock_root: PathBuf,
    pub state_dir: PathBuf,
    pub commands: mpsc::Sender<Command>,
    pub table: watch::Receiver<Arc<LockTable>>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub status: watch::Sender<UpdateStatus>,
    pub lock_override: watch::Receiver<Override>,
    pub requests: mpsc::Receiver<UpdateRequest>,
    /// Who asked for the forced pass under way (one-time force).
    pub forced: Option<String>,
    /// The HTTP API on TCP, told to services that ask for it by label.
    pub supervisor_api: Option<SupervisorApi>,
    /// apps.json as last written.
    pub saved: Vec<u8>,
}

/// From `Command::Update` and `Command::RestartApp`.
#[derive(Debug)]
pub enum UpdateRequest {
    Check {
        force: bool,
        who: String,
    },
    Restart {
        app: AppName,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<u32, RestartError>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("app {app} is locked by {}; not restarting it (force overrides)", .locks.join(", "))]
    Locked { app: AppName, locks: Vec<String> },
    #[error("app {0} has no running containers")]
    NotFound(AppName),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Failed(String),
}

/// How one app's pass ended.
enum Outcome {
    Done,
    /// Held back by these app locks.
    Waiting(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot prepare {path}: {source}")]
    LockDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Updater {
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut retry = RETRY_MIN;
        loop {
            let target = self.target.borrow_and_update().clone();
            self.status.send_modify(|s| s.target = target.is_some());
            let Some(target) = target else {
                // No target: nothing to apply, but requests are answered.
                tokio::select! {
                    r = self.target.changed() => if r.is_err() { return },
                    req = self.requests.recv() => match req {
                        None => return,
                        Some(req) => self.handle_idle_request(req).await,
                    },
                }
                continue;
            };
            let result = self.reconcile(&target, None).await;
            // One-time: the force covered the updates pending at that moment.
            self.forced = None;
            match result {
                Err(e) => {
                    self.engine_down(&e, &target);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        r = self.target.changed() => if r.is_err() { return },
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                Ok(()) => backoff = BACKOFF_MIN,
            }
            let failed = self.any_in(AppState::Failed);
            // Wait for a new target, or for a waiting app's locks to clear.
            loop {
                let waiting = self.waiting_apps();
                tokio::select! {
                    r = self.target.changed() => {
                        if r.is_err() { return }
                        retry = RETRY_MIN;
                        break;
                    }
                    r = self.lock_override.changed() => {
                        if r.is_err() { return }
                        if self.lock_override.borrow_and_update().enabled { break }
                    }
                    req = self.requests.recv() => match req {
                        None => return,
                        Some(UpdateRequest::Check { force, who }) if self.target.borrow().is_some() => {
                            if force {
                                tracing::warn!(message_id = msgid::UPDATE_FORCED, who = %who,
                                    "one-time forced update asked by {who}: pending updates go through locks");
                                self.forced = Some(who);
                            } else {
                                tracing::info!(who = %who, "update check asked by {who}");
                            }
                            retry = RETRY_MIN;
                            break;
                        }
                        Some(req) => self.handle_idle_request(req).await,
                    },
                    r = self.table.changed() => {
                        if r.is_err() { return }
                        let table = self.table.borrow_and_update().clone();
                        let free: Vec<AppName> = waiting
                            .into_iter()
                            .filter(|a| app_locks(&table, a).is_empty())
                            .collect();
                        if free.is_empty() { continue }
                        for app in free {
                            tracing::info!(app = %app, "locks of app {app} cleared; resuming its update");
                            if let Err(e) = self.reconcile(&target, Some(&app)).await {
                                self.engine_down(&e, &target);
                                break;
                            }
                        }
                        if self.any_in(AppState::Failed) && !failed { break }
                    }
                    _ = tokio::time::sleep(retry), if failed => {
                        retry = (retry * 2).min(RETRY_MAX);
                        break;
                    }
                }
            }
        }
    }

    /// A request that needs no pass: a restart, or a check with no target.
    async fn handle_idle_request(&mut self, req: UpdateRequest) {
        match req {
            UpdateRequest::Check { who, .. } => {
                tracing::info!(who = %who, "update check asked by {who}: no target in force")
            }
            UpdateRequest::Restart {
                app,
                force,
                who,
                reply,
            } => {
                let _ = reply.send(self.restart(&app, force, &who).await);
            }
        }
    }

    /// Restarts the running containers of an app under its locks; refused
    /// while the app holds a lock unless forced (or under the override).
    async fn restart(
        &mut self,
        app: &AppName,
        force: bool,
        who: &str,
    ) -> Result<u32, RestartError> {
        let force = force || self.lock_override.borrow().enabled;
        let held = app_locks(&self.table.borrow(), app);
        if !held.is_empty() && !force {
            return Err(RestartError::Locked {
                app: app.clone(),
                locks: held,
            });
        }
        self.connect()?;
        let running: Vec<Container> = self
            .engine()
            .managed()
            .await?
            .into_iter()
            .filter(|c| c.app == *app && c.state == super::plan::RunState::Running)
            .collect();
        if running.is_empty() {
            return Err(RestartError::NotFound(app.clone()));
        }
        let services: Vec<ServiceName> = running.iter().map(|c| c.service.clone()).collect();
        let taken = request(&self.commands, |reply| Command::TakeLocks {
            app: app.clone(),
            services,
            through: force,
            reply,
        })
        .await
        .map_err(|e| RestartError::Failed(e.to_string()))?;
        match taken {
            Ok(_) => {}
            Err(CommandError::OwnLock(OwnLockError::Contended { id, .. })) => {
                return Err(RestartError::Locked {
                    app: app.clone(),
                    locks: vec![format!("lock:{id}")],
                })
            }
            Err(e) => return Err(RestartError::Failed(e.to_string())),
        }
        if !held.is_empty() {
            tracing::warn!(message_id = msgid::UPDATE_FORCED, app = %app, locks = ?held, who,
                "restarting app {app} through its locks (asked by {who})");
        }
        let mut result = Ok(running.len() as u32);
        for c in &running {
            tracing::info!(app = %app, service = %c.service, who, "restarting {app}/{} (asked by {who})", c.service);
            if let Err(e) = self.engine().stop(&c.id).await {
                result = Err(e.into());
                break;
            }
            if let Err(e) = self.engine().start(&c.id).await {
                result = Err(e.into());
                break;
            }
        }
        let _ = request(&self.commands, |reply| Command::ReleaseLocks {
            app: app.clone(),
            reply,
        })
        .await;
        result
    }

    /// Why locks do not hold updates back right now, if they do not.
    fn through_locks(&self) -> Option<String> {
        let o = self.lock_override.borrow();
        if o.enabled {
            return Some(format!("lock override {}", o.describe()));
        }
        self.forced
            .as_ref()
            .map(|who| format!("one-time force asked by {who}"))
    }

    /// The engine client, made on first use (the socket may appear later).
    fn connect(&mut self) -> Result<(), EngineError> {
        if self.engine.is_none() {
            self.engine = Some(Engine::new(&self.socket)?);
        }
        Ok(())
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("connected before any pass")
    }

    fn any_in(&self, state: AppState) -> bool {
        self.status.borrow().apps.values().any(|a| a.state == state)
    }

    fn waiting_apps(&self) -> Vec<AppName> {
        self.status
            .borrow()
            .apps
            .iter()
            .filter(|(_, a)| a.state == AppState::Waiting)
            .filter_map(|(n, _)| AppName::new(n.clone()).ok())
            .collect()
    }

    /// Apps with work pending wait for the engine (applied ones stay so).
    fn engine_down(&self, e: &EngineError, target: &Target) {
        let line = format!("unavailable: {e}");
        if self.status.borrow().engine != line {
            tracing::warn!(message_id = msgid::ENGINE_UNAVAILABLE, error = %e,
                "container engine unavailable; retrying");
        }
        self.status.send_if_modified(|s| {
            let before = s.clone();
            s.engine = line;
            for (name, t) in &target.apps {
                let a = s
                    .apps
                    .entry(name.to_string())
                    .or_insert_with(|| AppStatus::new(AppState::Waiting, &t.release));
                if a.state != AppState::Applied || a.release != t.release {
                    *a = AppStatus::new(AppState::Waiting, &t.release);
                    a.blocked_by = vec!["engine".into()];
                }
            }
            *s != before
        });
    }

    /// One pass over every app (or just `only`). Engine outages end the
    /// pass with an error; other failures are per app.
    async fn reconcile(
        &mut self,
        target: &Target,
        only: Option<&AppName>,
    ) -> Result<(), EngineError> {
        self.connect()?;
        let current = self.engine().managed().await?;
        if self.status.borrow().engine != "available" {
            tracing::info!(socket = %self.socket.display(), "container engine available");
            self.status.send_modify(|s| s.engine = "available".into());
        }
        let mut by_app: BTreeMap<AppName, Vec<Container>> = BTreeMap::new();
        for c in current {
            by_app.entry(c.app.clone()).or_default().push(c);
        }
        let mut apps: BTreeSet<AppName> = target.apps.keys().cloned().collect();
        apps.extend(by_app.keys().cloned());
        // Apps gone from both target and engine leave the status.
        self.status.send_if_modified(|s| {
            let before = s.apps.len();
            s.apps.retain(|n, _| apps.iter().any(|a| a.as_str() == n));
            before != s.apps.len()
        });
        for app in apps.iter().filter(|a| only.is_none_or(|o| o == *a)) {
            let app_target = target.apps.get(app);
            let containers = by_app.remove(app).unwrap_or_default();
            let release = app_target.map(|a| a.release.as_str()).unwrap_or("");
            match self.apply_app(app, app_target, &containers).await {
                Ok(Outcome::Done) => self.set(app, AppStatus::new(AppState::Applied, release)),
                Ok(Outcome::Waiting(locks)) => {
                    let mut st = AppStatus::new(AppState::Waiting, release);
                    st.blocked_by = locks;
                    self.set(app, st);
                }
                Err(ApplyError::Engine(e)) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    tracing::error!(message_id = msgid::UPDATE_FAILED, app = %app, error = %e,
                        "update of app {app} failed: {e}");
                    let mut st = AppStatus::new(AppState::Failed, release);
                    st.error = Some(e.to_string());
                    self.set(app, st);
                }
            }
        }
        self.persist();
        Ok(())
    }

    fn set(&self, app: &AppName, st: AppStatus) {
        self.status.send_if_modified(|s| {
            let old = s.apps.insert(app.to_string(), st.clone());
            old.as_ref() != Some(&st)
        });
    }

    /// Saves the app states when they changed since the last save (a pass
    /// that changed nothing costs no fsync).
    fn persist(&mut self) {
        let data =
            serde_json::to_vec_pretty(&self.status.borrow().apps).expect("status serializes");
        if data == self.saved {
            return;
        }
        let path = self.state_dir.join("apps.json");
        match atomic_write(&path, &data) {
            Ok(()) => self.saved = data,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot save update progress")
            }
        }
    }

    async fn apply_app(
        &mut self,
        app: &AppName,
        target: Option<&AppTarget>,
        current: &[Container],
    ) -> Result<Outcome, ApplyError> {
        let wanted: BTreeSet<&str> = target
            .map(|t| t.services.values().map(|s| s.image.as_str()).collect())
            .unwrap_or_default();
        let images = self.engine().present(&wanted).await?;
        let steps = plan(target, current, &images);
        if steps.is_empty() {
            return Ok(Outcome::Done);
        }
        let release = target.map(|t| t.release.clone()).unwrap_or_default();
        tracing::info!(app = %app, release = %release, steps = ?steps, "applying app {app}");
        let mut locked = false;
        let result = self
            .run_steps(app, target, &release, &steps, &mut locked)
            .await;
        if locked {
            // Never leave our own locks behind a failed apply.
            let _ = request(&self.commands, |reply| Command::ReleaseLocks {
                app: app.clone(),
                reply,
            })
            .await;
        }
        result
    }

    async fn run_steps(
        &mut self,
        app: &AppName,
        target: Option<&AppTarget>,
        release: &str,
        steps: &[Step],
        locked: &mut bool,
    ) -> Result<Outcome, ApplyError> {
        let pulls: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Pull { image } => Some(image.as_str()),
                _ => None,
            })
            .collect();
        let mut i = 0;
        while i < steps.len() {
            // Consecutive creates/starts run concurrently, dependencies first.
            let run = steps[i..]
                .iter()
                .take_while(|s| matches!(s, Step::Create { .. } | Step::Start { .. }))
                .count();
            if run > 1 {
                self.start_concurrently(app, target, release, &steps[i..i + run])
                    .await?;
                i += run;
                continue;
            }
            let step = &steps[i];
            i += 1;
            match step {
                Step::Pull { image } => self.pull(app, release, image, &pulls).await?,
                Step::TakeLocks { services } => {
                    let held = app_locks(&self.table.borrow(), app);
                    let through = self.through_locks();
                    if !held.is_empty() {
                        if let Some(why) = &through {
                            tracing::warn!(message_id = msgid::UPDATE_FORCED, app = %app, locks = ?held,
                                "updating app {app} through its locks {} ({why})", held.join(", "));
                        } else {
                            tracing::info!(message_id = msgid::UPDATE_WAITING, app = %app, blocked_by = ?held,
                                "update of app {app} waits for its locks: {}", held.join(", "));
                            return Ok(Outcome::Waiting(held));
                        }
                    }
                    let r = request(&self.commands, |reply| Command::TakeLocks {
                        app: app.clone(),
                        services: services.clone(),
                        through: through.is_some(),
                        reply,
                    })
                    .await?;
                    match r {
                        Ok(_) => *locked = true,
                        Err(CommandError::OwnLock(OwnLockError::Contended { id, .. })) => {
                            return Ok(Outcome::Waiting(vec![format!("lock:{id}")]));
                        }
                        Err(e) => return Err(e.into()),
                    }
                    self.set(app, AppStatus::new(AppState::Applying, release));
                }
                Step::Stop { service, id } => {
                    tracing::info!(app = %app, service = %service, container = %id, "stopping {app}/{service}");
                    self.engine().stop(id).await?
                }
                Step::Remove { id, .. } => self.engine().remove(id).await?,
                Step::RemoveImage { image } => self.engine().remove_image(image).await?,
                Step::Create { service } => self.create(app, target, release, service).await?,
                Step::Start { service } => {
                    let name = self.name_of(app, target, service);
                    tracing::info!(app = %app, service = %service, container = %name, "starting {app}/{service}");
                    self.engine().start(&name).await?
                }
                Step::AwaitHandover {
                    service,
                    timeout_ms,
                } => self.await_handover(app, service, *timeout_ms).await,
                Step::ReleaseLocks => {
                    request(&self.commands, |reply| Command::ReleaseLocks {
                        app: app.clone(),
                        reply,
                    })
                    .await??;
                    *locked = false;
                }
            }
        }
        tracing::info!(message_id = msgid::UPDATE_APPLIED, app = %app, release = %release,
            "app {app} is at release {release}");
        Ok(Outcome::Done)
    }

    /// Runs Create/Start steps in dependency waves: every service whose
    /// dependencies (within these steps) are up is created and started at
    /// the same time as the others of its wave.
    async fn start_concurrently(
        &self,
        app: &AppName,
        target: Option<&AppTarget>,
        release: &str,
        steps: &[Step],
    ) -> Result<(), ApplyError> {
        let mut pending: Vec<(&ServiceName, bool)> = Vec::new();
        for step in steps {
            match step {
                Step::Create { service } => pending.push((service, true)),
                Step::Start { service } if !pending.iter().any(|(s, _)| *s == service) => {
                    pending.push((service, false))
                }
                _ => {}
            }
        }
        let deps = |s: &ServiceName| -> Vec<&ServiceName> {
            target
                .and_then(|t| t.services.get(s))
                .map(|spec| spec.depends_on.iter().collect())
                .unwrap_or_default()
        };
        while !pending.is_empty() {
            let waiting: Vec<&ServiceName> = pending.iter().map(|(s, _)| *s).collect();
            let (wave, rest): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(s, _)| !deps(s).iter().any(|d| waiting.contains(d)));
            // A cycle cannot pass the parser; never spin on one anyway.
            let wave = if wave.is_empty() { rest.clone() } else { wave };
            pending = if wave.len() == waiting.len() {
                Vec::new()
            } else {
                rest
            };
            let runs = wave.iter().map(|(service, create)| async move {
                if *create {
                    self.create(app, target, release, service).await?;
                }
                let name = self.name_of(app, target, service);
                tracing::info!(app = %app, service = %service, container = %name, "starting {app}/{service}");
                self.engine().start(&name).await.map_err(ApplyError::from)
            });
            for r in futures_util::future::join_all(runs).await {
                r?;
            }
        }
        Ok(())
    }

    fn name_of(&self, app: &AppName, target: Option<&AppTarget>, service: &ServiceName) -> String {
        let hash = target
            .and_then(|t| t.services.get(service))
            .map(|s| s.config_hash())
            .unwrap_or_default();
        container_name(app, service, &hash)
    }

    async fn pull(
        &self,
        app: &AppName,
        release: &str,
        image: &str,
        all: &[&str],
    ) -> Result<(), ApplyError> {
        tracing::info!(app = %app, image, "pulling {image}");
        let mut st = AppStatus::new(AppState::Downloading, release);
        for i in all {
            let done = self
                .status
                .borrow()
                .apps
                .get(app.as_str())
                .and_then(|a| a.images.get(*i).copied());
            st.images.insert((*i).to_owned(), done.unwrap_or(0));
        }
        let update = |st: &mut AppStatus, pct: u8| {
            st.images.insert(image.to_owned(), pct);
            let sum: u32 = st.images.values().map(|p| u32::from(*p)).sum();
            st.progress = Some((sum / st.images.len().max(1) as u32) as u8);
            self.set(app, st.clone());
        };
        update(&mut st, 0);
        self.engine()
            .pull(image, |pct| update(&mut st, pct))
            .await?;
        Ok(())
    }

    async fn create(
        &self,
        app: &AppName,
        target: Option<&AppTarget>,
        release: &str,
        service: &ServiceName,
    ) -> Result<(), ApplyError> {
        let spec = target
            .and_then(|t| t.services.get(service))
            .expect("the planner creates target services only");
        let lock_dir = self.lock_root.join(app.as_str()).join(service.as_str());
        prepare_lock_dir(&lock_dir, spec.user.as_deref()).map_err(|source| {
            ApplyError::LockDir {
                path: lock_dir.clone(),
                source,
            }
        })?;
        let name = container_name(app, service, &spec.config_hash());
        let cx = ServiceContext {
            app,
            service,
            release,
            spec,
            lock_dir: &lock_dir,
            supervisor_api: self.supervisor_api.as_ref(),
        };
        match self.engine().create(&name, &cx).await {
            // Created before a crash: the same name means the same config.
            Err(EngineError::Conflict(_)) => Ok(()),
            r => r.map_err(Into::into),
        }
    }

    async fn await_handover(&self, app: &AppName, service: &ServiceName, timeout_ms: u64) {
        let dir = self.lock_root.join(app.as_str()).join(service.as_str());
        let timeout = Duration::from_millis(timeout_ms);
        let done = match NamesWatch::new(&dir, &HANDOVER_FILES) {
            Ok(mut w) => w.wait_exists(timeout).await.unwrap_or(false),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for hand-over; waiting out the timeout");
                tokio::time::sleep(timeout).await;
                false
            }
        };
        tracing::info!(app = %app, service = %service, signalled = done,
            "hand-over of {app}/{service} {}", if done { "complete" } else { "timed out" });
        // Consumed: the next hand-over waits for a fresh signal.
        for f in HANDOVER_FILES {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
}

/// `lock:app/service` for each lock an app (not holdfast) holds in `app`.
fn app_locks(table: &LockTable, app: &AppName) -> Vec<String> {
    table
        .held_by_apps()
        .into_iter()
        .filter(|id| id.app == *app)
        .map(|id| format!("lock:{id}"))
        .collect()
}

/// The service's lock directory, owned by the container's numeric user so
/// an app not running as root can create its lock.
fn prepare_lock_dir(dir: &std::path::Path, user: Option<&str>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let Some(user) = user else { return Ok(()) };
    let mut ids = user.split(':').map(|p| p.parse::<u32>().ok());
    if let Some(Some(uid)) = ids.next() {
        let gid = ids.next().flatten();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            dir,
            Some(nix::unistd::Uid::from_raw(uid)),
            gid.map(nix::unistd::Gid::from_raw),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}
