//! Acting on containers on request (HTTP service routes, purge, restart,
//! shutdown): one service's container stopped or started, an app's
//! containers removed or restarted, all stopped; and putting back what a
//! failed apply changed.

use super::{ExecError, Executor};
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{Container, EngineError, RunState};

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

    /// Stops the new containers a failed apply started, then starts the old
    /// ones it stopped again. Answers why old ones could not be started
    /// again, one entry per container of `stopped` that does not run
    /// again (then the app is down, whatever the pass's own error says).
    pub async fn put_back(&self, started: &[String], stopped: &[String]) -> Vec<String> {
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(e) => return stopped.iter().map(|id| format!("{id}: {e}")).collect(),
        };
        for id in started {
            if let Err(e) = engine.stop(id).await {
                // The engine's words may quote the target (a command).
                let e = crate::text::no_controls(&e.to_string());
                tracing::error!(container = %id, error = %e, "cannot stop the new container again");
            }
        }
        let mut failed = Vec::new();
        for id in stopped {
            if let Err(e) = engine.start(id).await {
                let e = crate::text::no_controls(&e.to_string());
                tracing::error!(container = %id, error = %e, "cannot start the previous container again");
                failed.push(format!("{id}: {e}"));
            }
        }
        failed
    }

    /// Stop then start each container.
    pub async fn restart(&self, containers: &[Container]) -> Result<(), EngineError> {
        let engine = self.engine().await?;
        for c in containers {
            tracing::info!(app = %c.app, service = %c.service, "restarting {}/{}", c.app, c.service);
            engine.stop(&c.id).await?;
            engine.start(&c.id).await?;
        }
        Ok(())
    }

    /// `docker save` archives from a fleet release, loaded one by one.
    /// Answers the image names they carried.
    pub async fn load_images(&self, archives: &[PathBuf]) -> Result<Vec<String>, ExecError> {
        let engine = self.engine().await?;
        let mut names = Vec::new();
        for a in archives {
            let got = engine.load_image(a).await?;
            tracing::info!(archive = %a.display(), images = ?got, "loaded {}", got.join(", "));
            names.extend(got);
        }
        Ok(names)
    }

    /// Shutdown: every running managed container stopped at once, each
    /// within `grace`. Answers how many stopped.
    pub async fn stop_all(&self, grace: Duration) -> u32 {
        let Ok(engine) = self.engine().await else {
            return 0;
        };
        let running = match engine.managed(None).await {
            Ok(list) => list
                .into_iter()
                .filter(|c| c.state == RunState::Running)
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "shutting down: cannot list app containers");
                return 0;
            }
        };
        let grace_s = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX).max(1);
        let stops = running
            .iter()
            .map(|c| engine.stop_with(&c.id, Some(grace_s)));
        futures_util::future::join_all(stops)
            .await
            .iter()
            .filter(|r| r.is_ok())
            .count() as u32
    }
}
