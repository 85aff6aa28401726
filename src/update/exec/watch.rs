//! Waiting on containers: dependency conditions, a release's health, the
//! crash watch after it, and the hand-over signal.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::Duration;

use super::{ExecError, Executor, Pass, HANDOVER_FILES};
use crate::inotify::NamesWatch;
use crate::locks::fs as lockfs;
use crate::names::{AppName, ServiceId, ServiceName};
use crate::update::health::{judge, Verdict, Want};

impl Executor {
    /// Watches containers just judged up (services without a healthcheck)
    /// for `window`: an exit or restart is a crash loop. Answers each
    /// service that crashed with its reason; none when they all kept
    /// running.
    pub fn crash_watch(
        &self,
        containers: Vec<(ServiceName, String)>,
        window: Duration,
    ) -> impl std::future::Future<Output = Vec<(ServiceName, String)>> + Send + 'static {
        let exec = self.clone();
        async move {
            let Ok(engine) = exec.engine().await else {
                return Vec::new();
            };
            let watches = containers.iter().map(|(service, name)| async move {
                let before = engine.liveness(name).await.ok()?.restart_count;
                let crashed = engine
                    .watch_until(name, window, |live| {
                        match judge(Want::Healthy, live, before) {
                            Some(Verdict::Failed(why)) => Some(why),
                            _ => None,
                        }
                    })
                    .await
                    .ok()??;
                Some((service.clone(), format!("service {service} {crashed}")))
            });
            futures_util::future::join_all(watches)
                .await
                .into_iter()
                .flatten()
                .collect()
        }
    }

    /// Waits (within `healthy_timeout`) for the service's container of
    /// this target to get where `want` says.
    pub(super) async fn await_state(
        &self,
        pass: Pass<'_>,
        service: &ServiceName,
        want: Want,
    ) -> Result<(), ExecError> {
        let name = pass.container(service);
        let engine = self.engine().await?;
        let before = engine.liveness(&name).await?.restart_count;
        let timeout = self.policy.healthy_timeout;
        let mut last = None;
        let verdict = engine
            .watch_until(&name, timeout, |live| {
                last = live.health.clone();
                judge(want, live, before)
            })
            .await?;
        let reason = match verdict {
            Some(Verdict::Met) => return Ok(()),
            Some(Verdict::Failed(reason)) => reason,
            None => format!(
                "did not become {} within {} (health: {})",
                if want == Want::Completed {
                    "done"
                } else {
                    "healthy"
                },
                humantime::format_duration(timeout),
                last.as_deref().unwrap_or("none")
            ),
        };
        Err(ExecError::Unhealthy {
            service: service.clone(),
            reason,
        })
    }

    pub(super) async fn await_handover(
        &self,
        app: &AppName,
        service: &ServiceName,
        timeout_ms: u64,
    ) {
        let timeout = Duration::from_millis(timeout_ms);
        let id = ServiceId::new(app.clone(), service.clone());
        // Watched and cleaned through the opened directory: a symlink an app
        // plants on the way is never followed.
        let dir = lockfs::open_root(&self.lock_root)
            .and_then(|root| lockfs::open_service_dir(root.as_fd(), &self.lock_root, &id));
        let watched = dir.as_ref().map_err(ToString::to_string).and_then(|d| {
            let path = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd()));
            NamesWatch::existence(&path, &HANDOVER_FILES).map_err(|e| e.to_string())
        });
        let done = match watched {
            Ok(mut w) => w.wait_exists(timeout).await.unwrap_or(false),
            Err(e) => {
                tracing::warn!(service = %id, error = %e, "cannot watch for hand-over; waiting out the timeout");
                tokio::time::sleep(timeout).await;
                false
            }
        };
        tracing::info!(app = %app, service = %service, signalled = done,
            "hand-over of {app}/{service} {}", if done { "complete" } else { "timed out" });
        // Consumed: the next hand-over waits for a fresh signal.
        if let Ok(d) = &dir {
            for f in HANDOVER_FILES {
                let _ = nix::unistd::unlinkat(d, f, nix::unistd::UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}
