//! Where containers reach the HTTP API: the listeners on the app
//! networks' gateways, and what a container labelled for the API is told.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Executor, Pass};
use crate::engine::{api_route, ApiRoute, EngineError, SupervisorApi};
use crate::names::{AppName, ServiceName};
use crate::target::SUPERVISOR_API_LABEL;

impl Executor {
    /// The HTTP API listens on the gateway of every app network there is
    /// (and nowhere else on them), for the keys of the apps on it.
    pub async fn sync_listeners(&self) -> Result<(), EngineError> {
        self.listeners
            .list_networks(async {
                let gateways = self.engine().await?.network_gateways().await?;
                let mut by_address: BTreeMap<IpAddr, BTreeSet<AppName>> = BTreeMap::new();
                for (app, ip) in gateways.into_values() {
                    by_address.entry(ip).or_default().insert(app);
                }
                Ok(by_address)
            })
            .await
    }

    /// Where a service labelled for the API reaches it, with its app's
    /// key; None for other services, and (with a warning) for one that
    /// has no way to reach it.
    pub(super) async fn supervisor_api(
        &self,
        pass: Pass<'_>,
        service: &ServiceName,
    ) -> Result<Option<SupervisorApi>, EngineError> {
        let Some(target) = pass.target else {
            return Ok(None);
        };
        let labelled = target
            .services
            .get(service)
            .is_some_and(|s| s.labels.contains_key(SUPERVISOR_API_LABEL));
        let injected = target.injected.as_deref();
        if !labelled || injected.is_none() {
            return Ok(None);
        }
        let app = pass.app;
        let Some((port, key)) = injected.and_then(|i| Some((i.api_port, i.api_key.clone()?)))
        else {
            tracing::warn!(app = %app, service = %service,
                "{app}/{service} asks for the HTTP API, but app {app} has no API key (see the error about it); it gets no API variables");
            return Ok(None);
        };
        let host = match api_route(app, target, service) {
            ApiRoute::Loopback => "127.0.0.1".to_owned(),
            ApiRoute::Gateway(net) => match self.engine().await?.network_gateway(&net).await? {
                Some(ip) => {
                    self.listening_on(ip).await?;
                    ip.to_string()
                }
                None => {
                    tracing::warn!(app = %app, service = %service, network = %net,
                        "{app}/{service} asks for the HTTP API, but network {net} has no address on this host (not a bridge); it gets no API variables");
                    return Ok(None);
                }
            },
            ApiRoute::Unreachable => {
                tracing::warn!(app = %app, service = %service,
                    "{app}/{service} asks for the HTTP API, but its network_mode gives it no way to reach it; it gets no API variables");
                return Ok(None);
            }
        };
        Ok(Some(SupervisorApi { host, port, key }))
    }

    /// The API listens on `ip` before a container that reaches it there
    /// starts: after a restart, a pass may start one before the first look
    /// at the networks there are.
    async fn listening_on(&self, ip: IpAddr) -> Result<(), EngineError> {
        if !self.listeners.listening_on(ip) {
            self.sync_listeners().await?;
        }
        Ok(())
    }

    /// Before `service` starts: when it reaches the API on its network's
    /// gateway, the API listens there.
    pub(super) async fn listening_for(
        &self,
        pass: Pass<'_>,
        service: &ServiceName,
    ) -> Result<(), EngineError> {
        let Some(target) = pass.target else {
            return Ok(());
        };
        let labelled = target
            .services
            .get(service)
            .is_some_and(|s| s.labels.contains_key(SUPERVISOR_API_LABEL));
        if !labelled {
            return Ok(());
        }
        if let ApiRoute::Gateway(net) = api_route(pass.app, target, service) {
            if let Some(ip) = self.engine().await?.network_gateway(&net).await? {
                self.listening_on(ip).await?;
            }
        }
        Ok(())
    }
}
