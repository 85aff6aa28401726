//! Whose an engine object is. A name alone never makes an object an app's:
//! `<app>_<name>` of two apps can be one name (a target's validation
//! refuses that, but the engine may keep objects an earlier target made),
//! and the engine (API 1.41) makes a second network of a name without a
//! word. So an object is an app's by its `io.holdfast.app` label: one
//! whose label names another app is neither used nor removed
//! ([`EngineError::Taken`]), and no container is taken for an app's
//! because it has the name the app's container would have.

use std::collections::HashMap;

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions,
};

use super::{Engine, EngineError, LABEL_APP, LABEL_SERVICE};
use crate::names::{AppName, ServiceName};
use crate::text::shown;

/// The refusal to use or remove `kind` `name`, which `owner` has (its
/// `io.holdfast.app` label; None: it has none), for `app`.
pub fn taken(kind: &str, name: &str, owner: Option<&str>, app: &AppName) -> EngineError {
    let who = match owner {
        Some(o) => format!("app {}", shown(o)),
        None => "nothing holdfast made (it has no io.holdfast.app label)".into(),
    };
    EngineError::Taken(format!(
        "the engine's {kind} {} belongs to {who}, not to app {app}: holdfast neither uses nor \
         removes another app's {kind} (their names meet at '_'; rename one app's, or remove \
         the {kind} yourself once nothing needs it)",
        shown(name)
    ))
}

/// A container using a volume: its name and its app label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUser {
    pub container: String,
    pub app: Option<String>,
}

impl VolumeUser {
    pub fn describe(&self) -> String {
        match &self.app {
            Some(a) => format!("container {} of app {}", shown(&self.container), shown(a)),
            None => format!("container {} (not holdfast's)", shown(&self.container)),
        }
    }
}

impl Engine {
    /// The networks named exactly `name` (the engine's name filter also
    /// matches parts of names), with their app labels: (id, label).
    pub(super) async fn networks_named(
        &self,
        name: &str,
    ) -> Result<Vec<(String, Option<String>)>, EngineError> {
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
            }))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                let owner = n.labels.as_ref().and_then(|l| l.get(LABEL_APP)).cloned();
                Some((n.id?, owner))
            })
            .collect())
    }

    /// Every container, of any app or none, running or not, that mounts
    /// volume `name`.
    pub async fn volume_users(&self, name: &str) -> Result<Vec<VolumeUser>, EngineError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "volume".to_owned(),
                    vec![name.to_owned()],
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .into_iter()
            // The filter also matches mount points; the name must match.
            .filter(|c| {
                c.mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name.as_deref() == Some(name))
            })
            .map(|c| VolumeUser {
                container: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .or(c.id)
                    .unwrap_or_default(),
                app: c.labels.and_then(|l| l.get(LABEL_APP).cloned()),
            })
            .collect())
    }

    /// The container named `name` exists: it must be `app`'s `service`'s
    /// (one made before a crash), not another app's of the same name.
    pub(super) async fn container_is_ours(
        &self,
        name: &str,
        app: &AppName,
        service: &ServiceName,
    ) -> Result<(), EngineError> {
        let c = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.map(e))?;
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        let label = |k: &str| labels.get(k).map(String::as_str);
        if label(LABEL_APP) == Some(app.as_str()) && label(LABEL_SERVICE) == Some(service.as_str())
        {
            return Ok(());
        }
        Err(taken("container", name, label(LABEL_APP), app))
    }
}
