//! The lock table and its pure reducer. Filesystem observations come in as
//! [`LockEvent`]s; the reducer returns the [`Change`]s worth logging, and
//! the core publishes the table in its snapshot.
//!
//! "Could not look" is never "absent": a service whose lock paths cannot be
//! read stays (or becomes) locked with an `unknown` reason, and a lock root
//! that cannot be watched makes the whole table `blind`; both bind until a
//! later read succeeds. Nor is a directory holdfast does not watch
//! "unlocked": a service whose container mounts another directory than the
//! watched one is `misplaced` (kind `unknown`) until the container is made
//! again (`mounts`).

use std::collections::{BTreeMap, BTreeSet};

use crate::names::{AppName, ServiceId};

mod entry;
mod mounts;

pub use entry::{
    EntryKind, FileKey, HoldKind, Holder, LockEntry, Misplaced, Owner, ServiceLock, LOCK_FILE_NAMES,
};

/// Everything holdfast knows about the lock directories.
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    /// Every known service directory; `Some` when it is locked.
    services: BTreeMap<ServiceId, Option<ServiceLock>>,
    /// Tokens of holdfast's own locks, as recorded before their creation.
    own_tokens: BTreeSet<String>,
    /// Why the lock root cannot be watched right now.
    blind: Option<String>,
    /// Services whose containers mount another directory than the watched
    /// one, as the engine last listed them; `None` before the first listing.
    mounts: Option<BTreeMap<ServiceId, Misplaced>>,
    /// Bumped by every mutation: readers tell "changed" without comparing.
    generation: u64,
}

impl PartialEq for LockTable {
    fn eq(&self, other: &Self) -> bool {
        self.services == other.services
            && self.own_tokens == other.own_tokens
            && self.blind == other.blind
            && self.mounts == other.mounts
    }
}

impl Eq for LockTable {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockEvent {
    /// A service directory's lock paths as just read; empty means unlocked.
    ServiceObserved {
        id: ServiceId,
        entries: Vec<LockEntry>,
    },
    /// A service directory (or the lock root on the way to it) could not be
    /// read: whatever it held, it now binds as unknown.
    ServiceUnreadable {
        id: ServiceId,
        reason: String,
    },
    /// Holder scan result for the files with these keys.
    HoldersObserved {
        id: ServiceId,
        keys: Vec<FileKey>,
        holders: Vec<Holder>,
    },
    ServiceRemoved(ServiceId),
    AppRemoved(AppName),
    /// A complete rescan: replaces the whole table and clears `blind` and
    /// every `unknown` (start-up, queue overflow, lock root recreated,
    /// recovery after an error).
    Resync(Vec<(ServiceId, Vec<LockEntry>)>),
    /// The lock root cannot be watched or read: nothing is forgotten, and
    /// everything binds until a `Resync`.
    Blind(String),
    /// The tokens holdfast recorded for its own locks (sent before the
    /// files are created, so their events are classified right).
    OwnTokens(BTreeSet<String>),
    /// Every service whose containers mount another directory than the
    /// watched one, as the engine lists them now (complete: a service not
    /// in it is placed right).
    Mounts(BTreeMap<ServiceId, Misplaced>),
    /// holdfast removed these own lock files (sent before the shorter
    /// token list, so they never read as an app's lock in between).
    OwnRemoved(Vec<(ServiceId, FileKey)>),
}

/// What changed, for logs and signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Taken {
        id: ServiceId,
        owner: Owner,
    },
    Released {
        id: ServiceId,
    },
    Stale {
        id: ServiceId,
    },
    Unknown {
        id: ServiceId,
        reason: String,
    },
    /// A container of the service mounts another directory (not held).
    Misplaced {
        id: ServiceId,
        reason: String,
    },
    Blind {
        reason: String,
    },
    Sighted,
}

impl LockTable {
    pub fn locks(&self) -> impl Iterator<Item = (&ServiceId, &ServiceLock)> {
        self.services
            .iter()
            .filter_map(|(id, l)| l.as_ref().map(|l| (id, l)))
    }

    /// Every locked service: by an app, by holdfast, or unknown.
    pub fn locked_ids(&self) -> Vec<&ServiceId> {
        self.locks().map(|(id, _)| id).collect()
    }

    /// Anything that keeps the inhibitor: a lock, or not being able to see.
    pub fn is_locked(&self) -> bool {
        self.blind.is_some() || self.locks().next().is_some()
    }

    pub fn lock_count(&self) -> usize {
        self.locks().count()
    }

    pub fn get(&self, id: &ServiceId) -> Option<&ServiceLock> {
        self.services.get(id).and_then(Option::as_ref)
    }

    /// Why the lock root cannot be watched, while it cannot.
    pub fn blind(&self) -> Option<&str> {
        self.blind.as_deref()
    }

    /// The tokens recorded for holdfast's own locks.
    pub fn own_tokens(&self) -> &BTreeSet<String> {
        &self.own_tokens
    }

    pub fn generation(&self) -> u64 {
        self.generation
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

    /// Services whose lock an app holds (not holdfast itself), the ones that
    /// could not be read included.
    pub fn held_by_apps(&self) -> Vec<&ServiceId> {
        self.locks()
            .filter(|(_, l)| l.owner() == Owner::App)
            .map(|(id, _)| id)
            .collect()
    }

    /// Services that bind unseen, with the reason: their directory could
    /// not be read, or a container of theirs mounts another directory.
    pub fn unknown(&self) -> impl Iterator<Item = (&ServiceId, &str)> {
        self.locks()
            .filter_map(|(id, l)| l.unseen().map(|r| (id, r)))
    }

    /// Whether the engine's containers were listed at all: until then a
    /// container with a misplaced lock mount may exist unseen.
    pub fn mounts_known(&self) -> bool {
        self.mounts.is_some()
    }

    /// The misplaced mount of a service, held or not.
    pub fn misplaced(&self, id: &ServiceId) -> Option<&Misplaced> {
        self.mounts.as_ref()?.get(id)
    }

    pub fn apply(&mut self, event: LockEvent) -> Vec<Change> {
        let mut changes = Vec::new();
        let mutated = self.reduce(event, &mut changes);
        if mutated {
            self.generation += 1;
        }
        changes
    }

    /// Applies one event; true when the table changed.
    fn reduce(&mut self, event: LockEvent, changes: &mut Vec<Change>) -> bool {
        match event {
            LockEvent::ServiceObserved { id, entries } => self.observe(id, entries, changes),
            LockEvent::ServiceUnreadable { id, reason } => {
                let misplaced = self.misplaced(&id).cloned();
                let slot = self.services.entry(id.clone()).or_insert(None);
                let lock = slot.get_or_insert_with(|| ServiceLock {
                    entries: Vec::new(),
                    holders: None,
                    unknown: None,
                    misplaced,
                });
                if lock.unknown.as_ref() == Some(&reason) {
                    return false;
                }
                if lock.unknown.is_none() {
                    changes.push(Change::Unknown {
                        id,
                        reason: reason.clone(),
                    });
                }
                lock.unknown = Some(reason);
                true
            }
            LockEvent::HoldersObserved { id, keys, holders } => {
                let Some(Some(lock)) = self.services.get_mut(&id) else {
                    return false;
                };
                // A scan of files that have since been replaced says nothing.
                if lock.keys() != keys || lock.holders.as_ref() == Some(&holders) {
                    return false;
                }
                let was_stale = lock.stale();
                lock.holders = Some(holders);
                if lock.stale() && !was_stale {
                    changes.push(Change::Stale { id });
                }
                true
            }
            LockEvent::ServiceRemoved(id) => match self.services.contains_key(&id) {
                true => {
                    self.vacate(id, changes);
                    true
                }
                false => false,
            },
            LockEvent::AppRemoved(app) => {
                let gone: Vec<ServiceId> = self.services_of(&app).cloned().collect();
                let mutated = !gone.is_empty();
                for id in gone {
                    self.vacate(id, changes);
                }
                mutated
            }
            LockEvent::Resync(all) => {
                let before = (self.services.clone(), self.blind.take());
                if before.1.is_some() {
                    changes.push(Change::Sighted);
                }
                let seen: BTreeSet<ServiceId> = all.iter().map(|(id, _)| id.clone()).collect();
                let vanished: Vec<ServiceId> = self
                    .services
                    .keys()
                    .filter(|id| !seen.contains(*id))
                    .cloned()
                    .collect();
                for id in vanished {
                    self.vacate(id, changes);
                }
                for (id, entries) in all {
                    self.observe(id, entries, changes);
                }
                self.services != before.0 || before.1.is_some()
            }
            LockEvent::Blind(reason) => {
                if self.blind.as_ref() == Some(&reason) {
                    return false;
                }
                if self.blind.is_none() {
                    changes.push(Change::Blind {
                        reason: reason.clone(),
                    });
                }
                self.blind = Some(reason);
                true
            }
            LockEvent::OwnRemoved(gone) => {
                let mut mutated = false;
                for (id, key) in gone {
                    let Some(slot) = self.services.get_mut(&id) else {
                        continue;
                    };
                    let Some(lock) = slot.as_mut() else { continue };
                    let before = lock.entries.len();
                    lock.entries.retain(|e| (e.dev, e.ino) != key);
                    if lock.entries.len() == before {
                        continue;
                    }
                    mutated = true;
                    if lock.is_vacant() {
                        *slot = None;
                        changes.push(Change::Released { id });
                    }
                }
                mutated
            }
            LockEvent::OwnTokens(tokens) => {
                if tokens == self.own_tokens {
                    return false;
                }
                self.own_tokens = tokens;
                for lock in self.services.values_mut().flatten() {
                    for e in &mut lock.entries {
                        e.own = is_own(&self.own_tokens, e);
                    }
                }
                true
            }
            LockEvent::Mounts(now) => self.mounts_listed(now, changes),
        }
    }

    /// The watched directory of `id` is gone: what it showed goes, and
    /// the service is forgotten unless a container still mounts another
    /// directory for it (then that binds on).
    fn vacate(&mut self, id: ServiceId, changes: &mut Vec<Change>) {
        let bare = ServiceLock::bare(self.misplaced(&id).cloned());
        let was = self.services.remove(&id);
        match bare {
            Some(b) => {
                self.services.insert(id, Some(b));
            }
            None if matches!(was, Some(Some(_))) => changes.push(Change::Released { id }),
            None => {}
        }
    }

    /// Returns whether the table changed.
    fn observe(
        &mut self,
        id: ServiceId,
        mut entries: Vec<LockEntry>,
        changes: &mut Vec<Change>,
    ) -> bool {
        for e in &mut entries {
            e.own = is_own(&self.own_tokens, e);
        }
        let known = self.services.contains_key(&id);
        let misplaced = self.misplaced(&id).cloned();
        let slot = self.services.entry(id.clone()).or_insert(None);
        match (slot.as_mut(), entries.is_empty()) {
            (None, true) => !known,
            (Some(lock), true) if lock.misplaced.is_some() => {
                // Read fine and empty: only the misplaced mount binds.
                let changed = !lock.entries.is_empty() || lock.unknown.is_some();
                lock.entries.clear();
                lock.holders = None;
                lock.unknown = None;
                changed
            }
            (Some(_), true) => {
                *slot = None;
                changes.push(Change::Released { id });
                true
            }
            (Some(lock), false) if lock.same_files(&entries) => {
                let changed = lock.entries != entries || lock.unknown.is_some();
                lock.entries = entries;
                lock.unknown = None;
                changed
            }
            (current, false) => {
                // New lock, or the files were replaced: holders are unknown again.
                let was_locked = current.is_some();
                let lock = ServiceLock {
                    entries,
                    holders: None,
                    unknown: None,
                    misplaced,
                };
                if !was_locked {
                    changes.push(Change::Taken {
                        id,
                        owner: lock.owner(),
                    });
                }
                *slot = Some(lock);
                true
            }
        }
    }
}

fn is_own(tokens: &BTreeSet<String>, e: &LockEntry) -> bool {
    e.kind == EntryKind::File && e.token.as_ref().is_some_and(|t| tokens.contains(t))
}

#[cfg(test)]
mod tests;
