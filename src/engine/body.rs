//! The engine's create-container body for a service (pure): the target's
//! config plus what every managed container gets (labels, lock mounts,
//! balena-compatible environment).

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::names::{AppName, ServiceName};
use crate::target::parse_port;
use crate::target::{RestartPolicy as Restart, ServiceSpec};

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
    pub spec: &'a ServiceSpec,
    /// The service's config hash (`AppTarget::config_hash`).
    pub hash: &'a str,
    /// Host directory `<lock_root>/<app>/<service>`.
    pub lock_dir: &'a Path,
    /// The HTTP API on TCP, for services labelled
    /// `io.balena.features.supervisor-api`.
    pub supervisor_api: Option<&'a SupervisorApi>,
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

    let mut binds = spec.volumes.clone();
    for m in LOCK_MOUNTS {
        binds.push(format!("{}:{m}", cx.lock_dir.display()));
    }
    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_owned(), o.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        // Validated by the parser.
        if let Ok((ip, host, container, proto)) = parse_port(p) {
            let key = format!("{container}/{proto}");
            exposed.insert(key.clone(), HashMap::new());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: ip,
                    host_port: Some(host.to_string()),
                });
        }
    }
    let devices: Vec<DeviceMapping> = spec
        .devices
        .iter()
        .map(|d| {
            let mut parts = d.splitn(3, ':');
            let host = parts.next().unwrap_or_default().to_owned();
            let inside = parts
                .next()
                .map(str::to_owned)
                .unwrap_or_else(|| host.clone());
            let perms = parts.next().unwrap_or("rwm").to_owned();
            DeviceMapping {
                path_on_host: Some(host),
                path_in_container: Some(inside),
                cgroup_permissions: Some(perms),
            }
        })
        .collect();
    let restart = match spec.restart_policy() {
        Restart::No => RestartPolicyNameEnum::NO,
        Restart::Always => RestartPolicyNameEnum::ALWAYS,
        Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(env),
        labels: Some(labels),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout.map(i64::from),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            binds: Some(binds),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            network_mode: spec.network_mode.clone(),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            privileged: spec.privileged.then_some(true),
            devices: (!devices.is_empty()).then_some(devices),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_gets_labels_lock_mounts_and_env() {
        let spec: ServiceSpec = serde_json::from_str(
            r#"{"image": "a:1", "environment": {"K": "V"}, "ports": ["8080:80"],
                "devices": ["/dev/ttyS0"], "tmpfs": ["/run:size=1m"], "restart": "no"}"#,
        )
        .unwrap();
        let app = AppName::new("app1").unwrap();
        let service = ServiceName::new("main").unwrap();
        let body = create_body(&ServiceContext {
            app: &app,
            service: &service,
            release: "r1",
            spec: &spec,
            hash: "h",
            lock_dir: Path::new("/run/holdfast/locks/app1/main"),
            supervisor_api: None,
        });
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_APP], "app1");
        assert_eq!(labels[LABEL_HASH], "h");
        let env = body.env.unwrap();
        assert!(env.contains(&"K=V".to_string()));
        assert!(env.contains(&"BALENA_APP_LOCK_PATH=/tmp/balena/updates.lock".to_string()));
        assert!(env.contains(&"RESIN_SERVICE_KILL_ME_PATH=/tmp/resin/resin-kill-me".to_string()));
        let hc = body.host_config.unwrap();
        assert_eq!(
            hc.binds.unwrap(),
            [
                "/run/holdfast/locks/app1/main:/tmp/balena",
                "/run/holdfast/locks/app1/main:/tmp/resin"
            ]
        );
        assert_eq!(
            hc.port_bindings.unwrap()["80/tcp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("8080")
        );
        assert_eq!(hc.tmpfs.unwrap()["/run"], "size=1m");
        assert_eq!(
            hc.devices.unwrap()[0].path_in_container.as_deref(),
            Some("/dev/ttyS0")
        );
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
    }
}

#[cfg(test)]
mod api_env_tests {
    use super::*;

    #[test]
    fn only_labelled_services_learn_the_api_address_and_key() {
        let app = AppName::new("a").unwrap();
        let service = ServiceName::new("s").unwrap();
        let api = SupervisorApi::from_bind("0.0.0.0:48484".parse().unwrap(), "k3y");
        let env_of = |labels: &str| {
            let spec: ServiceSpec =
                serde_json::from_str(&format!(r#"{{"image": "i", "labels": {labels}}}"#)).unwrap();
            create_body(&ServiceContext {
                app: &app,
                service: &service,
                release: "r",
                spec: &spec,
                hash: "h",
                lock_dir: Path::new("/l"),
                supervisor_api: Some(&api),
            })
            .env
            .unwrap()
        };
        let with = env_of(r#"{"io.balena.features.supervisor-api": "1"}"#);
        assert!(with.contains(&"BALENA_SUPERVISOR_ADDRESS=http://127.0.0.1:48484".to_string()));
        assert!(with.contains(&"BALENA_SUPERVISOR_API_KEY=k3y".to_string()));
        assert!(!env_of("{}")
            .iter()
            .any(|e| e.starts_with("BALENA_SUPERVISOR_")));
    }
}
