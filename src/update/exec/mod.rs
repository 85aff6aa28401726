//! The executor: turns planned steps into engine calls. The only code that
//! calls the engine; the per-app tasks decide, this does.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

mod act;
mod api;
mod objects;
mod watch;
mod waves;

use super::health::Want;
use super::plan::{container_name, Step};
use crate::api::AppListeners;
use crate::engine::auth::AuthFile;
use crate::engine::{Container, Engine, EngineError, ServiceContext};
use crate::locks::fs::{self as lockfs, FsError};
use crate::names::{AppName, ServiceName};
use crate::target::{scoped_name, AppTarget, Condition};

pub const HANDOVER_FILES: [&str; 2] = ["handover-complete", "resin-kill-me"];

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine refused to make or start a service's container.
    #[error("cannot {action} service {service}: {source}")]
    Container {
        action: &'static str,
        service: ServiceName,
        #[source]
        source: EngineError,
    },
    #[error("cannot prepare the lock directory: {0}")]
    LockDir(#[from] FsError),
    /// A new container did not come up: the release is not healthy.
    #[error("service {service} {reason}")]
    Unhealthy {
        service: ServiceName,
        reason: String,
    },
}

impl ExecError {
    pub fn engine_unavailable(&self) -> bool {
        matches!(self, ExecError::Engine(e) | ExecError::Container { source: e, .. } if e.is_unavailable())
    }
}

/// One app's pass: its target, and the release it belongs to.
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    pub app: &'a AppName,
    pub target: Option<&'a AppTarget>,
    pub release: &'a str,
}

impl Pass<'_> {
    /// The container name of `service` at its config in this target.
    pub fn container(&self, service: &ServiceName) -> String {
        let hash = self
            .target
            .map(|t| t.config_hash(service))
            .unwrap_or_default();
        container_name(self.app, service, &hash)
    }
}

#[derive(Clone)]
pub struct Executor {
    socket: PathBuf,
    /// Made on first use: the engine's socket may appear after holdfast.
    client: Arc<OnceCell<Engine>>,
    lock_root: PathBuf,
    /// Where each app's last healthy release is kept (`healthy/<app>.json`).
    state_dir: PathBuf,
    /// Where containers reach the HTTP API: kept listening on each app
    /// network's gateway as networks come and go.
    listeners: AppListeners,
    pub policy: Policy,
    /// `engine.registry_auth`, read again when it changes.
    auth: Arc<AuthFile>,
}

/// The `[update]` settings the per-app tasks follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub healthy_timeout: Duration,
    pub rollback: bool,
    pub remove_volumes_with_app: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            healthy_timeout: Duration::from_secs(120),
            rollback: true,
            remove_volumes_with_app: false,
        }
    }
}

impl Executor {
    pub fn new(
        socket: &Path,
        lock_root: &Path,
        state_dir: &Path,
        listeners: AppListeners,
        policy: Policy,
        registry_auth: &Path,
    ) -> Self {
        Self {
            socket: socket.to_owned(),
            client: Arc::new(OnceCell::new()),
            lock_root: lock_root.to_owned(),
            state_dir: state_dir.to_owned(),
            listeners,
            policy,
            auth: Arc::new(AuthFile::new(registry_auth)),
        }
    }

    /// The engine client; every call before the socket exists is an
    /// "unavailable" error, retried like any outage.
    async fn engine(&self) -> Result<&Engine, EngineError> {
        self.client
            .get_or_try_init(|| async { Engine::new(&self.socket) })
            .await
    }

    /// Where holdfast keeps its state (`[state_dir]`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Every managed container (`app`'s only, when given).
    pub async fn containers(&self, app: Option<&AppName>) -> Result<Vec<Container>, EngineError> {
        self.engine().await?.managed(app).await
    }

    /// Which of the target's images the engine has.
    pub async fn present(
        &self,
        target: Option<&AppTarget>,
    ) -> Result<BTreeSet<String>, EngineError> {
        let wanted: BTreeSet<&str> = target
            .map(|t| t.services.values().map(|s| s.image.as_str()).collect())
            .unwrap_or_default();
        self.engine().await?.present(&wanted).await
    }

    /// Pulls with the credentials file's entry for the image's registry.
    pub async fn pull(&self, image: &str, progress: impl FnMut(u8)) -> Result<(), EngineError> {
        let engine = self.engine().await?;
        let (file, name) = (self.auth.clone(), image.to_owned());
        let auth = tokio::task::spawn_blocking(move || file.for_image(&name))
            .await
            .expect("reading the credentials file does not panic");
        engine.pull(image, &auth, progress).await
    }

    /// One engine step (never a lock step: those are the gate's).
    pub async fn step(&self, pass: Pass<'_>, step: &Step) -> Result<(), ExecError> {
        let app = pass.app;
        let engine = self.engine().await?;
        match step {
            Step::Stop { service, id } => {
                tracing::info!(app = %app, service = %service, container = %id, "stopping {app}/{service}");
                engine.stop(id).await?
            }
            Step::Remove { id, .. } => engine.remove(id).await?,
            Step::RemoveImage { image } => engine.remove_image(image).await?,
            Step::Create { service } => self.create(pass, service).await?,
            Step::Start { service } => self.start(pass, service).await?,
            Step::AwaitHandover {
                service,
                timeout_ms,
            } => {
                // balena hands over on the successor's word alone; with a
                // healthcheck, holdfast waits for it to be healthy first.
                let checked = pass
                    .target
                    .and_then(|t| t.services.get(service))
                    .is_some_and(|s| s.has_healthcheck());
                if checked {
                    self.await_state(pass, service, Want::Healthy).await?;
                }
                self.await_handover(app, service, *timeout_ms).await
            }
            Step::CreateNetwork { network } => {
                let spec = pass
                    .target
                    .and_then(|t| t.networks.get(network))
                    .cloned()
                    .unwrap_or_default();
                let name = scoped_name(app, network);
                tracing::info!(app = %app, network = %name, "creating network {name}");
                engine.create_network(&name, app, &spec).await?;
                // Listening on its gateway before anything on it starts.
                self.sync_listeners().await?
            }
            Step::RemoveNetwork { name } => {
                tracing::info!(app = %app, network = %name, "removing network {name}");
                // Still in use (a container left by a failed pass): it goes
                // in a later pass; the containers being made do not need it.
                if let Err(e) = engine.remove_network(name, app).await {
                    if e.is_unavailable() {
                        return Err(e.into());
                    }
                    tracing::warn!(app = %app, network = %name, error = %e, "network {name} stays for now");
                }
                self.sync_listeners().await?
            }
            Step::CreateVolume { volume } => {
                let spec = pass
                    .target
                    .and_then(|t| t.volumes.get(volume))
                    .cloned()
                    .unwrap_or_default();
                let name = scoped_name(app, volume);
                tracing::info!(app = %app, volume = %name, "creating volume {name}");
                engine.create_volume(&name, app, &spec).await?
            }
            Step::RemoveVolume { name } => {
                tracing::info!(app = %app, volume = %name, "removing volume {name} (remove_volumes_with_app)");
                engine.remove_volume(name, app).await?
            }
            Step::VerifyHealthy { services } => {
                let checks = services
                    .iter()
                    .map(|s| self.await_state(pass, s, Want::Healthy));
                for r in futures_util::future::join_all(checks).await {
                    r?;
                }
            }
            Step::Pull { .. } | Step::TakeLocks { .. } | Step::ReleaseLocks => {
                unreachable!("the per-app task runs {step:?}")
            }
        }
        Ok(())
    }

    /// Creates and starts in dependency waves. Each service's own steps
    /// run in order; services run beside each other, except that one whose
    /// dependency is still to be started waits for it (creating needs no
    /// order: nothing runs yet).
    pub async fn wave(&self, pass: Pass<'_>, steps: &[Step]) -> Result<(), ExecError> {
        let mut units: Vec<(ServiceName, Vec<&Step>)> = Vec::new();
        let mut at: BTreeMap<&ServiceName, usize> = BTreeMap::new();
        for step in steps {
            let (Step::Create { service } | Step::Start { service }) = step else {
                unreachable!("waves hold creates and starts only")
            };
            match at.get(service) {
                Some(&i) => units[i].1.push(step),
                None => {
                    at.insert(service, units.len());
                    units.push((service.clone(), vec![step]));
                }
            }
        }
        let deps = |s: &ServiceName| -> Vec<ServiceName> {
            pass.target.map(|t| t.dependencies(s)).unwrap_or_default()
        };
        let starts = |unit: &Vec<&Step>| unit.iter().any(|s| matches!(s, Step::Start { .. }));
        for wave in waves::waves(units, starts, deps) {
            let runs = wave.iter().map(|(_, unit)| async move {
                for step in unit {
                    self.step(pass, step).await?;
                }
                Ok::<(), ExecError>(())
            });
            for r in futures_util::future::join_all(runs).await {
                r?;
            }
        }
        Ok(())
    }

    async fn create(&self, pass: Pass<'_>, service: &ServiceName) -> Result<(), ExecError> {
        let spec = pass
            .target
            .and_then(|t| t.services.get(service))
            .expect("the planner creates target services only");
        let lock_dir = self
            .lock_root
            .join(pass.app.as_str())
            .join(service.as_str());
        let (root, app, svc, user) = (
            self.lock_root.clone(),
            pass.app.clone(),
            service.clone(),
            spec.user.clone(),
        );
        tokio::task::spawn_blocking(move || prepare_lock_dir(&root, &app, &svc, user.as_deref()))
            .await
            .expect("preparing a lock directory does not panic")?;
        let hash = pass
            .target
            .map(|t| t.config_hash(service))
            .unwrap_or_default();
        let name = container_name(pass.app, service, &hash);
        let api = self.supervisor_api(pass, service).await?;
        let cx = ServiceContext {
            app: pass.app,
            service,
            release: pass.release,
            target: pass
                .target
                .expect("the planner creates target services only"),
            spec,
            hash: &hash,
            lock_dir: &lock_dir,
            supervisor_api: api.as_ref(),
        };
        match self.engine().await?.create(&name, &cx).await {
            // Created before a crash: the same name means the same config.
            Err(EngineError::Conflict(_)) => Ok(()),
            r => r.map_err(|source| ExecError::Container {
                action: "create",
                service: service.clone(),
                source,
            }),
        }
    }

    async fn start(&self, pass: Pass<'_>, service: &ServiceName) -> Result<(), ExecError> {
        // Dependencies first meet their `depends_on` condition.
        let conditions: Vec<(ServiceName, Want)> = pass
            .target
            .and_then(|t| t.services.get(service))
            .map(|s| {
                s.depends_on
                    .iter()
                    .filter(|(_, d)| d.condition != Condition::ServiceStarted)
                    .map(|(n, d)| (n.clone(), Want::from(d.condition)))
                    .collect()
            })
            .unwrap_or_default();
        for (dep, want) in conditions {
            self.await_state(pass, &dep, want)
                .await
                .map_err(|e| match e {
                    ExecError::Unhealthy { service: d, reason } => ExecError::Unhealthy {
                        service: service.clone(),
                        reason: format!("cannot start: its dependency {d} {reason}"),
                    },
                    other => other,
                })?;
        }
        self.listening_for(pass, service).await?;
        let name = pass.container(service);
        tracing::info!(app = %pass.app, service = %service, container = %name, "starting {}/{service}", pass.app);
        self.engine()
            .await?
            .start(&name)
            .await
            .map_err(|source| ExecError::Container {
                action: "start",
                service: service.clone(),
                source,
            })
    }
}

/// The service's lock directory, created one component at a time with no
/// symlink followed, and owned by the container's numeric user (through
/// its fd) so an app not running as root can create its lock.
fn prepare_lock_dir(
    lock_root: &Path,
    app: &AppName,
    service: &ServiceName,
    user: Option<&str>,
) -> Result<(), FsError> {
    let root = lockfs::open_root(lock_root)?;
    let app_path = lock_root.join(app.as_str());
    let app_dir = lockfs::open_or_create_subdir(root.as_fd(), app.as_str(), &app_path)?;
    let path = app_path.join(service.as_str());
    let dir = lockfs::open_or_create_subdir(app_dir.as_fd(), service.as_str(), &path)?;
    let Some(user) = user else { return Ok(()) };
    let mut ids = user.split(':').map(|p| p.parse::<u32>().ok());
    if let Some(Some(uid)) = ids.next() {
        let gid = ids.next().flatten();
        nix::unistd::fchown(
            &dir,
            Some(nix::unistd::Uid::from_raw(uid)),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|source| FsError::Io { path, source })?;
    }
    Ok(())
}
