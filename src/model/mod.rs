//! What holdfast publishes: plain data on `watch` channels, read by the
//! gate, the adapters and the status line. No behaviour lives here.
//!
//! - [`Snapshot`]: written by the core alone: the lock table, the lock
//!   override, a pending reboot and whether holdfast is powering off.
//! - [`apps::UpdateStatus`]: written by the per-app update tasks.
//! - [`InhibitorStatus`]: written by the system layer (logind).
//! - [`crate::fleet::FleetStatus`]: the fleet id, group and slot.

pub mod apps;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::Settings;
use crate::devconfig::Override;
use crate::locks::LockTable;

pub use apps::{AppState, AppStatus, ServiceStatus, UpdateStatus};

/// Everything "may we act?" depends on, published as one value so no
/// reader can see the table of one moment with the override of another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub table: Arc<LockTable>,
    pub lock_override: Override,
    pub pending_reboot: Option<PendingReboot>,
    /// A reboot or power-off of ours is under way: the block inhibitor is
    /// released so it cannot refuse our own request (systemd >= 257), and
    /// no update starts.
    pub powering: bool,
    /// `[update.periodic]` and no window open: `closed until Mon 22:30
    /// CET`. `None`: open, or no windows configured.
    pub window_closed: Option<String>,
}

/// "Reboot as soon as the locks clear, but no later than T".
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
            t => format!(", at the latest {}", utc(t)),
        };
        format!(
            "reboot when unlocked{by} ({}; asked by {})",
            self.reason, self.who
        )
    }
}

/// RFC 3339 UTC, seconds precision; out-of-range values are clamped.
pub fn utc(usec: u64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_micros(usec.min(253_402_300_799_000_000));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The logind block inhibitor as the system layer holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InhibitorStatus {
    pub held: bool,
    pub what: String,
    pub why: String,
    /// Why we could not take it, while we want it.
    pub error: Option<String>,
    /// The system layer has made its first attempt (taken, not needed, or
    /// failed with `error`). Releases from outside wait for it at start,
    /// so a lock that exists at start binds logind before anything that
    /// outside input can do (a crash on a hostile release) happens.
    #[serde(skip)]
    pub settled: bool,
}

impl InhibitorStatus {
    /// Waits until the system layer's first attempt at the inhibitor is
    /// done (at once if it is); returns at once if the system layer is gone.
    pub async fn wait_settled(rx: &mut watch::Receiver<InhibitorStatus>) {
        let _ = rx.wait_for(|s| s.settled).await;
    }
}

/// The published state, for adapters and the status line.
#[derive(Clone)]
pub struct Views {
    pub snapshot: watch::Receiver<Snapshot>,
    pub apps: watch::Receiver<UpdateStatus>,
    pub inhibitor: watch::Receiver<InhibitorStatus>,
    pub settings: watch::Receiver<Arc<Settings>>,
    /// Written by the daemon at start and by the fleet slot task.
    pub fleet: watch::Receiver<crate::fleet::FleetStatus>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_is_rfc3339_and_never_panics() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_795_000_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::utc(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
