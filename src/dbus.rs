//! The D-Bus adapter: `org.holdfast.Supervisor1` on the system bus. Methods
//! turn into [`Command`]s; properties read the published views. Nothing
//! else lives here: logind belongs to the system layer. The contract is
//! `docs/org.holdfast.Supervisor1.xml`.

use std::collections::HashMap;
use std::time::Duration;

use zbus::object_server::SignalEmitter;
use zbus::{fdo, interface, Connection};

use crate::command::{Command, CommandError, Handle, LockInfo, PowerAction};
use crate::locks::own::OwnLockError;
use crate::model::PendingReboot;
use crate::names::{AppName, ServiceName};
use crate::status::full_summary;

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
        let msg = printable(&e.to_string());
        match e {
            CommandError::OwnLock(OwnLockError::Contended { .. }) | CommandError::Locked { .. } => {
                BusError::Locked(msg)
            }
            CommandError::OwnLock(OwnLockError::NotHeld(_)) => BusError::NotHeld(msg),
            CommandError::InvalidName(_) => BusError::InvalidName(msg),
            CommandError::InvalidTarget(m) => BusError::InvalidTarget(printable(&m)),
            CommandError::NotFound(_) => BusError::NotFound(msg),
            _ => BusError::Failed(msg),
        }
    }
}

/// D-Bus strings may not hold NUL (a reply with one breaks the connection);
/// control characters are shown escaped.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '\n' | '\t' => vec![c],
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect()
}

pub struct Supervisor {
    handle: Handle,
    lock_root: String,
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
        Ok(self
            .handle
            .request(|reply| Command::Power {
                action,
                force,
                who,
                reply,
            })
            .await??)
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
        Ok(self
            .handle
            .request(|reply| Command::ListLocks { reply })
            .await?)
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
        let taken = self
            .handle
            .request(|reply| Command::TakeLocks {
                app,
                services,
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
        Ok(self
            .handle
            .request(|reply| Command::ReleaseLocks { app, reply })
            .await??)
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
        Ok(self
            .handle
            .request(|reply| Command::SetTarget {
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
        Ok(self
            .handle
            .request(|reply| Command::Update { force, who, reply })
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
        let r = self
            .handle
            .request(|reply| Command::RestartApp {
                app,
                force,
                who,
                reply,
            })
            .await?;
        Ok(r?)
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
        Ok(self
            .handle
            .request(|reply| Command::RequestReboot {
                not_after_usec,
                who,
                reason: "requested".into(),
                reply,
            })
            .await?)
    }

    /// Drops a pending RequestReboot; answers whether one was pending.
    #[zbus(out_args("cancelled"))]
    async fn cancel_reboot(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<bool, BusError> {
        let who = require_root(conn, &hdr).await?;
        Ok(self
            .handle
            .request(|reply| Command::CancelReboot { who, reply })
            .await?)
    }

    /// Whether the lock override (config.json) is on.
    #[zbus(property)]
    fn lock_override(&self) -> bool {
        self.handle.views.snapshot.borrow().lock_override.enabled
    }

    /// Where the override comes from, e.g.
    /// `deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK`; empty when unset.
    #[zbus(property)]
    fn lock_override_source(&self) -> String {
        self.handle
            .views
            .snapshot
            .borrow()
            .lock_override
            .source
            .clone()
    }

    /// The pending RequestReboot, described; empty when none.
    #[zbus(property)]
    fn pending_reboot(&self) -> String {
        self.handle
            .views
            .snapshot
            .borrow()
            .pending_reboot
            .as_ref()
            .map(PendingReboot::describe)
            .unwrap_or_default()
    }

    /// Per app update state as JSON: `{"app1": {"state": "waiting",
    /// "release": "r2", "blocked_by": ["lock:app1/main"]}}`.
    #[zbus(property)]
    fn apps(&self) -> String {
        serde_json::to_string(&self.handle.views.apps.borrow().apps).unwrap_or_default()
    }

    /// `available`, `unavailable: <reason>` or `unknown`.
    #[zbus(property)]
    fn engine(&self) -> String {
        self.handle.views.apps.borrow().engine.clone()
    }

    /// The settings in force, as JSON (the `settings` object of `holdfast
    /// config show --json`): after a reload, keys that need a restart keep
    /// their old value here.
    #[zbus(property)]
    fn config_in_force(&self) -> String {
        self.handle.views.settings.borrow().to_json().to_string()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn locked(&self) -> bool {
        self.handle.views.snapshot.borrow().table.is_locked()
    }

    #[zbus(property)]
    fn locks(&self) -> Vec<LockInfo> {
        LockInfo::from_table(&self.handle.views.snapshot.borrow().table)
    }

    #[zbus(property)]
    fn inhibitor_held(&self) -> bool {
        self.handle.views.inhibitor.borrow().held
    }

    #[zbus(property)]
    fn inhibitor_why(&self) -> String {
        self.handle.views.inhibitor.borrow().why.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn lock_root(&self) -> String {
        self.lock_root.clone()
    }

    #[zbus(property)]
    fn status(&self) -> String {
        full_summary(
            &self.handle.views.snapshot.borrow(),
            &self.handle.views.inhibitor.borrow(),
            &self.handle.views.apps.borrow(),
        )
    }

    /// Lock directories that could not be read, and why: `app/service`, or
    /// the lock root's path when it cannot be watched. They count as locked.
    #[zbus(property)]
    fn unreadable_locks(&self) -> HashMap<String, String> {
        let snap = self.handle.views.snapshot.borrow();
        let mut out: HashMap<String, String> = snap
            .table
            .unknown()
            .map(|(id, r)| (id.to_string(), printable(r)))
            .collect();
        if let Some(r) = snap.table.blind() {
            out.insert(self.lock_root.clone(), printable(r));
        }
        out
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
    #[zbus(property)]
    fn unreadable_locks(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(signal, name = "LocksChanged")]
    fn lock_table_changed(&self, locks: Vec<LockInfo>) -> zbus::Result<()>;
}

async fn connect(handle: &Handle, lock_root: &str) -> zbus::Result<Connection> {
    zbus::connection::Builder::system()?
        .serve_at(
            OBJECT_PATH,
            Supervisor {
                handle: handle.clone(),
                lock_root: lock_root.to_owned(),
            },
        )?
        .name(BUS_NAME)?
        .build()
        .await
}

/// Emits property-change and LocksChanged signals as the views move.
async fn emit_changes(conn: &Connection, handle: &Handle) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Supervisor>(OBJECT_PATH)
        .await?;
    let mut snapshot = handle.views.snapshot.clone();
    let mut inh = handle.views.inhibitor.clone();
    let mut apps = handle.views.apps.clone();
    let mut settings = handle.views.settings.clone();
    let mut last = snapshot.borrow_and_update().clone();
    inh.mark_unchanged();
    apps.mark_unchanged();
    settings.mark_unchanged();
    loop {
        let emitter = iface.signal_emitter();
        tokio::select! {
            r = snapshot.changed() => {
                if r.is_err() { return Ok(()) }
                let now = snapshot.borrow_and_update().clone();
                let s = iface.get().await;
                if now.table != last.table {
                    let locks = LockInfo::from_table(&now.table);
                    s.locked_changed(emitter).await?;
                    s.locks_changed(emitter).await?;
                    s.unreadable_locks_changed(emitter).await?;
                    Supervisor::lock_table_changed(emitter, locks).await?;
                }
                if now.lock_override != last.lock_override {
                    s.lock_override_changed(emitter).await?;
                    s.lock_override_source_changed(emitter).await?;
                }
                if now.pending_reboot != last.pending_reboot {
                    s.pending_reboot_changed(emitter).await?;
                }
                s.status_changed(emitter).await?;
                last = now;
            }
            r = inh.changed() => {
                if r.is_err() { return Ok(()) }
                inh.borrow_and_update();
                let s = iface.get().await;
                s.inhibitor_held_changed(emitter).await?;
                s.inhibitor_why_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
            r = settings.changed() => {
                if r.is_err() { return Ok(()) }
                settings.borrow_and_update();
                iface.get().await.config_in_force_changed(emitter).await?;
            }
            r = apps.changed() => {
                if r.is_err() { return Ok(()) }
                let json = serde_json::to_string(&apps.borrow_and_update().apps).unwrap_or_default();
                let s = iface.get().await;
                s.apps_changed(emitter).await?;
                Supervisor::app_states_changed(emitter, json).await?;
                s.engine_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
        }
    }
}

/// Owns holdfast's bus name for the daemon's lifetime: serves the
/// interface and reconnects with a bounded back-off when the bus goes
/// away. `ready` fires once the name is first owned.
pub async fn run(handle: Handle, lock_root: String, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = match connect(&handle, &lock_root).await {
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
        let disconnected = tokio::select! {
            r = emit_changes(&conn, &handle) => r.is_err(),
            _ = bus_gone(&conn) => true,
        };
        if !disconnected {
            return;
        }
        tracing::warn!("lost the system bus; reconnecting");
    }
}

/// Resolves when the connection to the bus is gone: a stream of a rare
/// signal (our own name changing hands) ends with the connection.
async fn bus_gone(conn: &Connection) {
    use futures_util::StreamExt;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")
        .and_then(|b| b.interface("org.freedesktop.DBus"))
        .and_then(|b| b.member("NameOwnerChanged"))
        .and_then(|b| b.add_arg(BUS_NAME))
        .map(|b| b.build());
    let Ok(rule) = rule else { return };
    let Ok(mut stream) = zbus::MessageStream::for_match_rule(rule, conn, Some(4)).await else {
        return;
    };
    while let Some(m) = stream.next().await {
        if m.is_err() {
            break;
        }
    }
}
