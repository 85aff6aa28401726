//! The engine's create-container body for a service (pure): the target's
//! config plus what every managed container gets (labels, lock mounts,
//! balena-compatible environment). `host` maps the HostConfig, `net` the
//! app networks the container joins.

mod env;
mod host;
mod net;

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HealthConfig};

pub use env::{balena_arch, machine_arch, os_pretty_name, SupervisorApi};
pub use net::{api_route, extra_networks, ApiRoute};

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
    /// Where this container reaches the HTTP API (its network's gateway,
    /// or loopback with host networking) and its app's key; given to
    /// services labelled `io.balena.features.supervisor-api`.
    pub supervisor_api: Option<&'a SupervisorApi>,
}

/// The container name for a service at a config hash: deterministic, so a
/// create repeated after a crash finds the first one instead of duplicating,
/// and a service sharing another's namespace can name its container.
pub fn container_name(app: &AppName, service: &ServiceName, hash: &str) -> String {
    format!("{app}_{service}_{hash}")
}

pub fn create_body(cx: &ServiceContext<'_>) -> ContainerCreateBody {
    let spec = cx.spec;
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL_APP.into(), cx.app.to_string());
    labels.insert(LABEL_SERVICE.into(), cx.service.to_string());
    labels.insert(LABEL_RELEASE.into(), cx.release.to_owned());
    labels.insert(LABEL_HASH.into(), cx.hash.to_owned());

    let env = env::environment(cx);

    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    for p in &spec.ports {
        // Validated by the parser.
        if let Ok((_, _, container, proto)) = parse_port(p) {
            exposed.insert(format!("{container}/{proto}"), HashMap::new());
        }
    }
    // Each port once: an item per port of 1-65535 would otherwise spell
    // the whole range out again for every item.
    let mut ranges: Vec<(&str, u16, u16)> = spec
        .expose
        .iter()
        .filter_map(|e| parse_expose(e).ok())
        .map(|(start, end, proto)| (proto, start, end))
        .collect();
    ranges.sort_unstable();
    let mut done: Option<(&str, u16)> = None;
    for (proto, start, end) in ranges {
        let from = match done {
            Some((p, last)) if p == proto && last >= end => continue,
            Some((p, last)) if p == proto && last >= start => last + 1,
            _ => start,
        };
        for port in from..=end {
            exposed.insert(format!("{port}/{proto}"), HashMap::new());
        }
        done = Some((proto, end));
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
