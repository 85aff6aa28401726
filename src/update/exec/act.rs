//! Acting on containers on request (HTTP service routes, purge): one
//! service's container stopped or started, an app's containers removed.

use super::Executor;
use crate::engine::{Container, EngineError};

impl Executor {
    /// Graceful stop of one container (its stop signal and timeout).
    pub async fn stop_container(&self, c: &Container) -> Result<(), EngineError> {
        tracing::info!(app = %c.app, service = %c.service, container = %c.id, "stopping {}/{}", c.app, c.service);
        self.engine().await?.stop(&c.id).await
    }

    /// Starts one container (a running one is left as it is).
    pub async fn start_container(&self, c: &Container) -> Result<(), EngineError> {
        tracing::info!(app = %c.app, service = %c.service, container = %c.id, "starting {}/{}", c.app, c.service);
        self.engine().await?.start(&c.id).await
    }

    /// Stops and removes each container (the next pass makes them again).
    pub async fn remove_containers(&self, containers: &[Container]) -> Result<(), EngineError> {
        let engine = self.engine().await?;
        for c in containers {
            tracing::info!(app = %c.app, service = %c.service, container = %c.id, "removing {}/{}", c.app, c.service);
            engine.stop(&c.id).await?;
            engine.remove(&c.id).await?;
        }
        Ok(())
    }
}
