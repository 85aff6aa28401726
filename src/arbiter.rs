//! "Reboot as soon as the locks clear, but no later than T": a pending
//! reboot request (set through the core), carried out by this task the
//! moment no app holds a lock (lock-table event, no polling) or, forced,
//! at the deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use crate::command::{CommandError, PowerAction};
use crate::devconfig::Override;
use crate::locks::LockTable;
use crate::power::{Power, PowerError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingReboot {
    /// Wall clock, microseconds since the epoch; 0: no deadline.
    pub not_after_usec: u64,
    pub who: String,
    /// Why: an operator's request, or staged boot config.
    pub reason: String,
}

impl PendingReboot {
    pub fn describe(&self) -> String {
        let by = match self.not_after_usec {
            0 => String::new(),
            t => format!(", at the latest {}", crate::cli::render::utc(t)),
        };
        format!(
            "reboot when unlocked{by} ({}; asked by {})",
            self.reason, self.who
        )
    }
}

pub fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub struct Arbiter {
    pub power: Power,
    pub table: watch::Receiver<Arc<LockTable>>,
    pub lock_override: watch::Receiver<Override>,
    pub pending: watch::Sender<Option<PendingReboot>>,
}

impl Arbiter {
    pub async fn run(mut self) {
        let mut pending_rx = self.pending.subscribe();
        loop {
            let Some(p) = pending_rx.borrow_and_update().clone() else {
                if pending_rx.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let unlocked = self.table.borrow_and_update().held_by_apps().is_empty()
                || self.lock_override.borrow_and_update().enabled;
            let due = p.not_after_usec != 0 && now_usec() >= p.not_after_usec;
            if unlocked || due {
                let force = !unlocked;
                let who = if force {
                    format!("{} (deadline reached)", p.who)
                } else {
                    p.who.clone()
                };
                tracing::info!(force, who = %who, "pending reboot: {}", if force {
                    "deadline reached, forcing through the locks"
                } else {
                    "no app holds a lock; rebooting"
                });
                match self.carry_out(force, &who).await {
                    // An app locked in between: keep waiting.
                    Err(PowerError::Command(CommandError::Locked(..))) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "pending reboot failed: {e}; request dropped");
                        self.pending.send_replace(None);
                    }
                    Ok(()) => {
                        self.pending.send_replace(None);
                    }
                }
                continue;
            }
            let wait = match p.not_after_usec {
                0 => Duration::MAX,
                t => Duration::from_micros(t.saturating_sub(now_usec())),
            };
            tokio::select! {
                r = self.table.changed() => if r.is_err() { return },
                r = self.lock_override.changed() => if r.is_err() { return },
                r = pending_rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait.min(Duration::from_secs(86_400 * 365))) => {}
            }
        }
    }

    async fn carry_out(&self, force: bool, who: &str) -> Result<(), PowerError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(|e| PowerError::Bus(e.to_string()))?;
        self.power.run(&conn, PowerAction::Reboot, force, who).await
    }
}
