//! Restarting an app's running containers under its locks (HTTP v2
//! restart, D-Bus RestartApp): refused while the app holds a lock, unless
//! forced.

use super::{AppTask, Outcome};
use crate::command::CommandError;
use crate::engine::RunState;
use crate::gate::{self, Blocker, Decision};
use crate::logging::msgid;
use crate::names::{ServiceId, ServiceName};

impl AppTask {
    /// Restarts the app's running containers under its locks.
    pub(super) async fn restart(&mut self, force: bool, who: &str) -> Result<u32, CommandError> {
        let snap = self.snapshot.borrow().clone();
        let decision = gate::update(&snap, &self.app, force.then_some(who));
        if let Decision::Blocked(b) = decision {
            return Err(CommandError::Locked {
                blocked_by: b,
                action: format!("restart app {}", self.app),
            });
        }
        let exec = self.exec.borrow().clone();
        let running: Vec<_> = exec
            .containers(Some(&self.app))
            .await
            .map_err(|e| CommandError::Failed(e.to_string()))?
            .into_iter()
            .filter(|c| c.state == RunState::Running)
            .collect();
        if running.is_empty() {
            return Err(CommandError::NotFound(format!(
                "app {} has no running containers",
                self.app
            )));
        }
        let services: Vec<ServiceName> = running.iter().map(|c| c.service.clone()).collect();
        if let Decision::Through { why, passed } = &decision {
            tracing::warn!(message_id = msgid::UPDATE_FORCED, app = %self.app, locks = ?passed, who,
                "restarting app {} through its locks ({why})", self.app);
        }
        let action = format!("restart app {}", self.app);
        self.take_locks(&services, force.then_some(who))
            .await
            .map_err(|o| lock_refusal(&action, o))?;
        tracing::info!(app = %self.app, who, "restarting app {} (asked by {who})", self.app);
        let r = exec.restart(&running).await;
        let released = self.release_locks().await;
        r.map_err(|e| CommandError::Failed(e.to_string()))?;
        released?;
        Ok(running.len() as u32)
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
        Outcome::Failed(e) | Outcome::EngineDown(e) | Outcome::Unhealthy(e) => {
            CommandError::Failed(e)
        }
        Outcome::Done { .. } | Outcome::SlotBusy(_) => CommandError::Failed("unexpected".into()),
    }
}
