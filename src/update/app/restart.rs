//! Restarting an app's running containers under its locks (HTTP v2
//! restart, D-Bus RestartApp): refused while the app holds a lock, unless
//! forced. The gate and the locks are `lock_for`'s, as for the service
//! actions: every lock of the app, its containers' and its target's.

use super::{AppTask, Outcome};
use crate::command::CommandError;
use crate::engine::RunState;
use crate::gate::Blocker;
use crate::names::ServiceId;

impl AppTask {
    /// Restarts the app's running containers under its locks.
    pub(super) async fn restart(&mut self, force: bool, who: &str) -> Result<u32, CommandError> {
        let exec = self.exec.borrow().clone();
        let containers = exec
            .containers(Some(&self.app))
            .await
            .map_err(|e| CommandError::Failed(e.to_string()))?;
        let what = format!("restart app {}", self.app);
        self.lock_for(&what, &containers, force, who).await?;
        let running: Vec<_> = containers
            .into_iter()
            .filter(|c| c.state == RunState::Running)
            .collect();
        let r = match running.is_empty() {
            true => Err(CommandError::NotFound(format!(
                "app {} has no running containers",
                self.app
            ))),
            false => {
                tracing::info!(app = %self.app, who, "restarting app {} (asked by {who})", self.app);
                exec.restart(&running)
                    .await
                    .map(|()| running.len() as u32)
                    .map_err(|e| CommandError::Failed(e.to_string()))
            }
        };
        let released = self.release_locks().await;
        let n = r?;
        released?;
        Ok(n)
    }
}

/// Why the keeper did not hand over the app's locks, as a command's
/// answer: a lock taken meanwhile (`lock:app/service`) is a refusal like
/// the gate's; anything else (holdfast's own locks held for another
/// purpose) is a plain failure to name.
pub(super) fn lock_refusal(action: &str, o: Outcome) -> CommandError {
    match o {
        Outcome::Waiting(b) => {
            let locks: Vec<Blocker> = b
                .iter()
                .filter_map(|s| s.strip_prefix("lock:"))
                .filter_map(|s| ServiceId::parse(s).ok())
                .map(Blocker::Lock)
                .collect();
            if locks.is_empty() {
                CommandError::Failed(format!("cannot {action} now: {}", b.join(", ")))
            } else {
                CommandError::Locked {
                    blocked_by: locks,
                    action: action.to_owned(),
                }
            }
        }
        Outcome::Failed(e)
        | Outcome::EngineDown(e)
        | Outcome::Unhealthy(e)
        | Outcome::PutBack(e) => CommandError::Failed(e),
        Outcome::Done { .. } | Outcome::SlotBusy(_) => CommandError::Failed("unexpected".into()),
    }
}
