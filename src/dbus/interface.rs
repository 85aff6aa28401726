//! The `org.holdfast.Supervisor1` interface itself: its methods,
//! properties and signals, as `docs/org.holdfast.Supervisor1.xml` has
//! them. zbus takes an interface as one impl block, so this file is that
//! block; the signals are pub(super) because serve.rs emits them.

use std::collections::HashMap;

use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use super::error::printable;
use super::{document, require_root, BusError, Supervisor};
use crate::command::{Command, CommandError, LockInfo, PowerAction};
use crate::model::PendingReboot;
use crate::names::{AppName, ServiceName};
use crate::status::full_summary;

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
        let source = "D-Bus SetTarget";
        document::within_bound(&json, source)?;
        let len = json.len();
        // The target task parses it on the blocking pool.
        let r = self
            .handle
            .request(|reply| Command::SetTarget {
                json,
                source: source.into(),
                reply,
            })
            .await;
        document::handled(len);
        Ok(r??)
    }

    /// Sets the target of one app (JSON: what `apps.<app>` holds in a
    /// target state), the other apps in force left as they are: merged
    /// into the target in force, validated whole, saved and put in force as
    /// SetTarget does; answers the same summary, or Error.InvalidTarget (the
    /// target in force then stays).
    #[zbus(out_args("summary"))]
    async fn set_app_target(
        &self,
        app: String,
        json: String,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        require_root(conn, &hdr).await?;
        let app = AppName::new(app).map_err(CommandError::from)?;
        let source = "D-Bus SetAppTarget";
        let target = document::parse_app(json, app.clone(), source).await?;
        Ok(self
            .handle
            .request(|reply| Command::SetApp {
                app,
                target,
                source: source.into(),
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
        self.handle
            .request(|reply| Command::Update {
                force,
                only: None,
                who,
                reply,
            })
            .await??;
        Ok(())
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
        Ok(self
            .handle
            .request(|reply| Command::RestartApp {
                app,
                force,
                who,
                reply,
            })
            .await??)
    }

    /// Removes the volumes of an app no longer in the target, under its
    /// locks; refused while it holds one unless `force`. Returns the
    /// volumes removed.
    #[zbus(out_args("removed"))]
    async fn prune_volumes(
        &self,
        app: String,
        force: bool,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<String>, BusError> {
        let who = require_root(conn, &hdr).await?;
        let app = AppName::new(app).map_err(CommandError::from)?;
        Ok(self
            .handle
            .request(|reply| Command::PruneVolumes {
                app,
                force,
                who,
                reply,
            })
            .await??)
    }

    /// Replaces the HTTP API key of `app` (empty: the device key). The
    /// app's containers labelled for the API are made again with the new
    /// key, under the app's locks. The key itself is never sent.
    async fn rotate_api_key(
        &self,
        app: String,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let who = require_root(conn, &hdr).await?;
        let app = match app.as_str() {
            "" => None,
            _ => Some(AppName::new(app).map_err(CommandError::from)?),
        };
        Ok(self
            .handle
            .request(|reply| Command::RotateApiKey { app, who, reply })
            .await??)
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

    /// `[update.periodic]`: "open" or "closed until Mon 22:30 CET"; empty
    /// when no windows are configured (updates and reboots at any time).
    #[zbus(property)]
    fn maintenance_window(&self) -> String {
        let views = &self.handle.views;
        if views.settings.borrow().periodic.is_none() {
            return String::new();
        }
        let closed = views.snapshot.borrow().window_closed.clone();
        closed.unwrap_or_else(|| "open".into())
    }

    /// Per app update state as JSON: `{"app1": {"state": "waiting",
    /// "release": "r2", "blocked_by": ["lock:app1/main"]}}`.
    #[zbus(property)]
    fn apps(&self) -> String {
        serde_json::to_string(&self.handle.views.apps.borrow().apps).unwrap_or_default()
    }

    /// Volumes of apps no longer in the target (app to volume names),
    /// kept until PruneVolumes.
    #[zbus(property)]
    fn orphaned_volumes(&self) -> HashMap<String, Vec<String>> {
        self.handle
            .views
            .apps
            .borrow()
            .orphaned_volumes
            .clone()
            .into_iter()
            .collect()
    }

    /// The fleet id, its source, the group and the fleet slot, as JSON.
    #[zbus(property)]
    fn fleet(&self) -> String {
        serde_json::to_string(&*self.handle.views.fleet.borrow()).unwrap_or_default()
    }

    /// `available`, `unavailable: <reason>` or `unknown`.
    #[zbus(property)]
    fn engine(&self) -> String {
        self.handle.views.apps.borrow().engine.clone()
    }

    /// The settings in force, as JSON (the `settings` object of the JSON
    /// that `holdfast config show` prints): after a reload, keys that need a
    /// restart keep their old value here. (zbus puts these doc comments in
    /// the introspection XML as comments, where a double dash is invalid.)
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
        // The table's Arc, not a borrow held: the core waits for one.
        let table = self.handle.views.snapshot.borrow().table.clone();
        LockInfo::from_table(&table)
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
        let snapshot = self.handle.views.snapshot.borrow().clone();
        let inhibitor = self.handle.views.inhibitor.borrow().clone();
        full_summary(&snapshot, &inhibitor, &self.handle.views.apps.borrow())
    }

    /// Locks holdfast cannot see, and why: `app/service` (a directory that
    /// could not be read, a container that mounts another directory), or
    /// the lock root's path when it cannot be watched. They count as locked.
    #[zbus(property)]
    fn unreadable_locks(&self) -> HashMap<String, String> {
        let snap = self.handle.views.snapshot.borrow().clone();
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
    pub(super) async fn app_states_changed(
        emitter: &SignalEmitter<'_>,
        apps: String,
    ) -> zbus::Result<()>;

    /// The set of locks changed.
    #[zbus(signal, name = "LocksChanged")]
    pub(super) async fn lock_table_changed(
        emitter: &SignalEmitter<'_>,
        locks: Vec<LockInfo>,
    ) -> zbus::Result<()>;
}
