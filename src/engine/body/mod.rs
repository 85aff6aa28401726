//! The engine's create-container body for a service (pure): the target's
//! config plus what every managed container gets (labels, lock mounts,
//! balena-compatible environment). `host` maps the HostConfig, `net` the
//! app networks the container joins.

mod host;
mod net;

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HealthConfig};

pub use net::extra_networks;

use crate::names::{AppName, ServiceName};
use crate::target::{parse_expose, parse_port, AppTarget, Healthcheck, ServiceSpec};

pub const LABEL_APP: &str = "io.holdfast.app";
pub const LABEL_SERVICE: &str = "io.holdfast.service";
pub const LABEL_RELEASE: &str = "io.holdfast.release";
pub const LABEL_HASH: &str = "io.holdfast.config-hash";

/// Where the service's lock directory appears inside its container.
pub const LOCK_MOUNTS: [&str; 2] = ["/tmp/balena", "/tmp/resin"];

pub struct ServiceContext<'a> {
    pub app: &'a AppName,
    pub service: &'a ServiceName,
    pub release: &'a str,
    /// The service's app: its volumes, networks and the services whose
    /// namespaces this one shares.
    pub target: &'a AppTarget,
    /// The service's spec in `target`.
    pub spec: &'a ServiceSpec,
    /// The service's config hash (`AppTarget::config_hash`).
    pub hash: &'a str,
    /// Host directory `<lock_root>/<app>/<service>`.
    pub lock_dir: &'a Path,
    /// The HTTP API on TCP, for services labelled
    /// `io.balena.features.supervisor-api`.
    pub supervisor_api: Option<&'a SupervisorApi>,
}

/// The container name for a service at a config hash: deterministic, so a
/// create repeated after a crash finds the first one instead of duplicating,
/// and a service sharing another's namespace can name its container.
pub fn container_name(app: &AppName, service: &ServiceName, hash: &str) -> String {
    format!("{app}_{service}_{hash}")
}

pub const SUPERVISOR_API_LABEL: &str = "io.balena.features.supervisor-api";

/// Where a container reaches holdfast's HTTP API, balena style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorApi {
    pub host: String,
    pub port: u16,
    pub key: String,
}

impl SupervisorApi {
    /// From `api.tcp`: a wildcard bind is reached at 127.0.0.1 (host
    /// network); a specific address as itself.
    pub fn from_bind(addr: std::net::SocketAddr, key: &str) -> Self {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        Self {
            host,
            port: addr.port(),
            key: key.to_owned(),
        }
    }
}

pub fn create_body(cx: &ServiceContext<'_>) -> ContainerCreateBody {
    let spec = cx.spec;
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL_APP.into(), cx.app.to_string());
    labels.insert(LABEL_SERVICE.into(), cx.service.to_string());
    labels.insert(LABEL_RELEASE.into(), cx.release.to_owned());
    labels.insert(LABEL_HASH.into(), cx.hash.to_owned());

    let lock_path = "/tmp/balena/updates.lock";
    let mut env: Vec<String> = spec
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (k, v) in [
        ("BALENA_APP_LOCK_PATH", lock_path),
        ("RESIN_APP_LOCK_PATH", lock_path),
        (
            "BALENA_SERVICE_HANDOVER_COMPLETE_PATH",
            "/tmp/balena/handover-complete",
        ),
        ("RESIN_SERVICE_KILL_ME_PATH", "/tmp/resin/resin-kill-me"),
        ("BALENA_APP_NAME", cx.app.as_str()),
        ("BALENA_SERVICE_NAME", cx.service.as_str()),
        ("BALENA_APP_RELEASE", cx.release),
    ] {
        if !spec.environment.contains_key(k) {
            env.push(format!("{k}={v}"));
        }
    }

    if let Some(api) = cx
        .supervisor_api
        .filter(|_| spec.labels.contains_key(SUPERVISOR_API_LABEL))
    {
        env.push(format!(
            "BALENA_SUPERVISOR_ADDRESS=http://{}:{}",
            api.host, api.port
        ));
        env.push(format!("BALENA_SUPERVISOR_HOST={}", api.host));
        env.push(format!("BALENA_SUPERVISOR_PORT={}", api.port));
        env.push(format!("BALENA_SUPERVISOR_API_KEY={}", api.key));
    }

    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    for p in &spec.ports {
        // Validated by the parser.
        if let Ok((_, _, container, proto)) = parse_port(p) {
            exposed.insert(format!("{container}/{proto}"), HashMap::new());
        }
    }
    for e in &spec.expose {
        if let Ok((start, end, proto)) = parse_expose(e) {
            for port in start..=end {
                exposed.insert(format!("{port}/{proto}"), HashMap::new());
            }
        }
    }

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(env),
        labels: Some(labels),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        domainname: spec.domainname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_grace_s().map(i64::from),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: spec.healthcheck.as_ref().map(health_config),
        host_config: Some(host::host_config(cx)),
        networking_config: net::networking_config(cx),
        ..Default::default()
    }
}

/// Durations in nanoseconds; `disable` is the engine's `["NONE"]`, an
/// empty test keeps the image's.
fn health_config(h: &Healthcheck) -> HealthConfig {
    let test = if h.disable {
        Some(vec!["NONE".to_owned()])
    } else {
        (!h.test.is_empty()).then(|| h.test.clone())
    };
    HealthConfig {
        test,
        interval: h.interval.map(|d| d.as_nanos_i64()),
        timeout: h.timeout.map(|d| d.as_nanos_i64()),
        retries: h.retries.map(i64::from),
        start_period: h.start_period.map(|d| d.as_nanos_i64()),
        start_interval: None,
    }
}

/// A `service:<name>` namespace reference as the engine takes it: the
/// container of that service's current config. Others pass unchanged.
fn resolve_shared(cx: &ServiceContext<'_>, mode: &str) -> String {
    match mode
        .strip_prefix("service:")
        .and_then(|s| ServiceName::new(s).ok())
    {
        Some(other) => format!(
            "container:{}",
            container_name(cx.app, &other, &cx.target.config_hash(&other))
        ),
        None => mode.to_owned(),
    }
}

#[cfg(test)]
mod tests;
