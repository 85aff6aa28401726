//! App networks and app volumes in the engine: listed by holdfast's app
//! label, created from the target's definitions, removed only when the
//! executor says so. Objects without the label are never removed, and
//! those with another app's label neither used nor removed (`owned`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bollard::models::{Ipam, IpamConfig, Network, NetworkCreateRequest, VolumeCreateOptions};
use bollard::query_parameters::{
    InspectNetworkOptions, ListNetworksOptions, ListVolumesOptions, RemoveVolumeOptions,
};

use super::owned::taken;
use super::{gone_is_done, Engine, EngineError, LABEL_APP, LABEL_HASH};
use crate::names::AppName;
use crate::target::{NetworkSpec, VolumeSpec};
use crate::text::shown;

/// An app network holdfast made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppNetwork {
    /// The engine's name, `<app>_<network>`.
    pub name: String,
    pub app: AppName,
    /// `NetworkSpec::config_hash` of the definition it was made from.
    pub hash: String,
}

/// An app volume as the engine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppVolume {
    pub name: String,
    /// The app label, when holdfast made it.
    pub app: Option<AppName>,
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// A bridge network's gateway is the bridge's address on the host.
fn host_address(n: &Network) -> Option<IpAddr> {
    if n.driver.as_deref().unwrap_or("bridge") != "bridge" {
        return None;
    }
    let mut gateways: Vec<IpAddr> = n
        .ipam
        .as_ref()?
        .config
        .as_ref()?
        .iter()
        .filter_map(|c| c.gateway.as_deref()?.parse().ok())
        .collect();
    gateways.sort_by_key(|ip: &IpAddr| ip.is_ipv6());
    gateways.into_iter().next()
}

fn label_filter(app: Option<&AppName>) -> HashMap<String, Vec<String>> {
    let label = match app {
        Some(a) => format!("{LABEL_APP}={a}"),
        None => LABEL_APP.to_owned(),
    };
    HashMap::from([("label".to_owned(), vec![label])])
}

impl Engine {
    /// Networks holdfast made (for `app` only, when given).
    pub async fn networks(&self, app: Option<&AppName>) -> Result<Vec<AppNetwork>, EngineError> {
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(label_filter(app)),
            }))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .into_iter()
            .filter_map(|n| {
                let labels = n.labels?;
                Some(AppNetwork {
                    name: n.name?,
                    app: AppName::new(labels.get(LABEL_APP)?.clone()).ok()?,
                    hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Makes network `name` of `app`; one of that name made before (a
    /// crash) is fine when it is `app`'s, and refused when it is not.
    pub async fn create_network(
        &self,
        name: &str,
        app: &AppName,
        spec: &NetworkSpec,
    ) -> Result<(), EngineError> {
        if self.network_made(name, app).await? {
            return Ok(());
        }
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(LABEL_APP.into(), app.to_string());
        labels.insert(LABEL_HASH.into(), spec.config_hash());
        let ipam = spec.ipam.as_ref().map(|i| Ipam {
            driver: i.driver.clone(),
            config: Some(
                i.config
                    .iter()
                    .map(|p| IpamConfig {
                        subnet: Some(p.subnet.clone()),
                        gateway: p.gateway.clone(),
                        ip_range: p.ip_range.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            options: None,
        });
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some(spec.driver.clone().unwrap_or_else(|| "bridge".into())),
            internal: spec.internal.then_some(true),
            enable_ipv6: spec.enable_ipv6,
            ipam,
            options: (!spec.driver_opts.is_empty())
                .then(|| spec.driver_opts.clone().into_iter().collect()),
            labels: Some(labels),
            ..Default::default()
        };
        let made = match self.docker.create_network(request).await {
            Ok(made) => made.id,
            Err(e) => {
                return match self.map(e) {
                    // A newer engine refuses a second network of a name:
                    // made meanwhile, by us or not.
                    EngineError::Conflict(_) => self.network_made(name, app).await.map(drop),
                    other => Err(other),
                };
            }
        };
        // API 1.41 makes a second network of a name without a word: one
        // made meanwhile by another is theirs, and ours goes again.
        let now = self.networks_named(name).await?;
        if let Some((_, owner)) = now.iter().find(|(id, _)| *id != made) {
            let _ = self.docker.remove_network(&made).await;
            return Err(taken("network", name, owner.as_deref(), app));
        }
        Ok(())
    }

    /// Whether `app`'s network `name` is there already (made before a
    /// crash); refused when a network of that name is another's.
    async fn network_made(&self, name: &str, app: &AppName) -> Result<bool, EngineError> {
        let existing = self.networks_named(name).await?;
        match existing
            .iter()
            .find(|(_, o)| o.as_deref() != Some(app.as_str()))
        {
            Some((_, owner)) => Err(taken("network", name, owner.as_deref(), app)),
            None => Ok(!existing.is_empty()),
        }
    }

    /// The host's address on each bridge network holdfast made (its
    /// gateway, IPv4 first), by engine name, with the network's app:
    /// where the containers on it reach the HTTP API, with that app's
    /// key. Other drivers have no address of the host's.
    pub async fn network_gateways(
        &self,
    ) -> Result<BTreeMap<String, (AppName, IpAddr)>, EngineError> {
        let list = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(label_filter(None)),
            }))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .into_iter()
            .filter_map(|n| {
                let app = AppName::new(n.labels.as_ref()?.get(LABEL_APP)?.clone()).ok()?;
                Some((n.name.clone()?, (app, host_address(&n)?)))
            })
            .collect())
    }

    /// One network's host address (see `network_gateways`); None when it
    /// has none.
    pub async fn network_gateway(&self, name: &str) -> Result<Option<IpAddr>, EngineError> {
        let n = self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .map_err(|e| self.map(e))?;
        Ok(host_address(&n))
    }

    /// Removes `app`'s network `name`, by its id: another app's of the same
    /// name stays. One still in use is an error (`Api`).
    pub async fn remove_network(&self, name: &str, app: &AppName) -> Result<(), EngineError> {
        for (id, owner) in self.networks_named(name).await? {
            if owner.as_deref() == Some(app.as_str()) {
                let r = self.docker.remove_network(&id).await;
                gone_is_done(r.map_err(|e| self.map(e)))?;
            }
        }
        Ok(())
    }

    /// Volumes holdfast made (for `app` only, when given).
    pub async fn app_volumes(&self, app: Option<&AppName>) -> Result<Vec<AppVolume>, EngineError> {
        self.list_volumes(Some(label_filter(app))).await
    }

    /// Every volume the engine has, labelled or not.
    pub async fn all_volumes(&self) -> Result<Vec<AppVolume>, EngineError> {
        self.list_volumes(None).await
    }

    async fn list_volumes(
        &self,
        filters: Option<HashMap<String, Vec<String>>>,
    ) -> Result<Vec<AppVolume>, EngineError> {
        let list = self
            .docker
            .list_volumes(Some(ListVolumesOptions { filters }))
            .await
            .map_err(|e| self.map(e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_of)
            .collect())
    }

    pub async fn create_volume(
        &self,
        name: &str,
        app: &AppName,
        spec: &VolumeSpec,
    ) -> Result<(), EngineError> {
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(LABEL_APP.into(), app.to_string());
        let request = VolumeCreateOptions {
            name: Some(name.to_owned()),
            driver: Some(spec.driver.clone().unwrap_or_else(|| "local".into())),
            driver_opts: (!spec.driver_opts.is_empty())
                .then(|| spec.driver_opts.clone().into_iter().collect()),
            labels: Some(labels),
            ..Default::default()
        };
        let made = self
            .docker
            .create_volume(request)
            .await
            .map_err(|e| self.map(e))?;
        // The engine answers with the volume of that name it has, if any:
        // another app's is not this app's (one without the label, made
        // outside holdfast, is used as `Executor::objects` uses it).
        match made.labels.get(LABEL_APP) {
            Some(owner) if owner != app.as_str() => Err(taken("volume", name, Some(owner), app)),
            _ => Ok(()),
        }
    }

    /// Removes `app`'s volume `name`: refused when its label names another
    /// app (or none), or when any container uses it.
    pub async fn remove_volume(&self, name: &str, app: &AppName) -> Result<(), EngineError> {
        let v = match self.docker.inspect_volume(name).await {
            Ok(v) => v,
            Err(e) => return gone_is_done(Err(self.map(e))),
        };
        let owner = v.labels.get(LABEL_APP).map(String::as_str);
        if owner != Some(app.as_str()) {
            return Err(taken("volume", name, owner, app));
        }
        if let Some(user) = self.volume_users(name).await?.first() {
            return Err(EngineError::Taken(format!(
                "volume {} of app {app} is used by {}: it stays",
                shown(name),
                user.describe()
            )));
        }
        let r = self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await;
        gone_is_done(r.map_err(|e| self.map(e)))
    }
}

fn volume_of(v: bollard::models::Volume) -> AppVolume {
    AppVolume {
        app: v
            .labels
            .get(LABEL_APP)
            .and_then(|a| AppName::new(a.clone()).ok()),
        name: v.name,
        driver: v.driver,
        options: v.options.into_iter().collect(),
    }
}
