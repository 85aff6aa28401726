//! The engine adapter (balenaEngine / Docker Engine API 1.41 over a unix
//! socket, through bollard). Only the update executor (`update::exec`)
//! calls it.

pub mod auth;
mod body;
mod health;
mod load;
mod mounts;
mod objects;
mod owned;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
    RemoveImageOptions, StopContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;

pub use body::{
    api_route, balena_arch, container_name, create_body, extra_networks, machine_arch,
    os_pretty_name, ApiRoute, ServiceContext, SupervisorApi, LABEL_APP, LABEL_HASH, LABEL_RELEASE,
    LABEL_SERVICE, LOCK_MOUNTS,
};
pub use health::Liveness;
pub use mounts::{LockMount, MountedContainer};
pub use objects::{AppNetwork, AppVolume};
pub use owned::{taken, VolumeUser};

use crate::names::{AppName, ServiceName};

/// A container holdfast manages, as the engine reports it (from its labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub app: AppName,
    pub service: ServiceName,
    pub release: String,
    pub hash: String,
    pub image: String,
    pub state: RunState,
    /// `healthy`, `unhealthy`, `starting` by its healthcheck; else the
    /// engine's state (`running`, `exited`, `restarting`, ...).
    pub health: String,
    /// The engine's state word (`created`, `running`, `exited`, ...).
    pub status: String,
    /// When the engine made it, seconds since the epoch.
    pub created: i64,
    /// The engine's id of its image (`sha256:...`).
    pub image_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Created but never started (e.g. holdfastd died between create and start).
    Created,
    Running,
    /// Exited, dead, paused, restarting: left to the restart policy.
    Other,
}

/// balenaEngine and Docker 20.10 both speak 1.41; newer engines accept it.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// Per-request timeout (seconds); pulls are streams and not bound by it.
const REQUEST_TIMEOUT_S: u64 = 300;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("engine at {socket} is unavailable: {reason}")]
    Unavailable { socket: String, reason: String },
    #[error("engine refused: {0}")]
    Api(String),
    #[error("not found in the engine: {0}")]
    NotFound(String),
    #[error("conflict in the engine: {0}")]
    Conflict(String),
    /// An engine object of the name holdfast wants that another app (or
    /// nothing of holdfast's) owns: neither used nor removed.
    #[error("{0}")]
    Taken(String),
    /// A pull the engine or registry refused, with what was sent as
    /// credentials (never the credentials themselves).
    #[error("pull of {image} refused: {reason} ({hint})")]
    Pull {
        image: String,
        reason: String,
        hint: String,
    },
}

impl EngineError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    socket: PathBuf,
}

impl Engine {
    /// Does not talk to the engine yet (bollard connects per request).
    pub fn new(socket: &Path) -> Result<Self, EngineError> {
        let docker =
            Docker::connect_with_unix(&socket.to_string_lossy(), REQUEST_TIMEOUT_S, &API_VERSION)
                .map_err(|e| EngineError::Unavailable {
                socket: socket.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            docker,
            socket: socket.to_owned(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn map(&self, e: bollard::errors::Error) -> EngineError {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(message),
            B::DockerResponseServerError {
                status_code: 409,
                message,
            } => EngineError::Conflict(message),
            B::DockerResponseServerError { message, .. } => EngineError::Api(message),
            B::DockerStreamError { error } => EngineError::Api(error),
            other => EngineError::Unavailable {
                socket: self.socket.display().to_string(),
                reason: other.to_string(),
            },
        }
    }

    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await.map(drop).map_err(|e| self.map(e))
    }

    /// Every container carrying holdfast's labels (of `app` only, when
    /// given), running or not.
    pub async fn managed(&self, app: Option<&AppName>) -> Result<Vec<Container>, EngineError> {
        let label = match app {
            Some(a) => format!("{LABEL_APP}={a}"),
            None => LABEL_APP.to_owned(),
        };
        let filters = HashMap::from([("label".to_owned(), vec![label])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                use bollard::models::ContainerSummaryStateEnum as S;
                let labels = c.labels?;
                Some(Container {
                    id: c.id?,
                    name: c.names?.first()?.trim_start_matches('/').to_owned(),
                    app: AppName::new(labels.get(LABEL_APP)?.clone()).ok()?,
                    service: ServiceName::new(labels.get(LABEL_SERVICE)?.clone()).ok()?,
                    release: labels.get(LABEL_RELEASE).cloned().unwrap_or_default(),
                    hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    health: health_of(c.status.as_deref(), c.state),
                    status: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    created: c.created.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    state: match c.state {
                        Some(S::CREATED) => RunState::Created,
                        Some(S::RUNNING) => RunState::Running,
                        _ => RunState::Other,
                    },
                })
            })
            .collect())
    }

    /// Which of `images` the engine has.
    pub async fn present(&self, images: &BTreeSet<&str>) -> Result<BTreeSet<String>, EngineError> {
        let mut have = BTreeSet::new();
        for image in images {
            match self.docker.inspect_image(image).await {
                Ok(_) => {
                    have.insert((*image).to_owned());
                }
                Err(e) => match self.map(e) {
                    EngineError::NotFound(_) => {}
                    other => return Err(other),
                },
            }
        }
        Ok(have)
    }

    /// Pulls an image with `auth`'s credentials, reporting overall progress
    /// (0..=100) as layers report their byte counts. A refusal says what
    /// was sent (`auth.hint`).
    pub async fn pull(
        &self,
        image: &str,
        auth: &auth::PullAuth,
        progress: impl FnMut(u8),
    ) -> Result<(), EngineError> {
        self.pull_with(image, auth, progress)
            .await
            .map_err(|e| match e {
                EngineError::Api(reason)
                | EngineError::NotFound(reason)
                | EngineError::Conflict(reason) => EngineError::Pull {
                    image: image.to_owned(),
                    reason,
                    hint: auth.hint.clone(),
                },
                other => other,
            })
    }

    async fn pull_with(
        &self,
        image: &str,
        auth: &auth::PullAuth,
        mut progress: impl FnMut(u8),
    ) -> Result<(), EngineError> {
        let (name, tag) = split_tag(image);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(name.to_owned()),
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
            auth.docker(),
        );
        let mut layers: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut last = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.map(e))?;
            if let Some(err) = info.error {
                return Err(EngineError::Api(err));
            }
            if let (Some(id), Some(d)) = (info.id, info.progress_detail) {
                let entry = layers.entry(id).or_default();
                let status = info.status.unwrap_or_default();
                if let (Some(cur), Some(total)) = (d.current, d.total) {
                    if total > 0 && status.starts_with("Downloading") {
                        *entry = (cur.min(total), total);
                    }
                } else if status == "Download complete" || status == "Pull complete" {
                    entry.0 = entry.1;
                }
            }
            let (cur, total) = layers
                .values()
                .fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
            if total > 0 {
                let pct = (cur * 100 / total) as u8;
                if last != Some(pct) {
                    last = Some(pct);
                    progress(pct);
                }
            }
        }
        progress(100);
        Ok(())
    }

    /// Creates the container, then connects it to its other app networks
    /// (the engine takes one network at create). A container already there
    /// (made before a crash) is a `Conflict`, after its networks are
    /// connected.
    pub async fn create(&self, name: &str, cx: &ServiceContext<'_>) -> Result<(), EngineError> {
        let made = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_owned()),
                    ..Default::default()
                }),
                create_body(cx),
            )
            .await
            .map(drop)
            .map_err(|e| self.map(e));
        if let Err(EngineError::Conflict(_)) = &made {
            // Made before a crash, or another app's of the same name.
            self.container_is_ours(name, cx.app, cx.service).await?;
        }
        if matches!(made, Ok(()) | Err(EngineError::Conflict(_))) {
            for (network, endpoint) in extra_networks(cx) {
                let request = bollard::models::NetworkConnectRequest {
                    container: Some(name.to_owned()),
                    endpoint_config: Some(endpoint),
                };
                match self.docker.connect_network(&network, request).await {
                    Ok(()) => {}
                    // Connected before a crash.
                    Err(e) if e.to_string().contains("already exists in network") => {}
                    Err(e) => return Err(self.map(e)),
                }
            }
        }
        made
    }

    pub async fn start(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| self.map(e))
    }

    /// Graceful stop: the container's stop signal, then SIGKILL after its
    /// stop timeout (the engine's default when the service sets none).
    pub async fn stop(&self, id: &str) -> Result<(), EngineError> {
        self.stop_with(id, None).await
    }

    /// Stop with an explicit grace time (seconds) instead of the container's.
    pub async fn stop_with(&self, id: &str, grace_s: Option<i32>) -> Result<(), EngineError> {
        let opts = StopContainerOptions {
            t: grace_s,
            ..Default::default()
        };
        let r = self.docker.stop_container(id, Some(opts)).await;
        gone_is_done(r.map_err(|e| self.map(e)))
    }

    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let r = self.docker.remove_container(id, Some(opts)).await;
        gone_is_done(r.map_err(|e| self.map(e)))
    }

    pub async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        let r = self
            .docker
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await;
        match gone_is_done(r.map(drop).map_err(|e| self.map(e))) {
            // Still used by a container we do not manage: left for it.
            Err(EngineError::Conflict(_)) => Ok(()),
            other => other,
        }
    }
}

/// The health in a listing's status text (`Up 5 seconds (healthy)`,
/// `(health: starting)`), else the state's name.
fn health_of(
    status: Option<&str>,
    state: Option<bollard::models::ContainerSummaryStateEnum>,
) -> String {
    let status = status.unwrap_or_default();
    for h in ["unhealthy", "healthy", "health: starting"] {
        if status.contains(&format!("({h})")) {
            return h.trim_start_matches("health: ").to_owned();
        }
    }
    state
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Stopping or removing what is already gone has done its job.
fn gone_is_done(r: Result<(), EngineError>) -> Result<(), EngineError> {
    match r {
        Err(EngineError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// `repo[:tag]` (a port in the registry host is not a tag); digests are
/// passed whole.
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_are_split_from_the_registry_port() {
        assert_eq!(
            super::split_tag("127.0.0.1:5000/a/b:3"),
            ("127.0.0.1:5000/a/b", "3")
        );
        assert_eq!(
            super::split_tag("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b", "latest")
        );
        assert_eq!(super::split_tag("busybox"), ("busybox", "latest"));
    }
}
