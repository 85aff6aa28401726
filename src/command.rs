//! The one command type D-Bus (and later HTTP) adapters turn requests into;
//! the daemon's core task owns the state and answers them.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use zbus::zvariant::{OwnedValue, Type, Value};

use crate::locks::own::OwnLockError;
use crate::locks::state::{LockTable, ServiceLock};
use crate::names::{AppName, NameError, ServiceId, ServiceName};
use crate::update::runner::RestartError;

#[derive(Debug)]
pub enum Command {
    /// The lock table with holders freshly read from /proc.
    ListLocks {
        reply: oneshot::Sender<Vec<LockInfo>>,
    },
    TakeLocks {
        app: AppName,
        services: Vec<ServiceName>,
        /// Pass over locks apps hold (override or forced update).
        through: bool,
        reply: oneshot::Sender<Result<Vec<ServiceId>, CommandError>>,
    },
    ReleaseLocks {
        app: AppName,
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
    /// Before a reboot or power-off: refuse while apps hold locks (unless
    /// forced), else take every app's locks and release the inhibitor.
    /// Answers the locks that were forced through.
    PreparePower {
        action: PowerAction,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<Vec<ServiceId>, CommandError>>,
    },
    /// logind refused: give the locks back and hold the inhibitor again.
    AbortPower { reply: oneshot::Sender<()> },
    /// A new target state (D-Bus, CLI, HTTP): validated, saved, put in
    /// force. Answers a one-line summary.
    SetTarget {
        json: String,
        source: String,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    /// The target file changed on disk: re-read it.
    ReloadTarget,
    /// config.json changed on disk: re-read it (the lock override).
    ReloadDeviceConfig,
    /// Check for updates now; `force` goes through locks once, for the
    /// updates pending at that moment.
    Update {
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Restart an app's running containers under its locks; refused while
    /// the app holds a lock unless forced. Answers how many restarted.
    RestartApp {
        app: AppName,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<u32, RestartError>>,
    },
    /// Reboot as soon as no app holds a lock, or forced at `not_after_usec`
    /// (0: no deadline). Answers the description of the pending request.
    RequestReboot {
        not_after_usec: u64,
        who: String,
        reply: oneshot::Sender<String>,
    },
    /// Drops a pending reboot request; answers whether there was one.
    CancelReboot {
        who: String,
        reply: oneshot::Sender<bool>,
    },
    /// Answered by the core loop: proof of progress for the watchdog.
    Ping { reply: oneshot::Sender<()> },
    /// Daemon-internal: release own locks and stop the core loop.
    Shutdown { reply: oneshot::Sender<()> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
}

impl PowerAction {
    pub fn verb(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "shut down",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("update locks are held by {}; not going to {} (force overrides)", join(.0), .1.verb())]
    Locked(Vec<ServiceId>, PowerAction),
    #[error(transparent)]
    OwnLock(#[from] OwnLockError),
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    #[error("{0}")]
    Failed(String),
    #[error("holdfastd is shutting down")]
    Unavailable,
}

fn join(ids: &[ServiceId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends a command and waits for its answer.
pub async fn request<T>(
    tx: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, CommandError> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply))
        .await
        .map_err(|_| CommandError::Unavailable)?;
    rx.await.map_err(|_| CommandError::Unavailable)
}

/// One held lock as reported on D-Bus and by `holdfast locks --json`.
/// D-Bus signature `(ssstba(uss))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct LockInfo {
    /// `app/service`
    pub service: String,
    /// `app` or `holdfast`
    pub owner: String,
    /// `file`, `dir`, `symlink` or `other`
    pub kind: String,
    /// Microseconds since the epoch.
    pub since_usec: u64,
    pub stale: bool,
    pub holders: Vec<HolderInfo>,
}

/// D-Bus signature `(uss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct HolderInfo {
    pub pid: u32,
    pub comm: String,
    /// `open` or `flock`
    pub how: String,
}

fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl LockInfo {
    pub fn new(id: &ServiceId, lock: &ServiceLock) -> Self {
        Self {
            service: id.to_string(),
            owner: word(&lock.owner()),
            kind: word(&lock.kind()),
            since_usec: lock.since_usec(),
            stale: lock.stale(),
            holders: lock
                .holders
                .iter()
                .flatten()
                .map(|h| HolderInfo {
                    pid: h.pid,
                    comm: h.comm.clone(),
                    how: word(&h.how),
                })
                .collect(),
        }
    }

    pub fn from_table(table: &LockTable) -> Vec<Self> {
        table.locks().map(|(id, l)| Self::new(id, l)).collect()
    }
}
