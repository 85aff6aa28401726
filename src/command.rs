//! The one command type the D-Bus, HTTP and CLI adapters turn requests
//! into, and the [`Handle`] that routes each command to the task that owns
//! what it touches. Variants marked internal are sent by holdfast's own
//! tasks, never by an adapter.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

mod error;
mod locks;

use crate::devconfig::Override;
use crate::model::Views;
use crate::names::{AppName, ServiceId, ServiceName};
use crate::target::AppTarget;
pub use error::{describe, CommandError};
use locks::fresh_lock_infos;
pub use locks::{HolderInfo, LockInfo};

/// A fleet deployment in force: the whole target's summary, and the apps
/// the server had before (what a cancel puts back).
#[derive(Debug)]
pub struct FleetApplied {
    pub summary: String,
    pub previous: std::collections::BTreeMap<AppName, AppTarget>,
}

#[derive(Debug)]
pub enum Command {
    /// The lock table with holders freshly read from /proc.
    ListLocks {
        reply: oneshot::Sender<Vec<LockInfo>>,
    },
    /// An operator takes every lock of an app (`holdfast take`).
    TakeLocks {
        app: AppName,
        services: Vec<ServiceName>,
        reply: oneshot::Sender<Result<Vec<ServiceId>, CommandError>>,
    },
    ReleaseLocks {
        app: AppName,
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
    /// Reboot or power off through logind: refused while apps hold locks
    /// (unless forced), and carried out to the end even when the one who
    /// asked goes away.
    Power {
        action: PowerAction,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Reboot as soon as no app holds a lock, or forced at `not_after_usec`
    /// (0: no deadline). Answers the description of the pending request.
    RequestReboot {
        not_after_usec: u64,
        who: String,
        reason: String,
        reply: oneshot::Sender<String>,
    },
    /// Drops a pending reboot request; answers whether there was one.
    CancelReboot {
        who: String,
        reply: oneshot::Sender<bool>,
    },
    /// A new target state: validated, saved, put in force. Answers a
    /// one-line summary.
    SetTarget {
        json: String,
        source: String,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    /// One app's target; the other apps in force stay as they are. Merged
    /// into the target in force (an empty one when there is none),
    /// validated whole, saved and put in force as SetTarget does. Answers
    /// the summary of the whole target.
    SetApp {
        app: AppName,
        target: AppTarget,
        source: String,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    /// A fleet server's deployment (internal: the hawkBit task): `apps`
    /// replace the apps `owner` deployed before; the device's own apps
    /// stay. Answers the summary of the whole target and the apps it
    /// replaced.
    SetFleetApps {
        owner: String,
        apps: std::collections::BTreeMap<AppName, AppTarget>,
        source: String,
        reply: oneshot::Sender<Result<FleetApplied, CommandError>>,
    },
    /// Internal (the hawkBit task): load `docker save` archives into the
    /// engine. Answers the image names they carried.
    LoadImages {
        archives: Vec<PathBuf>,
        reply: oneshot::Sender<Result<Vec<String>, CommandError>>,
    },
    /// Check for updates now; `force` goes through locks once, for the
    /// updates pending at that moment: of every app, or of `only` (an
    /// app's HTTP key forces its own app alone). Answers whether a check
    /// was triggered (false: no target in force, nothing to check).
    Update {
        force: bool,
        only: Option<AppName>,
        who: String,
        reply: oneshot::Sender<Result<bool, CommandError>>,
    },
    /// Restart an app's running containers under its locks; refused while
    /// the app holds a lock unless forced. Answers how many restarted.
    RestartApp {
        app: AppName,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
    /// Restart, stop or start one service of an app (`None`: the app's only
    /// service; an app of several is refused as invalid). Restart and stop
    /// are refused while the app holds a lock unless forced; start takes no
    /// lock. A stopped service stays stopped until started or restarted, or
    /// until a target changes it. Answers the service's container id.
    ServiceAction {
        app: AppName,
        service: Option<ServiceName>,
        action: ServiceAction,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    /// Purge an app's data: under its locks (refused while it holds one
    /// unless forced) its containers go and its volumes are removed, then
    /// it is applied again. Answers the volumes removed.
    PurgeApp {
        app: AppName,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<Vec<String>, CommandError>>,
    },
    /// The managed containers and the target's images as the engine has
    /// them now.
    EngineState {
        reply: oneshot::Sender<Result<EngineView, CommandError>>,
    },
    /// Remove the volumes of an app that is no longer in the target, under
    /// its locks (refused while it holds one unless forced). Answers the
    /// volumes removed.
    PruneVolumes {
        app: AppName,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<Vec<String>, CommandError>>,
    },
    /// Answered by the core loop.
    Ping { reply: oneshot::Sender<()> },

    /// Internal: the target file changed on disk.
    ReloadTarget,
    /// Internal: config.json says this about the lock override.
    SetOverride(Override),
    /// Internal: no maintenance window is open (`closed until …`), or one
    /// is (`None`).
    SetWindow(Option<String>),
    /// Internal: a power operation of ours starts or ends.
    SetPowering {
        on: bool,
        reply: oneshot::Sender<()>,
    },
    /// Internal: an update takes an app's locks (all-or-nothing).
    TakeForUpdate {
        app: AppName,
        services: Vec<ServiceName>,
        through: bool,
        reply: oneshot::Sender<Result<Vec<ServiceId>, CommandError>>,
    },
    /// Internal: an update or restart is done with the app's locks.
    ReleaseForUpdate {
        app: AppName,
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
    /// Internal: before a reboot, every app's locks.
    TakeForPower {
        apps: Vec<AppName>,
        force: bool,
        reply: oneshot::Sender<Result<Vec<AppName>, CommandError>>,
    },
    /// Internal: the reboot did not happen; give the locks back.
    ReleaseForPower {
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
    /// Internal: the device is shutting down; stop every managed container
    /// within `grace`.
    StopAll {
        grace: Duration,
        reply: oneshot::Sender<u32>,
    },
    /// Internal: the daemon stops; give back what is ours.
    Shutdown { reply: oneshot::Sender<()> },
    /// A new HTTP API key in place of an app's (None: the device key).
    /// The app's containers labelled for the API are made again with it,
    /// under the app's locks like any change.
    RotateApiKey {
        app: Option<AppName>,
        who: String,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
}

impl Command {
    /// The command as a log line shows it, cut: one may carry a whole
    /// target document.
    pub fn shown(&self) -> String {
        crate::text::shown(&format!("{self:?}"))
    }
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

    pub fn noun(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Restart,
    Stop,
    Start,
}

impl ServiceAction {
    pub fn verb(self) -> &'static str {
        match self {
            ServiceAction::Restart => "restart",
            ServiceAction::Stop => "stop",
            ServiceAction::Start => "start",
        }
    }
}

/// Where each command goes; cloned into every adapter.
#[derive(Clone)]
pub struct Handle {
    core: mpsc::Sender<Command>,
    keeper: mpsc::Sender<Command>,
    power: mpsc::Sender<Command>,
    target: mpsc::Sender<Command>,
    updates: mpsc::Sender<Command>,
    pub views: Views,
    proc_root: PathBuf,
}

/// The receiving ends, one per owning task.
pub struct Inboxes {
    pub core: mpsc::Receiver<Command>,
    pub keeper: mpsc::Receiver<Command>,
    pub power: mpsc::Receiver<Command>,
    pub target: mpsc::Receiver<Command>,
    pub updates: mpsc::Receiver<Command>,
}

impl Handle {
    pub fn new(views: Views, proc_root: PathBuf) -> (Handle, Inboxes) {
        let (core, core_rx) = mpsc::channel(64);
        let (keeper, keeper_rx) = mpsc::channel(64);
        let (power, power_rx) = mpsc::channel(16);
        let (target, target_rx) = mpsc::channel(16);
        let (updates, updates_rx) = mpsc::channel(64);
        let handle = Handle {
            core,
            keeper,
            power,
            target,
            updates,
            views,
            proc_root,
        };
        let inboxes = Inboxes {
            core: core_rx,
            keeper: keeper_rx,
            power: power_rx,
            target: target_rx,
            updates: updates_rx,
        };
        (handle, inboxes)
    }

    /// The task that owns what a command touches.
    fn route(&self, cmd: &Command) -> &mpsc::Sender<Command> {
        use Command::*;
        match cmd {
            RequestReboot { .. }
            | CancelReboot { .. }
            | Ping { .. }
            | SetOverride(_)
            | SetWindow(_)
            | SetPowering { .. }
            | ListLocks { .. } => &self.core,
            TakeLocks { .. }
            | ReleaseLocks { .. }
            | TakeForUpdate { .. }
            | ReleaseForUpdate { .. }
            | TakeForPower { .. }
            | ReleaseForPower { .. }
            | Shutdown { .. } => &self.keeper,
            Power { .. } => &self.power,
            SetTarget { .. } | SetApp { .. } | SetFleetApps { .. } | ReloadTarget => &self.target,
            Update { .. }
            | RestartApp { .. }
            | ServiceAction { .. }
            | PurgeApp { .. }
            | EngineState { .. }
            | PruneVolumes { .. }
            | StopAll { .. }
            | LoadImages { .. }
            | RotateApiKey { .. } => &self.updates,
        }
    }

    pub async fn send(&self, cmd: Command) -> Result<(), CommandError> {
        if let Command::ListLocks { reply } = cmd {
            // Served here: a /proc walk on the blocking pool, never in a
            // task that lock events wait for.
            let table = self.views.snapshot.borrow().table.clone();
            let proc_root = self.proc_root.clone();
            let infos = tokio::task::spawn_blocking(move || fresh_lock_infos(&table, &proc_root))
                .await
                .map_err(|_| CommandError::Unavailable)?;
            let _ = reply.send(infos);
            return Ok(());
        }
        self.route(&cmd)
            .send(cmd)
            .await
            .map_err(|_| CommandError::Unavailable)
    }

    /// Sends a command and waits for its answer.
    pub async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| CommandError::Unavailable)
    }
}

/// What the HTTP state routes show of the engine: the managed containers
/// and which of the target's images the engine has.
#[derive(Debug, Clone, Default)]
pub struct EngineView {
    pub containers: Vec<crate::engine::Container>,
    /// The target's images the engine has.
    pub present: std::collections::BTreeSet<String>,
    /// The target in force when the engine was asked.
    pub target: Option<std::sync::Arc<crate::target::Target>>,
}
