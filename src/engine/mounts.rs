//! What the managed containers mount at the lock paths, and a stream that
//! says when the set of managed containers changes: the lock side
//! (`locks::mounts`) checks that each container sees the directory holdfast
//! watches for its service.

use std::collections::HashMap;

use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::{Stream, StreamExt};

use super::{Engine, EngineError, LABEL_APP, LABEL_SERVICE, LOCK_MOUNTS};
use crate::names::{AppName, ServiceName};

/// A managed container and what it has at `/tmp/balena` and `/tmp/resin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedContainer {
    pub name: String,
    pub app: AppName,
    pub service: ServiceName,
    /// One per lock path: what the engine has there, `None` when nothing
    /// is mounted there (then the container's own file system is).
    pub at: Vec<(&'static str, Option<LockMount>)>,
}

/// A mount at a lock path, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockMount {
    /// `bind`, `volume`, `tmpfs`, ...
    pub kind: String,
    /// The host path (a bind's source, a volume's data directory; empty
    /// for a tmpfs).
    pub source: String,
}

impl Engine {
    /// Every container carrying holdfast's app and service labels (running
    /// or not: one that starts again sees what it mounts), with its lock
    /// mounts. A container whose labels do not name a valid app and service
    /// is not holdfast's to judge.
    pub async fn lock_mounts(&self) -> Result<Vec<MountedContainer>, EngineError> {
        let filters = HashMap::from([("label".to_owned(), vec![LABEL_APP.to_owned()])]);
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
                let labels = c.labels?;
                let mounts = c.mounts.unwrap_or_default();
                let at = LOCK_MOUNTS
                    .iter()
                    .map(|dest| {
                        // The last one listed is the one the container sees.
                        let m = mounts
                            .iter()
                            .rev()
                            .find(|m| m.destination.as_deref() == Some(*dest))
                            .map(|m| LockMount {
                                kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
                                source: m.source.clone().unwrap_or_default(),
                            });
                        (*dest, m)
                    })
                    .collect();
                Some(MountedContainer {
                    name: c.names?.first()?.trim_start_matches('/').to_owned(),
                    app: AppName::new(labels.get(LABEL_APP)?.clone()).ok()?,
                    service: ServiceName::new(labels.get(LABEL_SERVICE)?.clone()).ok()?,
                    at,
                })
            })
            .collect())
    }

    /// One item per creation or removal of a labelled container, from
    /// `since_s` (seconds since the epoch: events between a listing and
    /// this subscription are not lost). Ends, or yields an error, when the
    /// engine goes away.
    pub fn container_changes(
        &self,
        since_s: u64,
    ) -> impl Stream<Item = Result<(), EngineError>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![LABEL_APP.to_owned()]),
            (
                "event".to_owned(),
                vec!["create".to_owned(), "destroy".to_owned()],
            ),
        ]);
        let socket = self.socket.display().to_string();
        self.docker
            .events(Some(EventsOptions {
                since: Some(since_s.to_string()),
                filters: Some(filters),
                ..Default::default()
            }))
            .map(move |e| {
                e.map(drop).map_err(|e| EngineError::Unavailable {
                    socket: socket.clone(),
                    reason: e.to_string(),
                })
            })
    }
}
