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
use crate::names::{AppName, ServiceName};
use crate::target::{scoped_name, AppTarget, ServiceNetwork};

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

/// How a service's container reaches the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRoute {
    /// Host networking: the host's loopback.
    Loopback,
    /// The gateway (the host's address) of this app network, by engine
    /// name: the container's first network.
    Gateway(String),
    /// No network of holdfast's to reach it by (`none`, another
    /// container's namespace, the engine's default bridge).
    Unreachable,
}

/// The route of `service` in `target`: its own network, or that of the
/// service whose namespace it shares.
pub fn api_route(app: &AppName, target: &AppTarget, service: &ServiceName) -> ApiRoute {
    let mut service = service.clone();
    // A shared namespace is followed a few steps (a parsed target has no
    // cycles).
    for _ in 0..=target.services.len() {
        let Some(spec) = target.services.get(&service) else {
            return ApiRoute::Unreachable;
        };
        match spec.network_mode.as_deref() {
            Some("host") => return ApiRoute::Loopback,
            Some(mode) => match mode.strip_prefix("service:").map(ServiceName::new) {
                Some(Ok(other)) => service = other,
                _ => return ApiRoute::Unreachable,
            },
            None => {
                return match spec.joined_networks().into_iter().next() {
                    Some((net, _)) => ApiRoute::Gateway(scoped_name(app, net)),
                    None => ApiRoute::Unreachable,
                }
            }
        }
    }
    ApiRoute::Unreachable
}
