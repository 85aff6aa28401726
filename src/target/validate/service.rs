//! One service's fields, each alone and against each other. What refers
//! to other services or to the app's networks is checked in `app`.

use std::collections::BTreeMap;

use super::fields::{
    check_capability, check_cpuset, check_extra_host, check_group, check_healthcheck, check_ipc,
    check_pid, check_security_opt, check_shared, check_sysctl, check_ulimit, parse_expose,
};
use super::logging::check_logging;
use super::net::{check_search_domain, check_uts_name, parse_ip};
use super::q;
use super::values::{
    check_device, check_image, check_signal, check_tmpfs, check_user, check_volume, parse_port,
};
use super::{check_labels, check_map, clean, is_engine_name, no_nul, path_problem, Invalid};
use super::{escape, NAME_RULE};
use crate::engine::LOCK_MOUNTS;
use crate::target::spec::{HANDOVER_TIMEOUT_LABEL, STRATEGY_LABEL};
use crate::target::{ServiceSpec, Strategy};

/// The engine's smallest memory limit.
const MIN_MEMORY: u64 = 6 << 20;
/// The smallest CPU share the kernel schedules: a 1 ms quota per 100 ms.
const MIN_NANO_CPUS: u64 = 10_000_000;

/// Errors carry the path below the service.
pub(super) fn validate_service(s: &ServiceSpec) -> Result<(), Invalid> {
    let field = |f: &str, r: String| (f.to_owned(), r);
    let each = |name: &str, list: &[String], check: fn(&str) -> Result<(), String>| {
        for (i, v) in list.iter().enumerate() {
            check(v).map_err(|r| field(&format!("{name}[{i}]"), r))?;
        }
        Ok::<(), Invalid>(())
    };
    check_image(&s.image).map_err(|r| field("image", r))?;
    for (name, list) in [("command", &s.command), ("entrypoint", &s.entrypoint)] {
        each(name, list.as_deref().unwrap_or_default(), no_nul)?;
    }
    check_map("environment", &s.environment, |key| {
        if key.is_empty() || key.contains('=') {
            Err(format!(
                "{} is not a variable name (non-empty, without '=')",
                q(key)
            ))
        } else {
            Ok(())
        }
    })?;
    check_labels("labels", &s.labels)?;
    if let Some(v) = s.labels.get(STRATEGY_LABEL) {
        if Strategy::parse(v).is_none() {
            return Err(field(&format!("labels.{STRATEGY_LABEL}"), format!(
                "{} is not one of download-then-kill, kill-then-download, delete-then-download, hand-over", q(v))));
        }
    }
    if let Some(v) = s.labels.get(HANDOVER_TIMEOUT_LABEL) {
        if v.parse::<u64>().is_err() {
            return Err(field(
                &format!("labels.{HANDOVER_TIMEOUT_LABEL}"),
                format!("{} is not a number of milliseconds", q(v)),
            ));
        }
    }
    check_mounts(s)?;
    for (i, p) in s.ports.iter().enumerate() {
        parse_port(p).map_err(|r| field(&format!("ports[{i}]"), r))?;
    }
    for (i, p) in s.expose.iter().enumerate() {
        parse_expose(p).map_err(|r| field(&format!("expose[{i}]"), r))?;
    }
    each("devices", &s.devices, check_device)?;
    for (i, d) in s.devices.iter().enumerate() {
        // The container path (the host path when none is given: /dev/...).
        let inside = d.split(':').nth(1).unwrap_or(d);
        if let Some(why) = lock_dir_problem(inside) {
            return Err(field(&format!("devices[{i}]"), why));
        }
    }
    if let Some(v) = &s.network_mode {
        check_network_mode(v).map_err(|r| field("network_mode", r))?;
    }
    if let Some(v) = &s.working_dir {
        path_problem(v)
            .map_or(Ok(()), |p| Err(format!("{} {p}", q(v))))
            .map_err(|r| field("working_dir", r))?;
        // The engine makes a missing working directory; the lock
        // directory itself exists.
        let is_lock_dir = LOCK_MOUNTS.contains(&clean(v).as_str());
        if let Some(why) = lock_dir_problem(v).filter(|_| !is_lock_dir) {
            return Err(field("working_dir", why));
        }
    }
    if let Some(v) = &s.user {
        check_user(v).map_err(|r| field("user", r))?;
    }
    if let Some(v) = &s.stop_signal {
        check_signal(v).map_err(|r| field("stop_signal", r))?;
    }
    if s.stop_timeout.is_some() && s.stop_grace_period.is_some() {
        return Err(field(
            "stop_grace_period",
            "give stop_timeout (seconds) or stop_grace_period (a duration), not both".into(),
        ));
    }
    if let Some(h) = &s.healthcheck {
        check_healthcheck(h).map_err(|(f, r)| field(&format!("healthcheck.{f}"), r))?;
    }
    each("cap_add", &s.cap_add, check_capability)?;
    each("cap_drop", &s.cap_drop, check_capability)?;
    let net_host = s.network_mode.as_deref() == Some("host");
    let ipc_host = s.ipc.as_deref() == Some("host");
    check_map("sysctls", &s.sysctls, |k| {
        check_sysctl(k, net_host, ipc_host)
    })?;
    each("extra_hosts", &s.extra_hosts, check_extra_host)?;
    each("dns", &s.dns, |v| parse_ip(v).map(drop))?;
    each("dns_search", &s.dns_search, check_search_domain)?;
    for (name, v) in [("hostname", &s.hostname), ("domainname", &s.domainname)] {
        if let Some(v) = v {
            check_uts_name(v).map_err(|r| field(name, r))?;
        }
    }
    check_resources(s)?;
    each("security_opt", &s.security_opt, check_security_opt)?;
    each("group_add", &s.group_add, check_group)?;
    if let Some(v) = &s.ipc {
        check_ipc(v).map_err(|r| field("ipc", r))?;
    }
    if let Some(v) = &s.pid {
        check_pid(v).map_err(|r| field("pid", r))?;
    }
    if let Some(l) = &s.logging {
        check_logging(l).map_err(|(f, r)| field(&format!("logging.{f}"), r))?;
    }
    check_shared_network(s)
}

/// The lock directory (`LOCK_MOUNTS`) a container path is on or under.
fn in_lock_dir(path: &str) -> Option<&'static str> {
    let p = clean(path);
    LOCK_MOUNTS.into_iter().find(|m| {
        p.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// What is wrong with making `path` (a mount point, a device node, a
/// working directory) in the container: on or under `/tmp/balena` or
/// `/tmp/resin` the engine makes it inside the service's lock directory
/// on the host, where it stays as a lock nobody takes back (it outlives
/// the container and a corrected target). `/tmp` itself is fine: the
/// engine mounts the lock directory on top of it.
fn lock_dir_problem(path: &str) -> Option<String> {
    let lock = in_lock_dir(path)?;
    Some(format!(
        "{} is on or under {lock}, where holdfast mounts the service's lock directory: \
         the engine would make it inside that directory on the host, as a lock that \
         never goes away; use another path",
        q(path)
    ))
}

/// Volumes and tmpfs: each well-formed, none on or under the lock
/// directory, one mount per container path.
fn check_mounts(s: &ServiceSpec) -> Result<(), Invalid> {
    // Mount destinations the engine sees, to refuse a second mount on one.
    let mut mounts: BTreeMap<String, String> = BTreeMap::new();
    let mut mount_at = |dest: &str, by: String| {
        if let Some(why) = lock_dir_problem(dest) {
            return Err(why);
        }
        match mounts.get(&clean(dest)) {
            Some(other) => Err(format!("{} is already a mount point ({other})", q(dest))),
            None => {
                mounts.insert(clean(dest), by);
                Ok(())
            }
        }
    };
    for (i, v) in s.volumes.iter().enumerate() {
        let at = format!("volumes[{i}]");
        let dest = check_volume(v).map_err(|r| (at.clone(), r))?;
        mount_at(dest, at.clone()).map_err(|r| (at, r))?;
    }
    for (i, v) in s.tmpfs.iter().enumerate() {
        let at = format!("tmpfs[{i}]");
        let dest = check_tmpfs(v).map_err(|r| (at.clone(), r))?;
        mount_at(dest, at.clone()).map_err(|r| (at, r))?;
    }
    Ok(())
}

/// Memory, CPU, process and resource limits.
fn check_resources(s: &ServiceSpec) -> Result<(), Invalid> {
    let field = |f: &str, r: String| (f.to_owned(), r);
    let mem = s.mem_limit.map_or(0, |b| b.0);
    if mem != 0 && mem < MIN_MEMORY {
        return Err(field(
            "mem_limit",
            format!("{mem} bytes is below the engine's minimum of 6 MiB (\"6m\")"),
        ));
    }
    if let Some(swap) = s.memswap_limit.filter(|b| b.0 != 0) {
        if mem == 0 {
            return Err(field(
                "memswap_limit",
                "needs mem_limit too (memory plus swap is limited only with memory)".into(),
            ));
        }
        if swap.0 < mem {
            return Err(field(
                "memswap_limit",
                format!(
                    "{} bytes is below mem_limit ({mem} bytes); it limits memory plus swap, so it is at least mem_limit",
                    swap.0
                ),
            ));
        }
    }
    if let Some(c) = s.cpus.filter(|c| c.0 < MIN_NANO_CPUS) {
        return Err(field(
            "cpus",
            format!(
                "{} is below 0.01, the smallest CPU share the kernel schedules",
                c.0 as f64 / 1e9
            ),
        ));
    }
    if let Some(c) = s.cpu_shares.filter(|c| !(2..=262_144).contains(c)) {
        return Err(field(
            "cpu_shares",
            format!("{c} is not a CPU weight from 2 to 262144 (the kernel's range; 1024 is the default)"),
        ));
    }
    if let Some(v) = &s.cpuset {
        check_cpuset(v).map_err(|r| field("cpuset", r))?;
    }
    if let Some(p) = s.pids_limit.filter(|p| *p != -1 && *p <= 0) {
        return Err(field(
            "pids_limit",
            format!("{p} is not a process limit: -1 (unlimited) or a number from 1"),
        ));
    }
    for (name, u) in &s.ulimits {
        check_ulimit(name, u).map_err(|r| field(&format!("ulimits.{}", escape(name)), r))?;
    }
    if let Some(o) = s.oom_score_adj.filter(|o| !(-1000..=1000).contains(o)) {
        return Err(field(
            "oom_score_adj",
            format!("{o} is not from -1000 to 1000"),
        ));
    }
    Ok(())
}

pub(super) fn check_network_mode(v: &str) -> Result<(), String> {
    if v.contains(':') {
        return check_shared(v, "bridge, host, none, a network name");
    }
    // bridge, host and none are names of this form too.
    if !is_engine_name(v) {
        return Err(format!(
            "{} is not bridge, host, none, a network name ({NAME_RULE}), \
             container:<name> or service:<service of the app>",
            q(v)
        ));
    }
    Ok(())
}

/// In another container's network namespace, what configures the network
/// is that container's: the engine refuses these at create.
fn check_shared_network(s: &ServiceSpec) -> Result<(), Invalid> {
    let Some(mode) = s
        .network_mode
        .as_deref()
        .filter(|m| m.starts_with("container:") || m.starts_with("service:"))
    else {
        return Ok(());
    };
    let set = [
        ("hostname", s.hostname.is_some()),
        ("dns", !s.dns.is_empty()),
        ("extra_hosts", !s.extra_hosts.is_empty()),
        ("ports", !s.ports.is_empty()),
        ("expose", !s.expose.is_empty()),
    ];
    match set.iter().find(|(_, on)| *on) {
        Some((name, _)) => Err((
            (*name).to_owned(),
            format!(
                "cannot be set with network_mode {}: the network is the other container's \
                 (set it there)",
                q(mode)
            ),
        )),
        None => Ok(()),
    }
}
