//! The core: the only writer of the [`Snapshot`]. It reduces lock events
//! into the table, keeps the lock override, the pending reboot, the
//! maintenance window and the powering flag, and publishes them as one
//! value. It never blocks: no file I/O, no /proc walks, no waiting on
//! other tasks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::command::{Command, LockInfo};
use crate::devconfig::Override;
use crate::liveness::Beat;
use crate::locks::breaker;
use crate::locks::state::{Change, LockEvent, Owner};
use crate::locks::LockTable;
use crate::logging::msgid;
use crate::model::{PendingReboot, Snapshot};
use crate::names::ServiceId;

pub struct Core {
    table: LockTable,
    snapshot: watch::Sender<Snapshot>,
    lock_root: PathBuf,
    beat: Beat,
}

impl Core {
    pub fn new(snapshot: watch::Sender<Snapshot>, lock_root: PathBuf, beat: Beat) -> Self {
        Self {
            table: LockTable::default(),
            snapshot,
            lock_root,
            beat,
        }
    }

    /// Reduces what is queued already (the initial scan, the own-lock
    /// tokens) before the daemon says it is ready.
    pub fn prime(&mut self, events: &mut mpsc::Receiver<LockEvent>) {
        while let Ok(ev) = events.try_recv() {
            self.reduce(ev);
        }
        let table = Arc::new(self.table.clone());
        self.snapshot.send_modify(|s| s.table = table);
    }

    /// Runs until both inputs close.
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
                        let generation = self.table.generation();
                        self.reduce(ev);
                        while let Ok(ev) = events.try_recv() {
                            self.reduce(ev);
                        }
                        if self.table.generation() != generation {
                            let table = Arc::new(self.table.clone());
                            self.snapshot.send_modify(|s| s.table = table);
                        }
                    }
                    None => {
                        tracing::error!("lock watcher stopped");
                        return;
                    }
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                g = self.beat.asked() => self.beat.answer(g),
            }
        }
    }

    fn reduce(&mut self, ev: LockEvent) {
        for c in self.table.apply(ev) {
            log_change(&c, &self.table);
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::RequestReboot {
                not_after_usec,
                who,
                reason,
                reply,
            } => {
                let p = PendingReboot {
                    not_after_usec,
                    who,
                    reason,
                };
                let text = p.describe();
                tracing::info!(who = %p.who, not_after_usec, "{text}");
                self.snapshot.send_modify(|s| s.pending_reboot = Some(p));
                let _ = reply.send(text);
            }
            Command::CancelReboot { who, reply } => {
                let mut had = false;
                self.snapshot.send_if_modified(|s| {
                    had = s.pending_reboot.take().is_some();
                    had
                });
                if had {
                    tracing::info!(who = %who, "pending reboot cancelled by {who}");
                }
                let _ = reply.send(had);
            }
            Command::SetPowering { on, reply } => {
                self.snapshot.send_if_modified(|s| {
                    let changed = s.powering != on;
                    s.powering = on;
                    changed
                });
                let _ = reply.send(());
            }
            Command::SetOverride(new) => self.set_override(new),
            Command::SetWindow(closed) => {
                self.snapshot.send_if_modified(|s| {
                    let changed = s.window_closed != closed;
                    s.window_closed = closed;
                    changed
                });
            }
            Command::Ping { reply } => {
                let _ = reply.send(());
            }
            Command::ListLocks { reply } => {
                let _ = reply.send(LockInfo::from_table(&self.table));
            }
            other => {
                tracing::error!(command = ?other, "command sent to the core by mistake; dropped")
            }
        }
    }

    fn set_override(&mut self, new: Override) {
        let old = self.snapshot.borrow().lock_override.clone();
        if old == new {
            return;
        }
        if new.enabled && !old.enabled {
            let present: Vec<ServiceId> = self
                .table
                .held_by_apps()
                .into_iter()
                .filter(|id| self.table.get(id).is_some_and(|l| l.unknown.is_none()))
                .cloned()
                .collect();
            tracing::warn!(message_id = msgid::OVERRIDE_ON, source = %new.source, locks = ?present,
                "update lock override turned on by {}: locks no longer hold back updates or reboots; deleting the locks present now",
                new.source);
            break_locks(
                self.lock_root.clone(),
                present,
                self.table.own_tokens().clone(),
            );
        } else if !new.enabled && old.enabled {
            tracing::info!(
                message_id = msgid::OVERRIDE_OFF,
                "update lock override is off: locks are respected again"
            );
        }
        self.snapshot.send_modify(|s| s.lock_override = new);
    }
}

/// The override's one-time effect, on the blocking pool: the deletions
/// come back as lock events like any other change.
fn break_locks(lock_root: PathBuf, ids: Vec<ServiceId>, own: BTreeSet<String>) {
    if ids.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(
        move || match breaker::remove_app_locks(&lock_root, &ids, &own) {
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
        },
    );
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
        Change::Unknown { id, reason } => {
            tracing::warn!(message_id = msgid::LOCK_UNKNOWN, service = %id, reason = %reason,
                "cannot read the lock directory of {id} ({reason}); it counts as locked until it can be read");
        }
        Change::Misplaced { id, reason } => {
            tracing::warn!(message_id = msgid::LOCK_UNKNOWN, service = %id, reason = %reason,
                "{reason}; {id} counts as locked until its container is made again");
        }
        Change::Blind { reason } => {
            tracing::error!(message_id = msgid::LOCK_UNKNOWN, reason = %reason,
                "cannot watch the lock root ({reason}); every app counts as locked until it can");
        }
        Change::Sighted => tracing::info!("the lock root is watched and read again"),
    }
}
