//! Checks of the format's first values: mounts, devices, users, stop
//! signals, published ports.

use std::net::IpAddr;

use super::q;
use super::{clean, is_engine_name, path_problem, NAME_RULE};

/// The engine's longest repository name (`reference.NameTotalLengthMax`)
/// and tag.
const IMAGE_NAME_MAX: usize = 255;
const IMAGE_TAG_MAX: usize = 128;

/// `[registry/]name[:tag][@digest]`: no whitespace or control character
/// (a reference has none; they would reach log lines raw), the name and
/// the tag within the engine's lengths.
pub(super) fn check_image(v: &str) -> Result<(), String> {
    if v.trim().is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} is not an image reference (it is empty or has whitespace or a control character)",
            q(v)
        ));
    }
    let named = v.split_once('@').map_or(v, |(n, _)| n);
    let (name, tag) = match named.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (named, None),
    };
    if name.len() > IMAGE_NAME_MAX {
        return Err(format!(
            "{}: the repository name is {} characters; the engine takes at most {IMAGE_NAME_MAX}",
            q(v),
            name.len()
        ));
    }
    if let Some(t) = tag.filter(|t| t.len() > IMAGE_TAG_MAX) {
        return Err(format!(
            "{}: the tag is {} characters; the engine takes at most {IMAGE_TAG_MAX}",
            q(v),
            t.len()
        ));
    }
    Ok(())
}

/// `source:/container/path[:ro|rw]`; returns the container path.
pub(super) fn check_volume(v: &str) -> Result<&str, String> {
    let shape = || format!("{} is not source:/container/path[:ro|rw]", q(v));
    let (src, dest) = match v.split(':').collect::<Vec<_>>().as_slice() {
        [src, dest] => (*src, *dest),
        [src, dest, "ro" | "rw"] => (*src, *dest),
        [_, _, mode] => {
            return Err(format!(
                "{}: the mode is ro or rw, not {}",
                shape(),
                q(mode)
            ))
        }
        _ => return Err(shape()),
    };
    if src.starts_with('/') {
        if let Some(p) = path_problem(src) {
            return Err(format!("{}: host path {} {p}", q(v), q(src)));
        }
    } else if !is_engine_name(src) {
        return Err(format!(
            "{}: source {} is neither an absolute host path nor a volume name ({NAME_RULE})",
            q(v),
            q(src)
        ));
    } else if src.len() < 2 {
        return Err(format!(
            "{}: volume name {} is too short; the engine needs at least 2 characters",
            q(v),
            q(src)
        ));
    }
    if let Some(p) = path_problem(dest) {
        return Err(format!("{}: container path {} {p}", q(v), q(dest)));
    }
    if clean(dest) == "/" {
        return Err(format!("{}: the container path cannot be '/' itself", q(v)));
    }
    Ok(dest)
}

/// `/container/path[:options]`; returns the container path.
pub(super) fn check_tmpfs(v: &str) -> Result<&str, String> {
    let (dest, options) = match v.split_once(':') {
        Some((d, o)) => (d, Some(o)),
        None => (v, None),
    };
    if let Some(p) = path_problem(dest) {
        return Err(format!("{}: container path {} {p}", q(v), q(dest)));
    }
    if let Some(o) = options {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "=,_-".contains(c);
        if !o.chars().all(ok) {
            return Err(format!(
                "{}: mount options {} may contain only a-z, 0-9, '=', ',', '_' and '-' (e.g. size=64m,mode=1777)", q(v), q(o)
            ));
        }
    }
    Ok(dest)
}

/// `/dev/host[:/container/path[:perms]]`.
pub(super) fn check_device(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() > 3 {
        return Err(format!(
            "{} is not /dev/host-path[:/container-path[:permissions]]",
            q(v)
        ));
    }
    let host = parts[0];
    match path_problem(host) {
        Some(p) => return Err(format!("{}: host path {} {p}", q(v), q(host))),
        None if !host.starts_with("/dev/") || clean(host) == "/dev" => {
            return Err(format!(
                "{}: host path {} is not a device under /dev/",
                q(v),
                q(host)
            ))
        }
        None => {}
    }
    if let Some(inside) = parts.get(1) {
        if let Some(p) = path_problem(inside) {
            return Err(format!(
                "{}: container path {} {p} (to give only permissions, repeat the path: {host}:{host}:rw)", q(v), q(inside)
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
                "{}: permissions {} are not some of r, w and m, each at most once (e.g. rwm or r)",
                q(v),
                q(perms)
            ));
        }
    }
    Ok(())
}

/// A number (uid, gid) or a name as useradd accepts it.
pub(super) fn id_or_name(p: &str) -> bool {
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        return p.parse::<u32>().is_ok();
    }
    let body = p.strip_suffix('$').unwrap_or(p);
    let mut chars = body.chars();
    p.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

/// `user[:group]`, each a number or a name as useradd accepts it.
pub(super) fn check_user(v: &str) -> Result<(), String> {
    let part_ok = id_or_name;
    let ok = match v.split_once(':') {
        Some((user, group)) => part_ok(user) && part_ok(group),
        None => part_ok(v),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not user[:group]: each a number (uid, gid) or a name of up to 32 characters: \
             a lower-case letter or '_', then lower-case letters, digits, '_', '.' or '-', \
             optionally ending in '$'",
            q(v)
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
pub(super) fn check_signal(v: &str) -> Result<(), String> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        if v.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n)) {
            return Ok(());
        }
        return Err(format!("{} is not a signal number; numbers are 1-64", q(v)));
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
            "{} is not a Linux signal: give a name such as SIGTERM or TERM \
             (SIGRTMIN+1 to SIGRTMIN+15, SIGRTMAX-14 to SIGRTMAX-1, SIGRTMIN, SIGRTMAX) \
             or a number 1-64",
            q(v)
        ))
    }
}

/// A port mapping: (host ip, host port, container port, protocol).
pub(crate) fn parse_port(p: &str) -> Result<(Option<String>, u16, u16, String), String> {
    let bad = || {
        format!(
            "{} is not [host-ip:]host-port:container-port[/tcp|udp]",
            q(p)
        )
    };
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
                    "{}: host-ip {} is not an IPv4 or IPv6 address (no brackets)",
                    bad(),
                    q(ip)
                ));
            }
            Ok((Some((*ip).to_owned()), port(h)?, port(c)?, proto))
        }
        _ => Err(bad()),
    }
}
