//! Semantic checks of a parsed target. A value the engine refuses would
//! only fail at container create, after the old containers are already
//! stopped, leaving the app with none: such values are refused here,
//! before anything is touched. Errors are (JSON path, reason).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::spec::{
    AppTarget, ServiceSpec, Strategy, Target, FORMAT_VERSION, HANDOVER_TIMEOUT_LABEL,
    STRATEGY_LABEL,
};
use super::strict::escape;
use crate::engine::LOCK_MOUNTS;

type Invalid = (String, String);

const NAME_RULE: &str = "a letter or digit, then letters, digits, '_', '.' or '-'";

pub(super) fn validate(t: &Target) -> Result<(), Invalid> {
    if t.version != FORMAT_VERSION {
        return Err((
            "version".into(),
            format!(
                "unsupported version {} (this holdfast reads {FORMAT_VERSION})",
                t.version
            ),
        ));
    }
    for (key, value) in &t.config {
        let at = format!("config.{}", escape(key));
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((at, "keys are letters, digits and '_'".into()));
        }
        if key == crate::bootcfg::PREFIX {
            return Err((at, "names no config.txt key".into()));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err((at, "values are one line, without NUL".into()));
        }
    }
    for (app, a) in &t.apps {
        validate_app(app.as_str(), a)?;
    }
    Ok(())
}

fn validate_app(app: &str, a: &AppTarget) -> Result<(), Invalid> {
    let release = format!("apps.{app}.release");
    if a.release.trim().is_empty() {
        return Err((release, "must not be empty".into()));
    }
    // The release goes into labels, the environment, status lines and the
    // D-Bus reply; a control character breaks the last two.
    if a.release.contains(char::is_control) {
        return Err((
            release,
            format!("{:?} contains a control character", a.release),
        ));
    }
    for (name, s) in &a.services {
        let base = format!("apps.{app}.services.{name}");
        let at = |field: &str| format!("{base}.{field}");
        for dep in s.depends_on.keys() {
            if !a.services.contains_key(dep) {
                return Err((
                    at("depends_on"),
                    format!("{dep} is not a service of app {app}"),
                ));
            }
            if dep == name {
                return Err((at("depends_on"), "a service cannot depend on itself".into()));
            }
        }
        validate_service(s).map_err(|(field, reason)| (at(&field), reason))?;
    }
    a.dependency_order().map(drop).map_err(|(_, n)| {
        (
            format!("apps.{app}.services.{n}.depends_on"),
            "dependency cycle".to_owned(),
        )
    })
}

/// Errors carry the path below the service.
fn validate_service(s: &ServiceSpec) -> Result<(), Invalid> {
    let field = |f: &str, r: String| (f.to_owned(), r);
    if s.image.trim().is_empty() || s.image.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(field(
            "image",
            format!("{:?} is not an image reference", s.image),
        ));
    }
    for (name, list) in [("command", &s.command), ("entrypoint", &s.entrypoint)] {
        for (i, v) in list.iter().flatten().enumerate() {
            no_nul(v).map_err(|r| field(&format!("{name}[{i}]"), r))?;
        }
    }
    check_map("environment", &s.environment, |key| {
        if key.is_empty() || key.contains('=') {
            Err(format!(
                "{key:?} is not a variable name (non-empty, without '=')"
            ))
        } else {
            Ok(())
        }
    })?;
    check_map("labels", &s.labels, |_| Ok(()))?;
    if let Some(v) = s.labels.get(STRATEGY_LABEL) {
        if Strategy::parse(v).is_none() {
            return Err(field(&format!("labels.{STRATEGY_LABEL}"), format!(
                "{v:?} is not one of download-then-kill, kill-then-download, delete-then-download, hand-over")));
        }
    }
    if let Some(v) = s.labels.get(HANDOVER_TIMEOUT_LABEL) {
        if v.parse::<u64>().is_err() {
            return Err(field(
                &format!("labels.{HANDOVER_TIMEOUT_LABEL}"),
                format!("{v:?} is not a number of milliseconds"),
            ));
        }
    }

    // Mount destinations the engine sees, to refuse a second mount on one.
    let mut mounts: BTreeMap<String, String> = LOCK_MOUNTS
        .iter()
        .map(|m| ((*m).to_owned(), "holdfast's lock directory".to_owned()))
        .collect();
    let mut mount_at = |dest: &str, by: String| match mounts.get(&clean(dest)) {
        Some(other) => Err(format!("{dest:?} is already a mount point ({other})")),
        None => {
            mounts.insert(clean(dest), by);
            Ok(())
        }
    };
    for (i, v) in s.volumes.iter().enumerate() {
        let at = format!("volumes[{i}]");
        let dest = check_volume(v).map_err(|r| field(&at, r))?;
        mount_at(dest, at.clone()).map_err(|r| field(&at, r))?;
    }
    for (i, v) in s.tmpfs.iter().enumerate() {
        let at = format!("tmpfs[{i}]");
        let dest = check_tmpfs(v).map_err(|r| field(&at, r))?;
        mount_at(dest, at.clone()).map_err(|r| field(&at, r))?;
    }

    for (i, p) in s.ports.iter().enumerate() {
        parse_port(p).map_err(|r| field(&format!("ports[{i}]"), r))?;
    }
    for (i, v) in s.devices.iter().enumerate() {
        check_device(v).map_err(|r| field(&format!("devices[{i}]"), r))?;
    }
    if let Some(v) = &s.network_mode {
        check_network_mode(v).map_err(|r| field("network_mode", r))?;
    }
    if let Some(v) = &s.working_dir {
        path_problem(v)
            .map_or(Ok(()), |p| Err(format!("{v:?} {p}")))
            .map_err(|r| field("working_dir", r))?;
    }
    if let Some(v) = &s.user {
        check_user(v).map_err(|r| field("user", r))?;
    }
    if let Some(v) = &s.stop_signal {
        check_signal(v).map_err(|r| field("stop_signal", r))?;
    }
    Ok(())
}

/// No NUL in keys or values; `key_rule` adds the map's own key rule.
fn check_map(
    name: &str,
    map: &BTreeMap<String, String>,
    key_rule: impl Fn(&str) -> Result<(), String>,
) -> Result<(), Invalid> {
    for (key, value) in map {
        let at = format!("{name}.{}", escape(key));
        key_rule(key).map_err(|r| (at.clone(), r))?;
        no_nul(key).map_err(|r| (at.clone(), format!("the name: {r}")))?;
        no_nul(value).map_err(|r| (at, r))?;
    }
    Ok(())
}

fn no_nul(v: &str) -> Result<(), String> {
    if v.contains('\0') {
        Err(format!(
            "{v:?} contains a NUL character, which the engine refuses"
        ))
    } else {
        Ok(())
    }
}

/// What is wrong with a path that must be absolute, if anything.
fn path_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        Some("is not an absolute path (it must start with '/')")
    } else if p.split('/').any(|c| c == "..") {
        Some("has a '..' component; give the path without it")
    } else if p.contains('\0') {
        Some("contains a NUL character")
    } else {
        None
    }
}

/// `/a//b/./c/` and `/a/b/c` are one mount point to the engine.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A volume or network name as the engine accepts it.
fn is_engine_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `source:/container/path[:ro|rw]`; returns the container path.
fn check_volume(v: &str) -> Result<&str, String> {
    let shape = || format!("{v:?} is not source:/container/path[:ro|rw]");
    let (src, dest) = match v.split(':').collect::<Vec<_>>().as_slice() {
        [src, dest] => (*src, *dest),
        [src, dest, "ro" | "rw"] => (*src, *dest),
        [_, _, mode] => return Err(format!("{}: the mode is ro or rw, not {mode:?}", shape())),
        _ => return Err(shape()),
    };
    if src.starts_with('/') {
        if let Some(p) = path_problem(src) {
            return Err(format!("{v:?}: host path {src:?} {p}"));
        }
    } else if !is_engine_name(src) {
        return Err(format!(
            "{v:?}: source {src:?} is neither an absolute host path nor a volume name ({NAME_RULE})"
        ));
    } else if src.len() < 2 {
        return Err(format!(
            "{v:?}: volume name {src:?} is too short; the engine needs at least 2 characters"
        ));
    }
    if let Some(p) = path_problem(dest) {
        return Err(format!("{v:?}: container path {dest:?} {p}"));
    }
    if clean(dest) == "/" {
        return Err(format!("{v:?}: the container path cannot be '/' itself"));
    }
    Ok(dest)
}

/// `/container/path[:options]`; returns the container path.
fn check_tmpfs(v: &str) -> Result<&str, String> {
    let (dest, options) = match v.split_once(':') {
        Some((d, o)) => (d, Some(o)),
        None => (v, None),
    };
    if let Some(p) = path_problem(dest) {
        return Err(format!("{v:?}: container path {dest:?} {p}"));
    }
    if let Some(o) = options {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "=,_-".contains(c);
        if !o.chars().all(ok) {
            return Err(format!(
                "{v:?}: mount options {o:?} may contain only a-z, 0-9, '=', ',', '_' and '-' (e.g. size=64m,mode=1777)"
            ));
        }
    }
    Ok(dest)
}

/// `/dev/host[:/container/path[:perms]]`.
fn check_device(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() > 3 {
        return Err(format!(
            "{v:?} is not /dev/host-path[:/container-path[:permissions]]"
        ));
    }
    let host = parts[0];
    match path_problem(host) {
        Some(p) => return Err(format!("{v:?}: host path {host:?} {p}")),
        None if !host.starts_with("/dev/") || clean(host) == "/dev" => {
            return Err(format!(
                "{v:?}: host path {host:?} is not a device under /dev/"
            ))
        }
        None => {}
    }
    if let Some(inside) = parts.get(1) {
        if let Some(p) = path_problem(inside) {
            return Err(format!(
                "{v:?}: container path {inside:?} {p} (to give only permissions, repeat the path: {host}:{host}:rw)"
            ));
        }
    }
    if let Some(perms) = parts.get(2) {
        let mut seen = String::new();
        for c in perms.chars() {
            if !"rwm".contains(c) || seen.contains(c) {
                break;
            }
            seen.push(c);
        }
        if perms.is_empty() || seen.len() != perms.len() {
            return Err(format!(
                "{v:?}: permissions {perms:?} are not some of r, w and m, each at most once (e.g. rwm or r)"
            ));
        }
    }
    Ok(())
}

fn check_network_mode(v: &str) -> Result<(), String> {
    if v.starts_with("container:") {
        return Err(format!(
            "{v:?} shares another container's network; not supported (use bridge, host, none or a network name)"
        ));
    }
    if v.starts_with("service:") {
        return Err(format!(
            "{v:?} shares another service's network; not supported yet (use bridge, host, none or a network name)"
        ));
    }
    // bridge, host and none are names of this form too.
    if !is_engine_name(v) {
        return Err(format!(
            "{v:?} is not bridge, host, none or a network name ({NAME_RULE})"
        ));
    }
    Ok(())
}

/// `user[:group]`, each a number or a name as useradd accepts it.
fn check_user(v: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            return p.parse::<u32>().is_ok();
        }
        let body = p.strip_suffix('$').unwrap_or(p);
        let mut chars = body.chars();
        p.len() <= 32
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
            })
    };
    let ok = match v.split_once(':') {
        Some((user, group)) => part_ok(user) && part_ok(group),
        None => part_ok(v),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not user[:group]: each a number (uid, gid) or a name of up to 32 characters: \
             a lower-case letter or '_', then lower-case letters, digits, '_', '.' or '-', \
             optionally ending in '$'"
        ))
    }
}

/// Highest `RTMIN+n` and `RTMAX-n` the engine knows by name.
const RTMIN_PLUS_MAX: u8 = 15;
const RTMAX_MINUS_MAX: u8 = 14;
/// Other Linux names of signals nix lists under one name.
const SIGNAL_ALIASES: [&str; 3] = ["IOT", "POLL", "CLD"];

/// A Linux signal name (any case, `SIG` optional) or number 1-64, as the
/// engine parses stop signals.
fn check_signal(v: &str) -> Result<(), String> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        if v.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n)) {
            return Ok(());
        }
        return Err(format!("{v:?} is not a signal number; numbers are 1-64"));
    }
    let upper = v.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset = |rest: &str, max: u8| {
        // Exactly as the engine spells them: no sign, no leading zero.
        rest.parse::<u8>()
            .is_ok_and(|n| (1..=max).contains(&n) && n.to_string() == rest)
    };
    let known = nix::sys::signal::Signal::iterator()
        .any(|s| s.as_str().strip_prefix("SIG") == Some(name))
        || SIGNAL_ALIASES.contains(&name)
        || matches!(name, "RTMIN" | "RTMAX")
        || name
            .strip_prefix("RTMIN+")
            .is_some_and(|r| offset(r, RTMIN_PLUS_MAX))
        || name
            .strip_prefix("RTMAX-")
            .is_some_and(|r| offset(r, RTMAX_MINUS_MAX));
    if known {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a Linux signal: give a name such as SIGTERM or TERM \
             (SIGRTMIN+1 to SIGRTMIN+15, SIGRTMAX-14 to SIGRTMAX-1, SIGRTMIN, SIGRTMAX) \
             or a number 1-64"
        ))
    }
}

/// A port mapping: (host ip, host port, container port, protocol).
pub(crate) fn parse_port(p: &str) -> Result<(Option<String>, u16, u16, String), String> {
    let bad = || format!("{p:?} is not [host-ip:]host-port:container-port[/tcp|udp]");
    let (spec, proto) = match p.split_once('/') {
        Some((s, proto @ ("tcp" | "udp"))) => (s, proto.to_owned()),
        Some(_) => return Err(bad()),
        None => (p, "tcp".to_owned()),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let port = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(bad);
    match parts.as_slice() {
        [c, h] => Ok((None, port(h)?, port(c)?, proto)),
        [c, h, ip] => {
            // The engine only finds a bad address at start, too late.
            if ip.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "{}: host-ip {ip:?} is not an IPv4 or IPv6 address (no brackets)",
                    bad()
                ));
            }
            Ok((Some((*ip).to_owned()), port(h)?, port(c)?, proto))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
