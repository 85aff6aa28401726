//! The D-Bus adapter: `org.holdfast.Supervisor1` on the system bus. Methods
//! turn into [`Command`]s; properties read the published state. The
//! contract is `docs/org.holdfast.Supervisor1.xml`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use zbus::object_server::SignalEmitter;
use zbus::{fdo, interface, Connection};

use crate::arbiter::PendingReboot;
use crate::command::{request, Command, CommandError, LockInfo, PowerAction};
use crate::devconfig::Override;
use crate::inhibit::{Ended, Inhibitor, InhibitorStatus};
use crate::locks::own::OwnLockError;
use crate::locks::LockTable;
use crate::names::{AppName, ServiceName};
use crate::power::{Power, PowerError};
use crate::status::full_summary;
use crate::update::runner::RestartError;
use crate::update::status::UpdateStatus;

pub const BUS_NAME: &str = "org.holdfast.Supervisor1";
pub const OBJECT_PATH: &str = "/org/holdfast/Supervisor1";

/// Errors as D-Bus error names; the only place they are mapped.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.holdfast.Supervisor1.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A lock is held by an app.
    Locked(String),
    InvalidName(String),
    NotHeld(String),
    AccessDenied(String),
    InvalidTarget(String),
    NotFound(String),
    Failed(String),
}

impl From<CommandError> for BusError {
    fn from(e: CommandError) -> Self {
        let msg = e.to_string();
        match e {
            CommandError::OwnLock(OwnLockError::Contended { .. }) | CommandError::Locked(..) => {
                BusError::Locked(msg)
            }
            CommandError::OwnLock(OwnLockError::NotHeld(_)) => BusError::NotHeld(msg),
            CommandError::InvalidName(_) => BusError::InvalidName(msg),
            CommandError::InvalidTarget(m) => BusError::InvalidTarget(m),
            _ => BusError::Failed(msg),
        }
    }
}

/// Shared state the interface reads.
#[derive(Clone)]
pub struct Shared {
    pub commands: mpsc::Sender<Command>,
    pub table: watch::Receiver<Arc<LockTable>>,
    pub inhibitor: watch::Receiver<InhibitorStatus>,
    pub what: watch::Receiver<String>,
    pub powering: watch::Receiver<bool>,
    pub inhibitor_tx: Arc<watch::Sender<InhibitorStatus>>,
    pub lock_root: String,
    pub updates: watch::Receiver<UpdateStatus>,
    pub engine_socket: std::path::PathBuf,
    pub lock_override: watch::Receiver<Override>,
    pub pending_reboot: watch::Receiver<Option<PendingReboot>>,
    pub settings: watch::Receiver<Arc<crate::config::Settings>>,
}

pub struct Supervisor {
    shared: Shared,
}

impl Supervisor {
    async fn power(
        &self,
        action: PowerAction,
        force: bool,
        conn: &Connection,
        hdr: &zbus::message::Header<'_>,
    ) -> Result<(), BusError> {
        let who = require_root(conn, hdr).await?;
        let power = Power {
            commands: self.shared.commands.clone(),
            inhibitor: self.shared.inhibitor.clone(),
        };
        Ok(power.run(conn, action, force, &who).await?)
    }
}

impl From<PowerError> for BusError {
    fn from(e: PowerError) -> Self {
        match e {
            PowerError::Command(c) => c.into(),
            other => BusError::Failed(other.to_string()),
        }
    }
}

/// Only root may call methods (the bus policy says so too; this holds when
/// a policy is missing).
/// Answers who the caller is, for the log of forced actions.
async fn require_root(
    conn: &Connection,
    hdr: &zbus::message::Header<'_>,
) -> Result<String, BusError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BusError::AccessDenied("no sender".into()))?;
    let uid = fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| BusError::AccessDenied(e.to_string()))?;
    if uid == 0 {
        Ok(format!("D-Bus client {sender} (uid 0)"))
    } else {
        Err(BusError::AccessDenied(format!(
            "uid {uid} may not call holdfast methods; only root may"
        )))
    }
}

#[interface(name = "org.holdfast.Supervisor1")]
impl Supervisor {
    /// The lock table with holders freshly read from /proc.
    #[zbus(out_args("locks"))]
    async fn list_locks(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<LockInfo>, BusError> {
        require_root(conn, &hdr).await?;
        Ok(request(&self.shared.commands, |reply| Command::ListLocks { reply }).await?)
    }

    /// Takes the locks of the listed services of `app` (all of its service
    /// directories when the list is empty), all-or-nothing.
    #[zbus(out_args("taken"))]
    async fn take_locks(
        &self,
        app: String,
        services: Vec<String>,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<String>, BusError> {
        require_root(conn, &hdr).await?;
        let app = AppName::new(app).map_err(CommandError::from)?;
        let services = services
            .into_iter()
            .map(ServiceName::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CommandError::from)?;
        let taken = request(&self.shared.commands, |reply| Command::TakeLocks {
            app,
            services,
            through: false,
            reply,
        })
        .await??;
        Ok(taken.iter().map(|id| id.to_string()).collect())
    }

    /// Releases holdfast's own locks of `app`; returns how many files went.
    #[zbus(out_args("removed"))]
    async fn release_locks(
        &self,
        app: String,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u32, BusError> {
        require_root(conn, &hdr).await?;
        let app = AppName::new(app).map_err(CommandError::from)?;
        Ok(
            request(&self.shared.commands, |reply| Command::ReleaseLocks {
                app,
                reply,
            })
            .await??,
        )
    }

    /// Reboots through logind unless an app holds an update lock (then
    /// Error.Locked naming the locks); `force` goes through the locks.
    async fn reboot(
        &self,
        force: bool,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        self.power(PowerAction::Reboot, force, conn, &hdr).await
    }

    /// Powers off through logind, with the same rules as Reboot.
    async fn shutdown(
        &self,
        force: bool,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        self.power(PowerAction::PowerOff, force, conn, &hdr).await
    }

    /// Validates a target state (JSON, docs/target-state.md), saves it and
    /// puts it in force; answers a summary, or Error.InvalidTarget with the
    /// JSON path and reason (the previous target stays in force).
    #[zbus(out_args("summary"))]
    async fn set_target(
        &self,
        json: String,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        require_root(conn, &hdr).await?;
        Ok(request(&self.shared.commands, |reply| Command::SetTarget {
            json,
            source: "D-Bus SetTarget".into(),
            reply,
        })
        .await??)
    }

    /// Checks for updates now. With force, the updates pending at this
    /// moment go through app locks once (an apply already waiting on a lock
    /// included); the override is not set. Logged with the caller.
    async fn update(
        &self,
        force: bool,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let who = require_root(conn, &hdr).await?;
        Ok(request(&self.shared.commands, |reply| Command::Update {
            force,
            who,
            reply,
        })
        .await??)
    }

    /// Restarts the running containers of `app` under its locks; refused
    /// with Error.Locked while the app holds a lock unless `force`.
    /// Returns how many containers were restarted.
    #[zbus(out_args("restarted"))]
    async fn restart_app(
        &self,
        app: String,
        force: bool,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u32, BusError> {
        let who = require_root(conn, &hdr).await?;
        let app = AppName::new(app).map_err(CommandError::from)?;
        let r = request(&self.shared.commands, |reply| Command::RestartApp {
            app,
            force,
            who,
            reply,
        })
        .await?;
        r.map_err(|e| match e {
            RestartError::Locked { .. } => BusError::Locked(e.to_string()),
            RestartError::NotFound(_) => BusError::NotFound(e.to_string()),
            other => BusError::Failed(other.to_string()),
        })
    }

    /// Reboots as soon as no app holds a lock, or at `not_after_usec`
    /// (microseconds since the epoch; 0: no deadline) forced through the
    /// locks, whichever comes first. Replaces a pending request.
    #[zbus(out_args("pending"))]
    async fn request_reboot(
        &self,
        not_after_usec: u64,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        let who = require_root(conn, &hdr).await?;
        Ok(
            request(&self.shared.commands, |reply| Command::RequestReboot {
                not_after_usec,
                who,
                reply,
            })
            .await?,
        )
    }

    /// Drops a pending RequestReboot; answers whether one was pending.
    #[zbus(out_args("cancelled"))]
    async fn cancel_reboot(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<bool, BusError> {
        let who = require_root(conn, &hdr).await?;
        Ok(
            request(&self.shared.commands, |reply| Command::CancelReboot {
                who,
                reply,
            })
            .await?,
        )
    }

    /// Whether the lock override (config.json) is on.
    #[zbus(property)]
    fn lock_override(&self) -> bool {
        self.shared.lock_override.borrow().enabled
    }

    /// Where the override comes from, e.g.
    /// `deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK`; empty when unset.
    #[zbus(property)]
    fn lock_override_source(&self) -> String {
        self.shared.lock_override.borrow().source.clone()
    }

    /// The pending RequestReboot, described; empty when none.
    #[zbus(property)]
    fn pending_reboot(&self) -> String {
        self.shared
            .pending_reboot
            .borrow()
            .as_ref()
            .map(PendingReboot::describe)
            .unwrap_or_default()
    }

    /// Per app update state as JSON: `{"app1": {"state": "waiting",
    /// "release": "r2", "blocked_by": ["lock:app1/main"]}}`.
    #[zbus(property)]
    fn apps(&self) -> String {
        serde_json::to_string(&self.shared.updates.borrow().apps).unwrap_or_default()
    }

    /// `available`, `unavailable: <reason>` or `unknown`.
    #[zbus(property)]
    fn engine(&self) -> String {
        self.shared.updates.borrow().engine.clone()
    }

    /// The settings in force, as JSON (the `settings` object of `holdfast
    /// config show --json`): after a reload, keys that need a restart keep
    /// their old value here.
    #[zbus(property)]
    fn config_in_force(&self) -> String {
        self.shared.settings.borrow().to_json().to_string()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn locked(&self) -> bool {
        self.shared.table.borrow().is_locked()
    }

    #[zbus(property)]
    fn locks(&self) -> Vec<LockInfo> {
        LockInfo::from_table(&self.shared.table.borrow())
    }

    #[zbus(property)]
    fn inhibitor_held(&self) -> bool {
        self.shared.inhibitor.borrow().held
    }

    #[zbus(property)]
    fn inhibitor_why(&self) -> String {
        self.shared.inhibitor.borrow().why.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn lock_root(&self) -> String {
        self.shared.lock_root.clone()
    }

    #[zbus(property)]
    fn status(&self) -> String {
        full_summary(
            &self.shared.table.borrow(),
            &self.shared.inhibitor.borrow(),
            &self.shared.updates.borrow(),
            &self.shared.lock_override.borrow(),
            self.shared.pending_reboot.borrow().is_some(),
        )
    }

    /// The update state of the apps changed; carries the Apps JSON.
    #[zbus(signal, name = "AppsChanged")]
    async fn app_states_changed(emitter: &SignalEmitter<'_>, apps: String) -> zbus::Result<()>;

    /// The set of locks changed.
    #[zbus(signal, name = "LocksChanged")]
    async fn lock_table_changed(
        emitter: &SignalEmitter<'_>,
        locks: Vec<LockInfo>,
    ) -> zbus::Result<()>;
}

/// Generated client side, used by the CLI and the tests.
#[zbus::proxy(
    interface = "org.holdfast.Supervisor1",
    default_service = "org.holdfast.Supervisor1",
    default_path = "/org/holdfast/Supervisor1"
)]
pub trait Supervisor1 {
    fn list_locks(&self) -> zbus::Result<Vec<LockInfo>>;
    fn take_locks(&self, app: &str, services: &[&str]) -> zbus::Result<Vec<String>>;
    fn release_locks(&self, app: &str) -> zbus::Result<u32>;
    fn reboot(&self, force: bool) -> zbus::Result<()>;
    fn shutdown(&self, force: bool) -> zbus::Result<()>;
    fn set_target(&self, json: &str) -> zbus::Result<String>;
    fn update(&self, force: bool) -> zbus::Result<()>;
    fn restart_app(&self, app: &str, force: bool) -> zbus::Result<u32>;
    fn request_reboot(&self, not_after_usec: u64) -> zbus::Result<String>;
    fn cancel_reboot(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn lock_override(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn lock_override_source(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn pending_reboot(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn apps(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn engine(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn config_in_force(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn locked(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn locks(&self) -> zbus::Result<Vec<LockInfo>>;
    #[zbus(property)]
    fn inhibitor_held(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn inhibitor_why(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn lock_root(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
    #[zbus(signal, name = "LocksChanged")]
    fn lock_table_changed(&self, locks: Vec<LockInfo>) -> zbus::Result<()>;
}

async fn connect(shared: &Shared) -> zbus::Result<Connection> {
    zbus::connection::Builder::system()?
        .serve_at(
            OBJECT_PATH,
            Supervisor {
                shared: shared.clone(),
            },
        )?
        .name(BUS_NAME)?
        .build()
        .await
}

/// Emits property-change and LocksChanged signals as the state moves.
async fn emit_changes(conn: &Connection, shared: &Shared) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Supervisor>(OBJECT_PATH)
        .await?;
    let mut table = shared.table.clone();
    let mut inh = shared.inhibitor.clone();
    let mut updates = shared.updates.clone();
    let mut lock_override = shared.lock_override.clone();
    let mut pending = shared.pending_reboot.clone();
    lock_override.mark_unchanged();
    pending.mark_unchanged();
    table.mark_unchanged();
    inh.mark_unchanged();
    updates.mark_unchanged();
    loop {
        let emitter = iface.signal_emitter();
        tokio::select! {
            r = table.changed() => {
                if r.is_err() { return Ok(()) }
                let locks = LockInfo::from_table(&table.borrow_and_update());
                let s = iface.get().await;
                s.locked_changed(emitter).await?;
                s.locks_changed(emitter).await?;
                s.status_changed(emitter).await?;
                Supervisor::lock_table_changed(emitter, locks).await?;
            }
            r = inh.changed() => {
                if r.is_err() { return Ok(()) }
                inh.borrow_and_update();
                let s = iface.get().await;
                s.inhibitor_held_changed(emitter).await?;
                s.inhibitor_why_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
            r = lock_override.changed() => {
                if r.is_err() { return Ok(()) }
                lock_override.borrow_and_update();
                let s = iface.get().await;
                s.lock_override_changed(emitter).await?;
                s.lock_override_source_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
            r = pending.changed() => {
                if r.is_err() { return Ok(()) }
                pending.borrow_and_update();
                let s = iface.get().await;
                s.pending_reboot_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
            r = updates.changed() => {
                if r.is_err() { return Ok(()) }
                let apps = serde_json::to_string(&updates.borrow_and_update().apps).unwrap_or_default();
                let s = iface.get().await;
                s.apps_changed(emitter).await?;
                Supervisor::app_states_changed(emitter, apps).await?;
                s.engine_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
        }
    }
}

/// Owns the bus side for the daemon's lifetime: serves the interface, runs
/// the inhibitor, and reconnects with a bounded back-off when the bus goes
/// away. `ready` fires once the name is first owned.
pub async fn run(shared: Shared, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut inhibitor = Inhibitor::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = match connect(&shared).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot serve {BUS_NAME} on the system bus");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if let Some(r) = ready.take() {
            let _ = r.send(());
        } else {
            tracing::info!("reconnected to the system bus");
        }
        let mut table = shared.table.clone();
        let mut what = shared.what.clone();
        let mut powering = shared.powering.clone();
        let mut lock_override = shared.lock_override.clone();
        let ended = tokio::select! {
            e = inhibitor.run(&conn, &mut table, &mut what, &mut powering, &mut lock_override, &shared.inhibitor_tx) => e,
            r = emit_changes(&conn, &shared) => match r {
                Ok(()) => Ended::Shutdown,
                Err(_) => Ended::Disconnected,
            },
            r = crate::update::shutdown::run(&conn, shared.engine_socket.clone(), shared.updates.clone()) => match r {
                Ok(()) => Ended::Shutdown,
                Err(_) => Ended::Disconnected,
            },
        };
        match ended {
            Ended::Shutdown => return,
            Ended::Disconnected => tracing::warn!("lost the system bus; reconnecting"),
        }
    }
}
