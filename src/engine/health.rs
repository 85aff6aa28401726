//! How a container is doing, and waiting for it to get somewhere: each
//! event of the container (start, die, health_status) re-reads its state,
//! so a wait ends the moment the engine knows, not at the next poll.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerStateStatusEnum as S, HealthStatusEnum as H};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions};
use futures_util::StreamExt;

use super::{Engine, EngineError};

/// A container's run and health state, from its inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    pub running: bool,
    pub restarting: bool,
    /// Exited or dead (not restarting).
    pub exited: bool,
    pub exit_code: i64,
    /// `starting`, `healthy` or `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    pub restart_count: i64,
    /// The last healthcheck's output, for the reason of a failure.
    pub last_check: Option<String>,
}

/// A safety net for an event missed between reading the state and the
/// event stream's start: the state is read again at least this often.
const RECHECK: Duration = Duration::from_secs(1);

impl Engine {
    pub async fn liveness(&self, container: &str) -> Result<Liveness, EngineError> {
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.map(e))?;
        let state = c.state.unwrap_or_default();
        let health = state.health.as_ref().and_then(|h| match h.status {
            Some(H::STARTING) => Some("starting".to_owned()),
            Some(H::HEALTHY) => Some("healthy".to_owned()),
            Some(H::UNHEALTHY) => Some("unhealthy".to_owned()),
            _ => None,
        });
        let last_check = state
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref()?.last()?.output.clone())
            .map(|o| o.trim().chars().take(200).collect());
        Ok(Liveness {
            running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
            restarting: state.restarting.unwrap_or(false) || state.status == Some(S::RESTARTING),
            exited: matches!(state.status, Some(S::EXITED | S::DEAD)),
            exit_code: state.exit_code.unwrap_or(0),
            health,
            restart_count: c.restart_count.unwrap_or(0),
            last_check,
        })
    }

    /// Reads the container's state until `judge` decides (`Some`), at each
    /// of its events; `None` when `timeout` passes first.
    pub async fn watch_until<T>(
        &self,
        container: &str,
        timeout: Duration,
        mut judge: impl FnMut(&Liveness) -> Option<T>,
    ) -> Result<Option<T>, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let filters = HashMap::from([
            ("container".to_owned(), vec![container.to_owned()]),
            ("type".to_owned(), vec!["container".to_owned()]),
        ]);
        let mut events = Box::pin(self.docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        })));
        // An ended stream (engine restarted) leaves the re-check timer.
        let mut streaming = true;
        loop {
            let now = self.liveness(container).await?;
            if let Some(v) = judge(&now) {
                return Ok(Some(v));
            }
            tokio::select! {
                e = events.next(), if streaming => streaming = matches!(e, Some(Ok(_))),
                _ = tokio::time::sleep(RECHECK) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }
}
