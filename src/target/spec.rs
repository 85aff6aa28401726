//! Target state types. Field names are the documented JSON names
//! (docs/target-state.md, docs/target-state.schema.json).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{AppName, ServiceName};

pub const FORMAT_VERSION: u32 = 1;
pub const STRATEGY_LABEL: &str = "io.balena.update.strategy";
pub const HANDOVER_TIMEOUT_LABEL: &str = "io.balena.update.handover-timeout";
pub const DEFAULT_HANDOVER_TIMEOUT_MS: u64 = 60_000;

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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `host-path:container-path[:ro]` binds or `volume-name:container-path[:ro]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// `container-path[:mount-options]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `[host-ip:]host-port:container-port[/tcp|udp]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `host-device[:container-device[:permissions]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds the engine waits after the stop signal before SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ServiceName>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    #[default]
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
            Self::OnFailure => "on-failure",
        }
    }
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

    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart.unwrap_or_default()
    }

    /// First 16 hex digits of SHA-256 over the canonical JSON of the spec
    /// (fields in declaration order, maps sorted): equal specs, equal hash,
    /// across restarts and versions.
    pub fn config_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("service spec serializes");
        let digest = Sha256::digest(&json);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl AppTarget {
    /// Services in dependency order (dependencies first; ties by name).
    /// The parser has rejected cycles and unknown names.
    pub fn start_order(&self) -> Vec<ServiceName> {
        self.dependency_order().unwrap_or_else(|(mut order, _)| {
            // Unreachable for parsed targets: the rest in name order.
            let rest: Vec<ServiceName> = self
                .services
                .keys()
                .filter(|n| !order.contains(n))
                .cloned()
                .collect();
            order.extend(rest);
            order
        })
    }

    /// Dependencies first, ties by name; on a cycle (or a dependency on an
    /// unknown service) the orderable part and the first service left out.
    pub fn dependency_order(&self) -> Result<Vec<ServiceName>, (Vec<ServiceName>, ServiceName)> {
        let mut order: Vec<ServiceName> = Vec::new();
        while order.len() < self.services.len() {
            let before = order.len();
            for (name, spec) in &self.services {
                if !order.contains(name) && spec.depends_on.iter().all(|d| order.contains(d)) {
                    order.push(name.clone());
                }
            }
            if order.len() == before {
                let stuck = self.services.keys().find(|n| !order.contains(n)).cloned();
                return Err((order, stuck.expect("some service is unordered")));
            }
        }
        Ok(order)
    }
}
