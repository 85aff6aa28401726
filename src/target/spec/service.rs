//! A service: one container of an app, with the fields compose users rely
//! on, named as compose names them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::units::{list_or_map, string_or_list, Bytes, GoDuration, NanoCpus};
use crate::names::ServiceName;

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
    /// `host-path:container-path[:ro]` binds or `volume-name:container-path[:ro]`
    /// (a name is one of the app's `volumes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// `container-path[:mount-options]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// `host`, `none`, `bridge`, `container:<name>`, `service:<service>`.
    /// Unset: the app's networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// The app networks the service joins (unset: `default`).
    #[serde(
        default,
        deserialize_with = "list_or_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub networks: BTreeMap<String, ServiceNetwork>,
    /// `[host-ip:]host-port:container-port[/tcp|udp]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `port[/proto]` or `start-end[/proto]`, exposed without publishing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
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
    /// The same as a duration (compose's name); one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<GoDuration>,
    /// Started after these (once each meets its condition), stopped before
    /// them. A list means `service_started` for each.
    #[serde(
        default,
        deserialize_with = "list_or_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub depends_on: BTreeMap<ServiceName, Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `host:ip` lines for /etc/hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns: Vec<String>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<NanoCpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
    /// CPUs the container may use, e.g. `0-1` or `0,2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Bytes>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `private`, `shareable`, `host`, `none`, `service:<service>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// `host` or `service:<service>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
}

/// How a service joins one app network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    /// Extra DNS names on this network (the service name always is one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// The engine's healthcheck. `test` is `["CMD", ...]`, `["CMD-SHELL",
/// "..."]`, `["NONE"]`, or a string (run by the shell).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    #[serde(
        default,
        deserialize_with = "healthcheck_test",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

impl Healthcheck {
    /// Whether the engine will report health: a test is set and not
    /// disabled (`disable` or `["NONE"]`).
    pub fn active(&self) -> bool {
        !self.disable && !self.test.is_empty() && self.test[0] != "NONE"
    }
}

/// A bare string is a shell command (`CMD-SHELL`), as compose reads it.
fn healthcheck_test<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a shell command or a list like [\"CMD\", \"prog\", \"arg\"]")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec!["CMD-SHELL".to_owned(), v.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<String>, A::Error> {
            Vec::<String>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(V)
}

/// One resource limit: a number (soft and hard alike) or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            soft: i64,
            hard: i64,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or {\"soft\": n, \"hard\": n}")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ulimit, E> {
                Ok(Ulimit { soft: v, hard: v })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ulimit, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("limit is too large"))?;
                Ok(Ulimit { soft: v, hard: v })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let p = Pair::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit {
                    soft: p.soft,
                    hard: p.hard,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
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

impl ServiceSpec {
    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart.unwrap_or_default()
    }

    pub fn has_healthcheck(&self) -> bool {
        self.healthcheck.as_ref().is_some_and(Healthcheck::active)
    }

    /// The grace time before SIGKILL, in seconds, from either field.
    pub fn stop_grace_s(&self) -> Option<u32> {
        self.stop_timeout.or_else(|| {
            self.stop_grace_period
                .map(|d| u32::try_from(d.0.as_secs()).unwrap_or(u32::MAX))
        })
    }

    /// The service whose namespace this one shares (`service:<name>` in
    /// `network_mode`, `ipc` or `pid`): it must run first.
    pub fn shares_with(&self) -> impl Iterator<Item = &str> {
        [&self.network_mode, &self.ipc, &self.pid]
            .into_iter()
            .filter_map(|v| v.as_deref()?.strip_prefix("service:"))
    }

    /// Whether the service is on the app's networks: any `network_mode`
    /// (host, none, bridge, another container's or service's namespace, an
    /// engine network by name) takes it off them.
    pub fn on_app_networks(&self) -> bool {
        self.network_mode.is_none()
    }

    /// The app networks the service joins: those it names, else `default`.
    pub fn joined_networks(&self) -> Vec<(&str, ServiceNetwork)> {
        if !self.on_app_networks() {
            return Vec::new();
        }
        if self.networks.is_empty() {
            return vec![(super::DEFAULT_NETWORK, ServiceNetwork::default())];
        }
        self.networks
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone()))
            .collect()
    }
}
