//! The networks a container is on: its `network_mode`, or the app
//! networks it joins (`<app>_<network>`, the service's name an alias on
//! each).
//!
//! The engine (API 1.41, dockerd and balenaEngine 20.10) refuses a create
//! body with more than one endpoint ("Container cannot be connected to
//! network endpoints: a, b"); the create body carries the first network,
//! and `extra_networks` the others, to be connected after the create and
//! before the start.

use std::collections::HashMap;

use bollard::models::{EndpointIpamConfig, EndpointSettings, NetworkingConfig};

use super::{resolve_shared, ServiceContext};
use crate::target::{scoped_name, ServiceNetwork};

/// `HostConfig.NetworkMode`: the service's own (a `service:` one made the
/// other service's container), else its first app network.
pub(super) fn network_mode(cx: &ServiceContext<'_>) -> Option<String> {
    if let Some(mode) = &cx.spec.network_mode {
        return Some(resolve_shared(cx, mode));
    }
    endpoints(cx).into_iter().next().map(|(name, _)| name)
}

/// The create body's endpoint: the first app network, if any.
pub(super) fn networking_config(cx: &ServiceContext<'_>) -> Option<NetworkingConfig> {
    let first = endpoints(cx).into_iter().next()?;
    Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([first])),
    })
}

/// The app networks after the first, by engine name, with their endpoint
/// settings: the caller connects the created container to each before
/// starting it (the engine takes one network at create).
pub fn extra_networks(cx: &ServiceContext<'_>) -> Vec<(String, EndpointSettings)> {
    endpoints(cx).into_iter().skip(1).collect()
}

/// Every app network the service joins, in name order: (engine name,
/// endpoint settings).
fn endpoints(cx: &ServiceContext<'_>) -> Vec<(String, EndpointSettings)> {
    cx.spec
        .joined_networks()
        .into_iter()
        .map(|(net, sn)| (scoped_name(cx.app, net), endpoint(cx, &sn)))
        .collect()
}

fn endpoint(cx: &ServiceContext<'_>, sn: &ServiceNetwork) -> EndpointSettings {
    let mut aliases = vec![cx.service.to_string()];
    for a in &sn.aliases {
        if !aliases.contains(a) {
            aliases.push(a.clone());
        }
    }
    EndpointSettings {
        aliases: Some(aliases),
        ipam_config: sn.ipv4_address.as_ref().map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
