//! A service's HostConfig: mounts, devices, ports, restart policy,
//! namespaces, resources, security and logging.

use std::collections::HashMap;

use bollard::models::{
    DeviceMapping, HostConfig, HostConfigLogConfig, PortBinding, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::{net, resolve_shared, ServiceContext, LOCK_MOUNTS};
use crate::target::{parse_port, scoped_name, RestartPolicy as Restart};

/// `None` for an empty list: the engine's default, and no noise in inspect.
fn some<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

pub(super) fn host_config(cx: &ServiceContext<'_>) -> HostConfig {
    let spec = cx.spec;
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        // Validated by the parser.
        if let Ok((ip, host, container, proto)) = parse_port(p) {
            bindings
                .entry(format!("{container}/{proto}"))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: ip,
                    host_port: Some(host.to_string()),
                });
        }
    }
    let restart = match spec.restart_policy() {
        Restart::No => RestartPolicyNameEnum::NO,
        Restart::Always => RestartPolicyNameEnum::ALWAYS,
        Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    };
    let ulimits: Vec<ResourcesUlimits> = spec
        .ulimits
        .iter()
        .map(|(name, u)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(u.soft),
            hard: Some(u.hard),
        })
        .collect();
    let bytes = |b: Option<crate::target::Bytes>| b.map(|b| i64::try_from(b.0).unwrap_or(i64::MAX));

    HostConfig {
        binds: Some(binds(cx)),
        tmpfs: tmpfs(cx),
        restart_policy: Some(RestartPolicy {
            name: Some(restart),
            maximum_retry_count: None,
        }),
        network_mode: net::network_mode(cx),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        privileged: spec.privileged.then_some(true),
        devices: some(devices(cx)),
        cap_add: some(spec.cap_add.clone()),
        cap_drop: some(spec.cap_drop.clone()),
        sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone().into_iter().collect()),
        extra_hosts: some(spec.extra_hosts.clone()),
        dns: some(spec.dns.clone()),
        dns_search: some(spec.dns_search.clone()),
        memory: bytes(spec.mem_limit),
        memory_swap: bytes(spec.memswap_limit),
        nano_cpus: spec.cpus.map(|c| i64::try_from(c.0).unwrap_or(i64::MAX)),
        cpu_shares: spec.cpu_shares.map(i64::from),
        cpuset_cpus: spec.cpuset.clone(),
        pids_limit: spec.pids_limit,
        ulimits: some(ulimits),
        shm_size: bytes(spec.shm_size),
        readonly_rootfs: spec.read_only.then_some(true),
        init: spec.init,
        security_opt: some(spec.security_opt.clone()),
        group_add: some(spec.group_add.clone()),
        ipc_mode: spec.ipc.as_deref().map(|m| resolve_shared(cx, m)),
        pid_mode: spec.pid.as_deref().map(|m| resolve_shared(cx, m)),
        log_config: spec.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
        }),
        oom_score_adj: spec.oom_score_adj.map(i64::from),
        ..Default::default()
    }
}

/// The service's volumes, a name made the app's (`data:/x` is
/// `<app>_data:/x`; host paths stay), and the lock directory.
fn binds(cx: &ServiceContext<'_>) -> Vec<String> {
    let mut binds: Vec<String> = cx
        .spec
        .volumes
        .iter()
        .map(|v| match v.split_once(':') {
            Some((src, rest)) if !src.starts_with('/') => {
                format!("{}:{rest}", scoped_name(cx.app, src))
            }
            _ => v.clone(),
        })
        .collect();
    for m in LOCK_MOUNTS {
        binds.push(format!("{}:{m}", cx.lock_dir.display()));
    }
    binds
}

fn tmpfs(cx: &ServiceContext<'_>) -> Option<HashMap<String, String>> {
    let tmpfs: HashMap<String, String> = cx
        .spec
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_owned(), o.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect();
    (!tmpfs.is_empty()).then_some(tmpfs)
}

fn devices(cx: &ServiceContext<'_>) -> Vec<DeviceMapping> {
    cx.spec
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
        .collect()
}
