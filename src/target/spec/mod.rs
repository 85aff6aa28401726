//! Target state types. Field names are the documented JSON names
//! (docs/target-state.md, docs/target-state.schema.json), compose's names
//! where compose has the field.

mod service;
pub mod units;

pub use service::{
    Condition, Dependency, Healthcheck, Logging, RestartPolicy, ServiceNetwork, ServiceSpec, Ulimit,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{AppName, ServiceName};

pub const FORMAT_VERSION: u32 = 1;
pub const STRATEGY_LABEL: &str = "io.balena.update.strategy";
pub const HANDOVER_TIMEOUT_LABEL: &str = "io.balena.update.handover-timeout";
pub const DEFAULT_HANDOVER_TIMEOUT_MS: u64 = 60_000;
/// A service with this label is told where the supervisor API is, and
/// its app's key.
pub const SUPERVISOR_API_LABEL: &str = "io.balena.features.supervisor-api";
/// balena's port for the supervisor API (config.json `listenPort`).
pub const DEFAULT_API_PORT: u16 = 48484;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub version: u32,
    #[serde(default)]
    pub apps: BTreeMap<AppName, AppTarget>,
    /// Device configuration. `BALENA_HOST_CONFIG_<key>` goes to the boot
    /// partition's config.txt and needs a reboot; other keys apply at once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppTarget {
    pub release: String,
    #[serde(default)]
    pub services: BTreeMap<ServiceName, ServiceSpec>,
    /// App networks, created as `<app>_<name>`; `default` always exists
    /// for services on app networks, and may be given here to configure it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkSpec>,
    /// App volumes, created as `<app>_<name>`; they outlive releases.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// What holdfast adds to the app's containers beyond their specs (the
    /// device's identity, the API's port and the app's key): set by the
    /// updater, never read from nor written to a file, and part of each
    /// service's config hash, so a change recreates the containers it
    /// concerns (under their locks, like any change).
    #[serde(skip)]
    pub injected: Option<Arc<Injected>>,
}

/// The values behind the environment holdfast injects (see
/// `engine::body`), as far as they are the same for every container of an
/// app. Where a container reaches the API is not here: that follows from
/// its network, whose definition is hashed already.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Injected {
    /// config.json `uuid`.
    pub device_uuid: String,
    /// config.json `deviceType`.
    pub device_type: String,
    /// The machine's architecture, in balena's names (`amd64`, `aarch64`).
    pub device_arch: String,
    /// os-release `PRETTY_NAME`.
    pub os_version: String,
    /// config.json `listenPort`.
    pub api_port: u16,
    /// The app's API key; None when it could not be had (then no API
    /// variables are injected).
    pub api_key: Option<String>,
    /// The device's secret the key is hashed with (`key_fingerprint`):
    /// config hashes are in container names and labels, which anyone who
    /// can list containers sees, so the key is never hashed alone.
    pub hash_secret: String,
    /// The lock root, when it is not the default: every container
    /// bind-mounts its service's directory of it, so a changed lock root
    /// makes them all again (under their locks). The default is not
    /// hashed, so the hashes of devices that keep it stay as they were.
    pub lock_root: Option<String>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field("device_uuid", &self.device_uuid)
            .field("device_type", &self.device_type)
            .field("device_arch", &self.device_arch)
            .field("os_version", &self.os_version)
            .field("api_port", &self.api_port)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("hash_secret", &"(hidden)")
            .field("lock_root", &self.lock_root)
            .finish()
    }
}

impl Injected {
    /// What stands for the key in the config hash: SHA-256 of the device's
    /// secret and the key, so a new key still changes the hash, but the
    /// hash says nothing about a key to whoever lacks the secret (a key
    /// written by hand may be short enough to guess offline otherwise).
    pub fn key_fingerprint(&self, key: &str) -> String {
        let mut h = Sha256::new();
        h.update((self.hash_secret.len() as u64).to_be_bytes());
        h.update(self.hash_secret.as_bytes());
        h.update(key.as_bytes());
        crate::fsutil::hex(&h.finalize())
    }

    /// What of it a service's container gets, for its config hash: the
    /// API's port and key (its fingerprint) only when it is labelled for
    /// the API.
    fn hashed(&self, spec: &ServiceSpec) -> impl Serialize + '_ {
        let api = spec.labels.contains_key(SUPERVISOR_API_LABEL).then(|| {
            let key = self.api_key.as_deref().map(|k| self.key_fingerprint(k));
            (self.api_port, key)
        });
        (
            &self.device_uuid,
            &self.device_type,
            &self.device_arch,
            &self.os_version,
            api,
        )
    }
}

/// The network every service on app networks joins unless it names others.
pub const DEFAULT_NETWORK: &str = "default";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// `bridge` (default) or another engine network driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// No route out of the network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    pub subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// `local` (default) or a volume plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    /// Hash of the definition, kept as a label on the engine network: a
    /// changed definition means the network is made again.
    pub fn config_hash(&self) -> String {
        short_hash(&serde_json::to_vec(self).expect("network spec serializes"))
    }
}

/// An engine object's name for an app's network or volume.
pub fn scoped_name(app: &AppName, name: &str) -> String {
    format!("{app}_{name}")
}

fn short_hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    crate::fsutil::hex(&digest[..8])
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    DownloadThenKill,
    KillThenDownload,
    DeleteThenDownload,
    HandOver,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// Downloads happen before the lock gate (the default) or after the
    /// old container is gone.
    pub fn downloads_first(self) -> bool {
        matches!(self, Self::DownloadThenKill | Self::HandOver)
    }
}

impl ServiceSpec {
    pub fn strategy(&self) -> Strategy {
        self.labels
            .get(STRATEGY_LABEL)
            .and_then(|s| Strategy::parse(s))
            .unwrap_or_default()
    }

    pub fn handover_timeout_ms(&self) -> u64 {
        self.labels
            .get(HANDOVER_TIMEOUT_LABEL)
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_HANDOVER_TIMEOUT_MS)
    }
}

impl AppTarget {
    /// First 16 hex digits of SHA-256 over the canonical JSON of the
    /// service's spec (fields in declaration order, maps sorted; without
    /// `depends_on`, which changes only the order of starts) and of the
    /// definitions of the app networks it joins: equal config, equal hash,
    /// across restarts and versions. A changed network replaces the
    /// services on it. A service sharing another's namespace
    /// (`service:<name>`) also hashes that service's hash: its container
    /// joins that container by name, so a new one there means a new one
    /// here. The values holdfast injects (`injected`) are hashed too.
    pub fn config_hash(&self, service: &ServiceName) -> String {
        self.hash_at_depth(service, self.services.len())
    }

    /// `depth` bounds the walk through shared namespaces (a parsed target
    /// has no cycles; this keeps an unparsed one from recursing forever).
    fn hash_at_depth(&self, service: &ServiceName, depth: usize) -> String {
        let Some(spec) = self.services.get(service) else {
            return String::new();
        };
        let mut own = spec.clone();
        own.depends_on.clear();
        let nets: BTreeMap<&str, NetworkSpec> = spec
            .joined_networks()
            .into_iter()
            .map(|(n, _)| (n, self.networks.get(n).cloned().unwrap_or_default()))
            .collect();
        let shared: BTreeMap<&str, String> = spec
            .shares_with()
            .filter_map(|s| {
                let name = ServiceName::new(s).ok()?;
                let hash = match depth {
                    0 => String::new(),
                    _ => self.hash_at_depth(&name, depth - 1),
                };
                Some((s, hash))
            })
            .collect();
        // Without shared namespaces nor injected values, the form every
        // earlier hash had.
        let injected = self.injected.as_deref().map(|i| i.hashed(spec));
        let lock_root = self
            .injected
            .as_deref()
            .and_then(|i| i.lock_root.as_deref());
        let json = match injected {
            Some(i) if lock_root.is_some() => {
                serde_json::to_vec(&(own, nets, shared, i, lock_root))
            }
            Some(i) => serde_json::to_vec(&(own, nets, shared, i)),
            None if shared.is_empty() => serde_json::to_vec(&(own, nets)),
            None => serde_json::to_vec(&(own, nets, shared)),
        };
        short_hash(&json.expect("service spec serializes"))
    }

    /// Every service's dependencies: `depends_on` and the services whose
    /// namespaces it shares.
    pub fn dependencies(&self, service: &ServiceName) -> Vec<ServiceName> {
        let Some(spec) = self.services.get(service) else {
            return Vec::new();
        };
        let mut deps: Vec<ServiceName> = spec.depends_on.keys().cloned().collect();
        for s in spec.shares_with() {
            if let Ok(n) = ServiceName::new(s) {
                if !deps.contains(&n) {
                    deps.push(n);
                }
            }
        }
        deps
    }

    /// Services in dependency order (dependencies first; ties by name).
    /// The parser has rejected cycles and unknown names.
    pub fn start_order(&self) -> Vec<ServiceName> {
        self.dependency_order().unwrap_or_else(|(mut order, _)| {
            // Unreachable for parsed targets: the rest in name order.
            let taken: BTreeSet<ServiceName> = order.iter().cloned().collect();
            let rest = self.services.keys().filter(|n| !taken.contains(*n));
            order.extend(rest.cloned());
            order
        })
    }

    /// Dependencies first, ties by name; on a cycle (or a dependency on an
    /// unknown service) the orderable part and the first service left out.
    /// The order is that of passes over the services in name order, each
    /// taking those whose dependencies are taken; found in one walk (linear,
    /// not a pass per level), as a service's pass is the latest of its
    /// dependencies' passes, one later for a dependency named after it.
    pub fn dependency_order(&self) -> Result<Vec<ServiceName>, (Vec<ServiceName>, ServiceName)> {
        let mut untaken: BTreeMap<&ServiceName, usize> = BTreeMap::new();
        let mut dependants: BTreeMap<ServiceName, Vec<&ServiceName>> = BTreeMap::new();
        let mut ready = Vec::new();
        for name in self.services.keys() {
            let deps = self.dependencies(name);
            if deps.is_empty() {
                ready.push(name);
            }
            untaken.insert(name, deps.len());
            for d in deps {
                dependants.entry(d).or_default().push(name);
            }
        }
        let mut pass: BTreeMap<&ServiceName, usize> = BTreeMap::new();
        let mut taken: Vec<(usize, &ServiceName)> = Vec::new();
        while let Some(name) = ready.pop() {
            let p = pass.get(name).copied().unwrap_or(0);
            taken.push((p, name));
            for &d in dependants.get(name).into_iter().flatten() {
                let at = pass.entry(d).or_insert(0);
                *at = (*at).max(p + usize::from(name > d));
                let left = untaken.get_mut(d).expect("a service of the app");
                *left -= 1;
                if *left == 0 {
                    ready.push(d);
                }
            }
        }
        taken.sort();
        let order: Vec<ServiceName> = taken.into_iter().map(|(_, n)| n.clone()).collect();
        match untaken.into_iter().find(|(_, left)| *left > 0) {
            None => Ok(order),
            Some((stuck, _)) => Err((order, stuck.clone())),
        }
    }
}

#[cfg(test)]
mod tests;
