//! The core task: owns the lock table and holdfast's own locks, applies
//! lock events, answers commands, publishes the table to subscribers.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::arbiter::PendingReboot;
use crate::bootcfg::BootConfig;
use crate::command::{Command, CommandError, LockInfo, PowerAction};
use crate::devconfig::{self, Override};
use crate::locks::breaker;
use crate::locks::own::OwnLockError;
use crate::locks::own::OwnLocks;
use crate::locks::state::{Change, LockEvent, Owner};
use crate::locks::{holders, LockTable};
use crate::logging::msgid;
use crate::names::{AppName, ServiceId};
use crate::update::runner::{RestartError, UpdateRequest};
use crate::update::store::{Reloaded, StoreError, TargetStore};

pub struct Core {
    pub table: LockTable,
    pub own: OwnLocks,
    pub table_tx: watch::Sender<Arc<LockTable>>,
    pub proc_root: PathBuf,
    /// true while a reboot/power-off of ours is under way: the inhibitor is
    /// released so it cannot block our own request (systemd >= 257).
    pub power_tx: watch::Sender<bool>,
    /// Apps whose locks we took for that reboot.
    pub power_locks: Vec<AppName>,
    pub target: TargetStore,
    pub lock_root: PathBuf,
    pub config_json: PathBuf,
    pub lock_override: watch::Sender<Override>,
    pub updates: mpsc::Sender<UpdateRequest>,
    pub pending_reboot: watch::Sender<Option<PendingReboot>>,
    pub boot: BootConfig,
}

impl Core {
    /// Runs until Shutdown or until both inputs close.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<LockEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        // Reduce the whole burst that is queued, publish once.
                        let mut changed = self.reduce(ev);
                        while let Ok(ev) = events.try_recv() {
                            changed |= self.reduce(ev);
                        }
                        if changed {
                            self.publish();
                        }
                    }
                    None => {
                        tracing::error!("lock watcher stopped");
                        return;
                    }
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        self.release_all();
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
            }
        }
    }

    /// Applies one event and publishes the table.
    pub fn apply(&mut self, ev: LockEvent) {
        if self.reduce(ev) {
            self.publish();
        }
    }

    /// Applies one event; true when subscribers should hear of it.
    fn reduce(&mut self, ev: LockEvent) -> bool {
        let scoped = match &ev {
            LockEvent::ServiceObserved { id, .. } | LockEvent::HoldersObserved { id, .. } => {
                Some(id.clone())
            }
            _ => None,
        };
        let before = scoped.as_ref().map(|id| self.table.get(id).cloned());
        let changes = self.table.apply(ev);
        for c in &changes {
            log_change(c, &self.table);
        }
        let unchanged = changes.is_empty()
            && matches!((&scoped, &before), (Some(id), Some(b)) if self.table.get(id) == b.as_ref());
        !unchanged
    }

    fn publish(&self) {
        self.table_tx.send_replace(Arc::new(self.table.clone()));
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::ListLocks { reply } => {
                let _ = reply.send(self.fresh_lock_infos());
            }
            Command::TakeLocks {
                app,
                services,
                through,
                reply,
            } => {
                let r = if through {
                    self.own.take_through(&app, &services)
                } else {
                    self.own.take(&app, &services)
                };
                match &r {
                    Ok(ids) => {
                        tracing::info!(app = %app, services = ids.len(), "holdfast took the locks of app {app}")
                    }
                    Err(e) => {
                        tracing::info!(app = %app, error = %e, "could not take the locks of app {app}")
                    }
                }
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::ReleaseLocks { app, reply } => {
                let r = self.own.release(&app);
                if let Ok(n) = &r {
                    tracing::info!(app = %app, files = n, "holdfast released the locks of app {app}");
                }
                let _ = reply.send(r.map(|n| n as u32).map_err(Into::into));
            }
            Command::PreparePower {
                action,
                force,
                who,
                reply,
            } => {
                let _ = reply.send(self.prepare_power(action, force, &who));
            }
            Command::AbortPower { reply } => {
                self.abort_power();
                let _ = reply.send(());
            }
            Command::SetTarget {
                json,
                source,
                reply,
            } => {
                let r = match self.target.accept(&json, &source) {
                    Ok(t) => {
                        let summary = target_summary(&t);
                        tracing::info!(source, "target accepted from {source}: {summary}");
                        self.take_device_config(&t);
                        Ok(summary)
                    }
                    Err(e) => {
                        tracing::warn!(source, error = %e, "target rejected; the previous one stays in force");
                        Err(store_error(e))
                    }
                };
                let _ = reply.send(r);
            }
            Command::ReloadTarget => match self.target.reload_file() {
                Ok(Reloaded::Changed(t)) => {
                    tracing::info!(file = %self.target.file().display(),
                        "target file read: {}", target_summary(&t));
                    self.take_device_config(&t);
                }
                Ok(Reloaded::Unchanged) => {}
                Ok(Reloaded::Missing) => tracing::warn!(file = %self.target.file().display(),
                    "target file is gone; the target in force stays"),
                Err(e) => {
                    tracing::error!(error = %e, "target file rejected; the previous target stays in force")
                }
            },
            Command::ReloadDeviceConfig => self.load_device_config(false),
            Command::RequestReboot {
                not_after_usec,
                who,
                reply,
            } => {
                let p = PendingReboot {
                    not_after_usec,
                    who,
                    reason: "requested".into(),
                };
                let text = p.describe();
                tracing::info!(who = %p.who, not_after_usec, "{text}");
                self.pending_reboot.send_replace(Some(p));
                let _ = reply.send(text);
            }
            Command::CancelReboot { who, reply } => {
                let had = self.pending_reboot.send_replace(None).is_some();
                if had {
                    tracing::info!(who = %who, "pending reboot cancelled by {who}");
                }
                let _ = reply.send(had);
            }
            Command::Update { force, who, reply } => {
                let r = self
                    .updates
                    .try_send(UpdateRequest::Check { force, who })
                    .map_err(|_| CommandError::Failed("the updater is busy; try again".into()));
                let _ = reply.send(r);
            }
            Command::RestartApp {
                app,
                force,
                who,
                reply,
            } => {
                let sent = self.updates.try_send(UpdateRequest::Restart {
                    app,
                    force,
                    who,
                    reply,
                });
                if let Err(mpsc::error::TrySendError::Full(UpdateRequest::Restart {
                    reply, ..
                })) = sent
                {
                    let busy = "the updater is busy; try again".into();
                    let _ = reply.send(Err(RestartError::Failed(busy)));
                }
            }
            Command::Ping { reply } => {
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn prepare_power(
        &mut self,
        action: PowerAction,
        force: bool,
        who: &str,
    ) -> Result<Vec<ServiceId>, CommandError> {
        let locked: Vec<ServiceId> = self.table.held_by_apps().into_iter().cloned().collect();
        let force = force || self.lock_override.borrow().enabled;
        if !locked.is_empty() && !force {
            tracing::info!(who, "refused to {}: locked by {locked:?}", action.verb());
            return Err(CommandError::Locked(locked, action));
        }
        for app in self.table.apps() {
            if self.own.held_apps().any(|a| *a == app) {
                continue;
            }
            match self.own.take(&app, &[]) {
                Ok(_) => self.power_locks.push(app),
                // An app locked meanwhile: refused unless forced through.
                Err(OwnLockError::Contended { id, .. }) if !force => {
                    self.abort_power();
                    return Err(CommandError::Locked(vec![id], action));
                }
                Err(e) => {
                    tracing::warn!(app = %app, error = %e, "not locking {app} before {}", action.verb())
                }
            }
        }
        if force && !locked.is_empty() {
            tracing::warn!(who, forced = ?locked, "forced {} through update locks of {locked:?}", action.verb());
        }
        match self.boot.apply_staged() {
            Ok(true) => tracing::info!(file = %self.boot.config_txt.display(),
                "staged boot config written before the {}", action.verb()),
            Ok(false) => {}
            Err(e) => tracing::error!(file = %self.boot.config_txt.display(), error = %e,
                "cannot write the staged boot config; it stays staged"),
        }
        tracing::info!(
            who,
            force,
            "{} requested; releasing holdfast's inhibitor first",
            action.verb()
        );
        self.power_tx.send_replace(true);
        Ok(if force { locked } else { Vec::new() })
    }

    /// The target's device config: immediate keys now, boot keys staged
    /// with a reboot requested for when the locks allow it.
    pub fn take_device_config(&mut self, target: &crate::target::Target) {
        match self.boot.take(&target.config) {
            Ok(true) if self.pending_reboot.borrow().is_none() => {
                let p = PendingReboot {
                    not_after_usec: 0,
                    who: "holdfast".into(),
                    reason: "staged boot config".into(),
                };
                tracing::info!("{}", p.describe());
                self.pending_reboot.send_replace(Some(p));
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot stage device config"),
        }
    }

    /// Reads config.json. Bad JSON or a missing file keep the settings in
    /// force (at start: the override is off).
    pub fn load_device_config(&mut self, initial: bool) {
        let path = self.config_json.display().to_string();
        let text = match std::fs::read_to_string(&self.config_json) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if initial {
                    tracing::info!(file = %path, "no config.json: the lock override is off");
                } else {
                    tracing::warn!(file = %path, "config.json is gone; its last settings stay in force");
                }
                return;
            }
            Err(e) => {
                tracing::error!(file = %path, error = %e, "cannot read config.json; its last settings stay in force");
                return;
            }
        };
        let new = match devconfig::parse(&text, &path) {
            Ok(v) => devconfig::lock_override(&v),
            Err(e) => {
                tracing::error!(error = %e, "config.json rejected; its last settings stay in force: {e}");
                return;
            }
        };
        if let Some(err) = &new.error {
            tracing::error!(file = %path, "config.json: {err}");
        }
        self.set_override(new);
    }

    fn set_override(&mut self, new: Override) {
        let old = self.lock_override.borrow().clone();
        if old == new {
            return;
        }
        if new.enabled && !old.enabled {
            let present: Vec<ServiceId> = self.table.held_by_apps().into_iter().cloned().collect();
            tracing::warn!(message_id = msgid::OVERRIDE_ON, source = %new.source, locks = ?present,
                "update lock override turned on by {}: locks no longer hold back updates or reboots; deleting the locks present now",
                new.source);
            match breaker::remove_app_locks(&self.lock_root, &present) {
                Ok(done) => {
                    for b in done {
                        match b.result {
                            Ok(()) => tracing::warn!(service = %b.id, file = %b.name,
                                "deleted the update lock {}/{} (override); the app must take it again", b.id, b.name),
                            Err(e) => tracing::error!(service = %b.id, file = %b.name, error = %e,
                                "cannot delete the update lock {}/{}: {e}", b.id, b.name),
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot delete locks for the override"),
            }
        } else if !new.enabled && old.enabled {
            tracing::info!(
                message_id = msgid::OVERRIDE_OFF,
                "update lock override is off: locks are respected again"
            );
        }
        self.lock_override.send_replace(new);
    }

    fn abort_power(&mut self) {
        for app in std::mem::take(&mut self.power_locks) {
            let _ = self.own.release(&app);
        }
        self.power_tx.send_replace(false);
    }

    fn release_all(&mut self) {
        match self.own.release_all() {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "released holdfast's own locks before exit"),
            Err(e) => tracing::error!(error = %e, "cannot release own locks"),
        }
    }

    /// The table with holders read now, not as last seen.
    fn fresh_lock_infos(&self) -> Vec<LockInfo> {
        let keys: Vec<holders::FileKey> = self
            .table
            .locks()
            .flat_map(|(_, l)| l.entries.iter().map(|e| (e.dev, e.ino)))
            .collect();
        let found = holders::scan(&self.proc_root, &keys);
        self.table
            .locks()
            .map(|(id, l)| {
                let mut lock = l.clone();
                let mut hs: Vec<_> = l
                    .entries
                    .iter()
                    .filter_map(|e| found.get(&(e.dev, e.ino)))
                    .flatten()
                    .cloned()
                    .collect();
                hs.sort();
                hs.dedup_by(|a, b| a.pid == b.pid);
                lock.holders = Some(hs);
                LockInfo::new(id, &lock)
            })
            .collect()
    }
}

fn log_change(c: &Change, table: &LockTable) {
    match c {
        Change::Taken { id, owner } => {
            let kind = table
                .get(id)
                .map(|l| format!("{:?}", l.kind()).to_lowercase())
                .unwrap_or_default();
            tracing::info!(message_id = msgid::LOCK_TAKEN, service = %id, owner = ?owner, kind = %kind,
                "update lock taken: {id}");
        }
        Change::Released { id } => {
            tracing::info!(message_id = msgid::LOCK_RELEASED, service = %id, "update lock released: {id}");
        }
        // holdfast's own locks are never held open: no hint for them.
        Change::Stale { id } if table.get(id).is_some_and(|l| l.owner() == Owner::Holdfast) => {}
        Change::Stale { id } => {
            tracing::info!(message_id = msgid::LOCK_STALE, service = %id,
                "update lock {id} is held by no process (stale hint: it still counts as a lock)");
        }
    }
}

fn target_summary(t: &crate::target::Target) -> String {
    let apps: Vec<String> = t
        .apps
        .iter()
        .map(|(name, a)| {
            format!(
                "{name} release {} ({} services)",
                a.release,
                a.services.len()
            )
        })
        .collect();
    if apps.is_empty() {
        "no apps".into()
    } else {
        apps.join(", ")
    }
}

fn store_error(e: StoreError) -> CommandError {
    match e {
        StoreError::Invalid(e) => CommandError::InvalidTarget(e.to_string()),
        other => CommandError::Failed(other.to_string()),
    }
}
