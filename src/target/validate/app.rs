//! An app: its release, networks and volumes, and what its services say
//! about each other (dependencies, shared namespaces, the networks they
//! join).

use super::net::{check_alias, parse_ip, parse_ipv4, Cidr};
use super::q;
use super::service::validate_service;
use super::{check_driver, check_labels, check_map, escape, is_engine_name, Invalid, NAME_RULE};
use crate::names::ServiceName;
use crate::target::{AppTarget, Condition, NetworkSpec, ServiceSpec, VolumeSpec, DEFAULT_NETWORK};

pub(super) fn validate_app(
    app: &str,
    a: &AppTarget,
    subnets: &mut Vec<(String, Cidr)>,
) -> Result<(), Invalid> {
    let release = format!("apps.{app}.release");
    if a.release.trim().is_empty() {
        return Err((release, "must not be empty".into()));
    }
    // The release goes into labels, the environment, status lines and the
    // D-Bus reply; a control character breaks the last two.
    if a.release.contains(char::is_control) {
        return Err((
            release,
            format!("{} contains a control character", q(&a.release)),
        ));
    }
    // The app's name begins the engine names of its containers, networks
    // and volumes (`<app>_...`), which must begin with a letter or digit.
    if !app.starts_with(|c: char| c.is_ascii_alphanumeric())
        && (!a.services.is_empty() || !a.networks.is_empty() || !a.volumes.is_empty())
    {
        return Err((
            format!("apps.{app}"),
            format!("an app with services, networks or volumes needs a name beginning with a letter or digit: its engine objects are named {app}_..., and the engine refuses that"),
        ));
    }
    for (name, n) in &a.networks {
        let base = format!("apps.{app}.networks.{}", escape(name));
        check_network(name, n).map_err(|(f, r)| (format!("{base}{f}"), r))?;
        let pools = n.ipam.iter().flat_map(|i| &i.config);
        for (i, pool) in pools.enumerate() {
            let at = format!("{base}.ipam.config[{i}].subnet");
            let cidr = Cidr::parse(&pool.subnet).expect("checked above");
            if let Some((other, _)) = subnets.iter().find(|(_, c)| c.overlaps(&cidr)) {
                return Err((
                    at,
                    format!(
                        "{} overlaps the subnet of {other}; the engine refuses overlapping subnets",
                        q(&pool.subnet)
                    ),
                ));
            }
            subnets.push((at, cidr));
        }
    }
    for (name, v) in &a.volumes {
        let base = format!("apps.{app}.volumes.{}", escape(name));
        check_volume_def(name, v).map_err(|(f, r)| (format!("{base}{f}"), r))?;
    }
    for (name, s) in &a.services {
        let base = format!("apps.{app}.services.{name}");
        validate_service(s).map_err(|(f, r)| (format!("{base}.{f}"), r))?;
        check_in_app(app, a, name, s).map_err(|(f, r)| (format!("{base}.{f}"), r))?;
    }
    a.dependency_order().map(drop).map_err(|(_, n)| {
        (
            format!("apps.{app}.services.{n}.depends_on"),
            "dependency cycle (through depends_on, or a service: namespace shared in \
             network_mode, ipc or pid)"
                .to_owned(),
        )
    })?;
    super::limits::hashing(app, a)
}

/// Errors carry the path below the network (`""`: the name itself).
fn check_network(name: &str, n: &NetworkSpec) -> Result<(), Invalid> {
    if !is_engine_name(name) {
        return Err((
            String::new(),
            format!("{} is not a network name ({NAME_RULE})", q(name)),
        ));
    }
    if let Some(d) = &n.driver {
        check_driver(d).map_err(|r| (".driver".to_owned(), r))?;
        if matches!(d.as_str(), "host" | "null") {
            return Err((
                ".driver".into(),
                format!("the engine has only one {d} network; use network_mode instead"),
            ));
        }
    }
    check_map("driver_opts", &n.driver_opts, |_| Ok(())).map_err(|(f, r)| (format!(".{f}"), r))?;
    check_labels("labels", &n.labels).map_err(|(f, r)| (format!(".{f}"), r))?;
    let Some(ipam) = &n.ipam else {
        return Ok(());
    };
    if let Some(d) = &ipam.driver {
        check_driver(d).map_err(|r| (".ipam.driver".to_owned(), r))?;
    }
    for (i, pool) in ipam.config.iter().enumerate() {
        let at = |f: &str| format!(".ipam.config[{i}].{f}");
        let subnet = Cidr::parse(&pool.subnet).map_err(|r| (at("subnet"), r))?;
        if let Some(g) = &pool.gateway {
            let ip = parse_ip(g).map_err(|r| (at("gateway"), r))?;
            if !subnet.contains(ip) {
                return Err((
                    at("gateway"),
                    format!("{} is not inside the subnet {}", q(g), q(&pool.subnet)),
                ));
            }
        }
        if let Some(r) = &pool.ip_range {
            let range = Cidr::parse(r).map_err(|e| (at("ip_range"), e))?;
            if !subnet.covers(&range) {
                return Err((
                    at("ip_range"),
                    format!("{} is not inside the subnet {}", q(r), q(&pool.subnet)),
                ));
            }
        }
    }
    Ok(())
}

/// Errors carry the path below the volume (`""`: the name itself).
fn check_volume_def(name: &str, v: &VolumeSpec) -> Result<(), Invalid> {
    if !is_engine_name(name) || name.len() < 2 {
        return Err((
            String::new(),
            format!(
                "{} is not a volume name ({NAME_RULE}; at least 2 characters)",
                q(name)
            ),
        ));
    }
    if let Some(d) = &v.driver {
        check_driver(d).map_err(|r| (".driver".to_owned(), r))?;
    }
    check_map("driver_opts", &v.driver_opts, |_| Ok(())).map_err(|(f, r)| (format!(".{f}"), r))?;
    check_labels("labels", &v.labels).map_err(|(f, r)| (format!(".{f}"), r))
}

/// What a service says about the rest of its app. Errors carry the path
/// below the service.
fn check_in_app(
    app: &str,
    a: &AppTarget,
    name: &ServiceName,
    s: &ServiceSpec,
) -> Result<(), Invalid> {
    for (dep, d) in &s.depends_on {
        let at = format!("depends_on.{dep}");
        let Some(other) = a.services.get(dep) else {
            return Err((at, format!("{dep} is not a service of app {app}")));
        };
        if dep == name {
            return Err((at, "a service cannot depend on itself".into()));
        }
        let off = other
            .healthcheck
            .as_ref()
            .is_some_and(|h| !h.active() && (h.disable || !h.test.is_empty()));
        if d.condition == Condition::ServiceHealthy && off {
            return Err((
                at,
                format!("{dep}'s healthcheck is disabled, so it never becomes healthy; use service_started or give {dep} a healthcheck"),
            ));
        }
    }
    for (field, value) in [
        ("network_mode", &s.network_mode),
        ("ipc", &s.ipc),
        ("pid", &s.pid),
    ] {
        let Some(other) = value.as_deref().and_then(|v| v.strip_prefix("service:")) else {
            continue;
        };
        let found = ServiceName::new(other)
            .ok()
            .and_then(|o| a.services.get_key_value(&o));
        let Some((other_name, other_spec)) = found else {
            return Err((
                field.into(),
                format!("{other} is not a service of app {app}"),
            ));
        };
        if other_name == name {
            return Err((
                field.into(),
                "a service cannot share its own namespace".into(),
            ));
        }
        // The engine joins only a donor whose IPC namespace is shareable;
        // its default mode may be private.
        if field == "ipc" && !matches!(other_spec.ipc.as_deref(), Some("shareable" | "host")) {
            return Err((
                field.into(),
                format!("{other} must set ipc: shareable for others to join its IPC namespace"),
            ));
        }
    }
    if !s.networks.is_empty() {
        if let Some(mode) = &s.network_mode {
            return Err((
                "networks".into(),
                format!("a service with network_mode {} joins no app networks; give networks or network_mode, not both", q(mode)),
            ));
        }
    }
    for (net, sn) in &s.networks {
        let at = |f: &str| format!("networks.{}{f}", escape(net));
        let def = a.networks.get(net);
        if def.is_none() && net != DEFAULT_NETWORK {
            return Err((
                at(""),
                format!(
                    "{} is not one of app {app}'s networks; declare it under apps.{app}.networks",
                    q(net)
                ),
            ));
        }
        for (i, alias) in sn.aliases.iter().enumerate() {
            check_alias(alias).map_err(|r| (at(&format!(".aliases[{i}]")), r))?;
        }
        if let Some(ip) = &sn.ipv4_address {
            let addr = parse_ipv4(ip).map_err(|r| (at(".ipv4_address"), r))?;
            let subnets: Vec<Cidr> = def
                .and_then(|d| d.ipam.as_ref())
                .into_iter()
                .flat_map(|i| &i.config)
                .filter_map(|p| Cidr::parse(&p.subnet).ok())
                .filter(|c| c.addr.is_ipv4())
                .collect();
            if subnets.is_empty() {
                return Err((
                    at(".ipv4_address"),
                    format!("a fixed address needs an IPv4 subnet of the network's own: give apps.{app}.networks.{net}.ipam.config with a subnet (the engine refuses fixed addresses otherwise)"),
                ));
            }
            if !subnets.iter().any(|c| c.contains(addr.into())) {
                return Err((
                    at(".ipv4_address"),
                    format!("{} is not inside a subnet of network {net}", q(ip)),
                ));
            }
        }
    }
    Ok(())
}
