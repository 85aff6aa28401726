//! The lock table and its pure reducer. Filesystem observations come in as
//! [`LockEvent`]s; the reducer returns the [`Change`]s worth logging, and
//! subscribers (the logind inhibitor, later the update gate) read the table.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::names::{AppName, ServiceId};

/// File names that lock a service (both container paths are the same host
/// directory, so the legacy name sits beside the current one).
pub const LOCK_FILE_NAMES: [&str; 2] = ["updates.lock", "resin-updates.lock"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    /// Never followed; its existence alone is the lock.
    Symlink,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    App,
    Holdfast,
}

/// One existing lock path in a service directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockEntry {
    pub name: String,
    pub kind: EntryKind,
    pub uid: u32,
    /// Modification time in microseconds since the epoch: when an exclusive
    /// create made it.
    pub mtime_usec: u64,
    #[serde(skip)]
    pub dev: u64,
    #[serde(skip)]
    pub ino: u64,
    /// Content carries holdfast's own-lock tag.
    pub own_tag: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldKind {
    Open,
    Flock,
}

/// A process that has a lock file open or holds a `flock`/POSIX lock on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub how: HoldKind,
}

/// A locked service as the table reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceLock {
    pub entries: Vec<LockEntry>,
    /// `None` until a holder scan ran for this lock.
    pub holders: Option<Vec<Holder>>,
}

impl ServiceLock {
    pub fn owner(&self) -> Owner {
        if self.entries.iter().all(|e| e.own_tag) {
            Owner::Holdfast
        } else {
            Owner::App
        }
    }

    pub fn kind(&self) -> EntryKind {
        self.entries[0].kind
    }

    pub fn since_usec(&self) -> u64 {
        self.entries.iter().map(|e| e.mtime_usec).min().unwrap_or(0)
    }

    /// Nothing has it open or locked: typical of `flock(1)` leftovers and
    /// crashed apps, but also of create-and-close clients like `lockfile(1)`.
    pub fn stale(&self) -> bool {
        matches!(&self.holders, Some(h) if h.is_empty())
    }

    fn same_files(&self, entries: &[LockEntry]) -> bool {
        self.entries.len() == entries.len()
            && self
                .entries
                .iter()
                .zip(entries)
                .all(|(a, b)| a.name == b.name && a.dev == b.dev && a.ino == b.ino)
    }
}

/// Everything holdfast knows about the lock directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockTable {
    /// Every known service directory; `Some` when it is locked.
    services: BTreeMap<ServiceId, Option<ServiceLock>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockEvent {
    /// A service directory's lock paths as just read; empty means unlocked.
    ServiceObserved {
        id: ServiceId,
        entries: Vec<LockEntry>,
    },
    /// Holder scan result for a service's current lock files.
    HoldersObserved {
        id: ServiceId,
        holders: Vec<Holder>,
    },
    ServiceRemoved(ServiceId),
    AppRemoved(AppName),
    /// A full rescan: replaces the whole table (start-up, queue overflow,
    /// lock root recreated).
    Resync(Vec<(ServiceId, Vec<LockEntry>)>),
}

/// What changed, for logs and signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Taken { id: ServiceId, owner: Owner },
    Released { id: ServiceId },
    Stale { id: ServiceId },
}

impl LockTable {
    pub fn locks(&self) -> impl Iterator<Item = (&ServiceId, &ServiceLock)> {
        self.services
            .iter()
            .filter_map(|(id, l)| l.as_ref().map(|l| (id, l)))
    }

    pub fn locked_ids(&self) -> Vec<&ServiceId> {
        self.locks().map(|(id, _)| id).collect()
    }

    pub fn is_locked(&self) -> bool {
        self.locks().next().is_some()
    }

    pub fn lock_count(&self) -> usize {
        self.locks().count()
    }

    pub fn get(&self, id: &ServiceId) -> Option<&ServiceLock> {
        self.services.get(id).and_then(Option::as_ref)
    }

    /// Known service directories of one app, locked or not.
    pub fn services_of<'a>(&'a self, app: &'a AppName) -> impl Iterator<Item = &'a ServiceId> {
        self.services.keys().filter(move |id| &id.app == app)
    }

    /// Every app with a known service directory, locked or not.
    pub fn apps(&self) -> Vec<AppName> {
        let mut apps: Vec<AppName> = self.services.keys().map(|id| id.app.clone()).collect();
        apps.dedup();
        apps
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Services whose lock an app holds (not holdfast itself).
    pub fn held_by_apps(&self) -> Vec<&ServiceId> {
        self.locks()
            .filter(|(_, l)| l.owner() == Owner::App)
            .map(|(id, _)| id)
            .collect()
    }

    pub fn apply(&mut self, event: LockEvent) -> Vec<Change> {
        let mut changes = Vec::new();
        match event {
            LockEvent::ServiceObserved { id, entries } => {
                self.observe(id, entries, &mut changes);
            }
            LockEvent::HoldersObserved { id, holders } => {
                if let Some(Some(lock)) = self.services.get_mut(&id) {
                    let was_stale = lock.stale();
                    lock.holders = Some(holders);
                    if lock.stale() && !was_stale {
                        changes.push(Change::Stale { id });
                    }
                }
            }
            LockEvent::ServiceRemoved(id) => {
                if let Some(Some(_)) = self.services.remove(&id) {
                    changes.push(Change::Released { id });
                }
            }
            LockEvent::AppRemoved(app) => {
                let gone: Vec<ServiceId> = self.services_of(&app).cloned().collect();
                for id in gone {
                    if let Some(Some(_)) = self.services.remove(&id) {
                        changes.push(Change::Released { id });
                    }
                }
            }
            LockEvent::Resync(all) => {
                let seen: BTreeSet<ServiceId> = all.iter().map(|(id, _)| id.clone()).collect();
                let vanished: Vec<ServiceId> = self
                    .services
                    .keys()
                    .filter(|id| !seen.contains(*id))
                    .cloned()
                    .collect();
                for id in vanished {
                    if let Some(Some(_)) = self.services.remove(&id) {
                        changes.push(Change::Released { id });
                    }
                }
                for (id, entries) in all {
                    self.observe(id, entries, &mut changes);
                }
            }
        }
        changes
    }

    fn observe(&mut self, id: ServiceId, entries: Vec<LockEntry>, changes: &mut Vec<Change>) {
        let slot = self.services.entry(id.clone()).or_insert(None);
        match (slot.as_mut(), entries.is_empty()) {
            (None, true) => {}
            (Some(_), true) => {
                *slot = None;
                changes.push(Change::Released { id });
            }
            (Some(lock), false) if lock.same_files(&entries) => {
                lock.entries = entries;
            }
            (current, false) => {
                // New lock, or the files were replaced: holders are unknown again.
                let was_locked = current.is_some();
                let lock = ServiceLock {
                    entries,
                    holders: None,
                };
                if !was_locked {
                    changes.push(Change::Taken {
                        id,
                        owner: lock.owner(),
                    });
                }
                *slot = Some(lock);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ServiceId {
        ServiceId::parse(s).unwrap()
    }

    fn entry(name: &str, ino: u64, own: bool) -> LockEntry {
        LockEntry {
            name: name.into(),
            kind: EntryKind::File,
            uid: 0,
            mtime_usec: ino * 10,
            dev: 1,
            ino,
            own_tag: own,
        }
    }

    fn observed(s: &str, entries: Vec<LockEntry>) -> LockEvent {
        LockEvent::ServiceObserved { id: id(s), entries }
    }

    #[test]
    fn lock_taken_then_released() {
        let mut t = LockTable::default();
        assert!(t.apply(observed("a/main", vec![])).is_empty());
        assert!(!t.is_locked());
        let c = t.apply(observed("a/main", vec![entry("updates.lock", 5, false)]));
        assert_eq!(
            c,
            vec![Change::Taken {
                id: id("a/main"),
                owner: Owner::App
            }]
        );
        assert!(t.is_locked());
        assert_eq!(t.get(&id("a/main")).unwrap().since_usec(), 50);
        // Same file seen again: no change.
        assert!(t
            .apply(observed("a/main", vec![entry("updates.lock", 5, false)]))
            .is_empty());
        let c = t.apply(observed("a/main", vec![]));
        assert_eq!(c, vec![Change::Released { id: id("a/main") }]);
        assert!(!t.is_locked());
        assert_eq!(t.service_count(), 1, "the unlocked directory stays known");
    }

    #[test]
    fn own_locks_are_recognised_by_tag() {
        let mut t = LockTable::default();
        let c = t.apply(observed(
            "a/main",
            vec![
                entry("resin-updates.lock", 2, true),
                entry("updates.lock", 1, true),
            ],
        ));
        assert_eq!(
            c,
            vec![Change::Taken {
                id: id("a/main"),
                owner: Owner::Holdfast
            }]
        );
        // An app file beside an own file makes it an app lock.
        t.apply(observed(
            "a/w",
            vec![
                entry("resin-updates.lock", 3, true),
                entry("updates.lock", 4, false),
            ],
        ));
        assert_eq!(t.get(&id("a/w")).unwrap().owner(), Owner::App);
        assert_eq!(t.held_by_apps(), vec![&id("a/w")]);
    }

    #[test]
    fn stale_when_holders_vanish() {
        let mut t = LockTable::default();
        t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
        assert!(
            !t.get(&id("a/main")).unwrap().stale(),
            "unknown is not stale"
        );
        let holder = Holder {
            pid: 10,
            comm: "flock".into(),
            how: HoldKind::Flock,
        };
        let c = t.apply(LockEvent::HoldersObserved {
            id: id("a/main"),
            holders: vec![holder],
        });
        assert!(c.is_empty());
        let c = t.apply(LockEvent::HoldersObserved {
            id: id("a/main"),
            holders: vec![],
        });
        assert_eq!(c, vec![Change::Stale { id: id("a/main") }]);
        assert!(t.get(&id("a/main")).unwrap().stale());
        // Reported once.
        let c = t.apply(LockEvent::HoldersObserved {
            id: id("a/main"),
            holders: vec![],
        });
        assert!(c.is_empty());
        // Stale locks still count.
        assert!(t.is_locked());
    }

    #[test]
    fn replaced_file_resets_holders_without_a_new_taken() {
        let mut t = LockTable::default();
        t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
        t.apply(LockEvent::HoldersObserved {
            id: id("a/main"),
            holders: vec![],
        });
        let c = t.apply(observed("a/main", vec![entry("updates.lock", 2, false)]));
        assert!(c.is_empty());
        assert_eq!(t.get(&id("a/main")).unwrap().holders, None);
    }

    #[test]
    fn removing_dirs_releases_their_locks() {
        let mut t = LockTable::default();
        t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
        t.apply(observed("a/w", vec![entry("updates.lock", 2, false)]));
        t.apply(observed("b/x", vec![entry("updates.lock", 3, false)]));
        let c = t.apply(LockEvent::ServiceRemoved(id("b/x")));
        assert_eq!(c, vec![Change::Released { id: id("b/x") }]);
        let c = t.apply(LockEvent::AppRemoved(AppName::new("a").unwrap()));
        assert_eq!(c.len(), 2);
        assert_eq!(t.service_count(), 0);
    }

    #[test]
    fn resync_replaces_everything() {
        let mut t = LockTable::default();
        t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
        t.apply(observed("a/w", vec![]));
        let c = t.apply(LockEvent::Resync(vec![
            (id("a/w"), vec![entry("updates.lock", 2, false)]),
            (id("c/z"), vec![]),
        ]));
        assert_eq!(
            c,
            vec![
                Change::Released { id: id("a/main") },
                Change::Taken {
                    id: id("a/w"),
                    owner: Owner::App
                }
            ]
        );
        assert_eq!(t.service_count(), 2);
        assert_eq!(t.locked_ids(), vec![&id("a/w")]);
    }
}
