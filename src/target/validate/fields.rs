//! Checks of single service values the engine (or runc, when the container
//! starts) would refuse. Each says what is accepted.

use super::net::parse_ip;
use super::no_nul;
use super::q;
use crate::target::{Healthcheck, Ulimit};

/// Linux capabilities by name (without `CAP_`), up to Linux 5.9's
/// CHECKPOINT_RESTORE: the engine refuses any other name.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// `ALL` or a capability name, any case, `CAP_` optional (the engine
/// upper-cases and prefixes it).
pub(super) fn check_capability(v: &str) -> Result<(), String> {
    let upper = v.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if upper == "ALL" || CAPABILITIES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a Linux capability: give ALL or a name such as NET_ADMIN or CAP_NET_ADMIN (see capabilities(7))", q(v)
        ))
    }
}

/// The IPC namespace's sysctls (runc's list): refused with `ipc: host`.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// A sysctl the container may set: one in a namespace of its own (runc
/// refuses the others when the container starts). `net_host`/`ipc_host`:
/// the service shares the host's network or IPC namespace.
pub(super) fn check_sysctl(key: &str, net_host: bool, ipc_host: bool) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-/".contains(c);
    if key.is_empty() || !key.chars().all(ok_char) || key.starts_with(['.', '/']) {
        return Err(format!(
            "{} is not a sysctl name: lower-case letters, digits, '_', '.', '-' and '/' (e.g. net.ipv4.ip_forward)", q(key)
        ));
    }
    let dotted = key.replace('/', ".");
    if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        if ipc_host {
            return Err(format!(
                "{} is in the IPC namespace, which `ipc: host` shares with the host; runc refuses it", q(key)
            ));
        }
        return Ok(());
    }
    if dotted.starts_with("net.") {
        if net_host {
            return Err(format!(
                "{} is in the network namespace, which `network_mode: host` shares with the host; runc refuses it", q(key)
            ));
        }
        return Ok(());
    }
    if dotted == "kernel.domainname" {
        return Ok(());
    }
    Err(format!(
        "{} is not in a namespace of the container's own, so runc refuses it: \
         net.*, fs.mqueue.*, kernel.domainname and the IPC ones ({}) are allowed{}",
        q(key),
        IPC_SYSCTLS.join(", "),
        if dotted == "kernel.hostname" {
            "; set `hostname` instead"
        } else {
            ""
        }
    ))
}

/// `host:ip` for /etc/hosts: the ip an IPv4 or IPv6 address or
/// `host-gateway` (the engine's address of the host).
pub(super) fn check_extra_host(v: &str) -> Result<(), String> {
    let shape = || {
        format!(
            "{} is not host:ip (e.g. db.local:10.0.0.2, or host:host-gateway)",
            q(v)
        )
    };
    let (host, ip) = v.split_once(':').ok_or_else(shape)?;
    if !super::net::dns_name(host, true, false, 253) {
        return Err(format!(
            "{}: the host {} is not a DNS name (letters, digits, '-', '_', dot-separated)",
            shape(),
            q(host)
        ));
    }
    if ip != "host-gateway" {
        parse_ip(ip).map_err(|r| format!("{}: {r}", shape()))?;
    }
    Ok(())
}

/// A number (gid) or a group name as groupadd accepts it.
pub(super) fn check_group(v: &str) -> Result<(), String> {
    if super::values::id_or_name(v) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a group: a number (gid) or a name of up to 32 characters: \
             a lower-case letter or '_', then lower-case letters, digits, '_', '.' or '-'",
            q(v)
        ))
    }
}

/// `0-3,5`: CPU numbers and ascending ranges, comma-separated.
pub(super) fn check_cpuset(v: &str) -> Result<(), String> {
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let ok = !v.is_empty()
        && v.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => matches!((num(a), num(b)), (Some(a), Some(b)) if a <= b),
            None => num(part).is_some(),
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a CPU list: numbers and ascending ranges, comma-separated (e.g. 0-1 or 0,2-3)", q(v)
        ))
    }
}

/// The engine's ulimit names (`as` it leaves out).
const ULIMITS: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

pub(super) fn check_ulimit(name: &str, u: &Ulimit) -> Result<(), String> {
    if !ULIMITS.contains(&name) {
        return Err(format!(
            "{} is not a ulimit the engine sets: one of {}",
            q(name),
            ULIMITS.join(", ")
        ));
    }
    for (what, v) in [("soft", u.soft), ("hard", u.hard)] {
        if v < -1 {
            return Err(format!(
                "the {what} limit {v} is not a limit: -1 (unlimited) or a number from 0"
            ));
        }
    }
    // -1 is RLIM_INFINITY, above every number.
    let rank = |v: i64| if v == -1 { i64::MAX } else { v };
    if rank(u.soft) > rank(u.hard) {
        return Err(format!(
            "the soft limit {} is above the hard limit {}; setrlimit(2) refuses that",
            u.soft, u.hard
        ));
    }
    Ok(())
}

/// Go's strconv.ParseBool, which the engine uses for option values.
pub(super) fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `no-new-privileges[=bool]`, `label=...`, `apparmor=profile`,
/// `seccomp=unconfined|{json}`; `:` works as the separator too.
pub(super) fn check_security_opt(v: &str) -> Result<(), String> {
    if v == "no-new-privileges" {
        return Ok(());
    }
    let accepted = "accepted: no-new-privileges[=true|false], label=disable, \
                    label=user|role|type|level|filetype:VALUE, apparmor=PROFILE, \
                    seccomp=unconfined or seccomp={profile JSON}";
    let Some((key, value)) = v.split_once('=').or_else(|| v.split_once(':')) else {
        return Err(format!("{} is not a security option; {accepted}", q(v)));
    };
    let ok = match key {
        "no-new-privileges" => go_bool(value).is_some(),
        "apparmor" => !value.is_empty() && !value.contains(char::is_whitespace),
        // The engine reads a profile as JSON text, not from a path.
        "seccomp" => {
            value == "unconfined"
                || (value.trim_start().starts_with('{')
                    && serde_json::from_str::<serde_json::Value>(value).is_ok())
        }
        "label" => {
            value == "disable"
                || value.split_once(':').is_some_and(|(k, val)| {
                    matches!(k, "user" | "role" | "type" | "level" | "filetype") && !val.is_empty()
                })
        }
        _ => false,
    };
    if ok {
        no_nul(v)
    } else {
        Err(format!("{} is not a security option; {accepted}", q(v)))
    }
}

/// `ipc`: the engine's modes, or another container's or service's.
pub(super) fn check_ipc(v: &str) -> Result<(), String> {
    if matches!(v, "private" | "shareable" | "host" | "none") {
        return Ok(());
    }
    check_shared(v, "private, shareable, host, none")
}

/// `pid`: the host's, or another container's or service's.
pub(super) fn check_pid(v: &str) -> Result<(), String> {
    if v == "host" {
        return Ok(());
    }
    check_shared(v, "host")
}

/// `container:<name>` or `service:<service>` (the latter checked against
/// the app by the caller).
pub(super) fn check_shared(v: &str, modes: &str) -> Result<(), String> {
    let accepted = format!("{modes}, container:<name> or service:<service of the app>");
    if let Some(name) = v.strip_prefix("container:") {
        if super::is_engine_name(name) && name.len() >= 2 {
            return Ok(());
        }
        return Err(format!(
            "{}: {} is not a container name (2 or more characters: {}); accepted: {accepted}",
            q(v),
            q(name),
            super::NAME_RULE
        ));
    }
    if let Some(name) = v.strip_prefix("service:") {
        if crate::names::ServiceName::new(name).is_ok() {
            return Ok(());
        }
        return Err(format!(
            "{}: {} is not a service name; accepted: {accepted}",
            q(v),
            q(name)
        ));
    }
    Err(format!("{} is not one of {accepted}", q(v)))
}

/// `port[/tcp|udp]` or `start-end[/tcp|udp]`: (start, end, protocol).
pub(crate) fn parse_expose(v: &str) -> Result<(u16, u16, &str), String> {
    let bad = || {
        format!("{} is not port[/tcp|udp] or start-end[/tcp|udp], ports 1-65535 (e.g. 8080 or 9000-9010/udp)", q(v))
    };
    let (ports, proto) = match v.split_once('/') {
        Some((p, proto @ ("tcp" | "udp"))) => (p, proto),
        Some(_) => return Err(bad()),
        None => (v, "tcp"),
    };
    let port = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok().filter(|n| *n > 0))
            .flatten()
            .ok_or_else(bad)
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if start > end {
        return Err(format!("{}: the range goes downwards", bad()));
    }
    Ok((start, end, proto))
}

/// Errors carry the path below `healthcheck`.
pub(super) fn check_healthcheck(h: &Healthcheck) -> Result<(), (String, String)> {
    let test = |r: String| ("test".to_owned(), r);
    for (i, item) in h.test.iter().enumerate() {
        no_nul(item).map_err(|r| (format!("test[{i}]"), r))?;
    }
    match h.test.first().map(String::as_str) {
        None => {}
        Some("CMD") if h.test.len() < 2 || h.test[1].is_empty() => {
            return Err(test(
                "[\"CMD\", ...] needs a program to run after \"CMD\"".into(),
            ))
        }
        Some("CMD") => {}
        Some("CMD-SHELL") if h.test.len() != 2 || h.test[1].trim().is_empty() => {
            return Err(test(
                "[\"CMD-SHELL\", \"command\"] takes exactly one non-empty shell command".into(),
            ))
        }
        Some("CMD-SHELL") => {}
        Some("NONE") if h.test.len() != 1 => {
            return Err(test(
                "[\"NONE\"] takes nothing after it (it turns the image's healthcheck off)".into(),
            ))
        }
        Some("NONE") => {}
        Some(other) => {
            return Err(test(format!(
            "the first item {} is not CMD, CMD-SHELL or NONE (or give a string: a shell command)",
            q(other)
        )))
        }
    }
    for (name, d) in [
        ("interval", h.interval),
        ("timeout", h.timeout),
        ("start_period", h.start_period),
    ] {
        if let Some(d) = d {
            if !d.0.is_zero() && d.0 < std::time::Duration::from_millis(1) {
                return Err((
                    name.into(),
                    format!(
                        "{} is below 1ms, which the engine refuses (0 means its default)",
                        d.to_text()
                    ),
                ));
            }
        }
    }
    if h.retries == Some(0) {
        return Err((
            "retries".into(),
            "must be 1 or more (leave it out for the engine's default, 3)".into(),
        ));
    }
    Ok(())
}
