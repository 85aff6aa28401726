//! The engine's side of the table: services whose containers mount another
//! directory than the watched one at `/tmp/balena` or `/tmp/resin`. Their
//! app may hold a lock there that no watch sees, so they count as locked
//! (kind `unknown`) until the containers are made again, or while holdfast
//! holds its own lock in those directories (then they bind like holdfast's
//! own locks: no more).

use std::collections::BTreeMap;

use super::{Change, LockTable, Misplaced, ServiceLock};
use crate::names::ServiceId;

impl LockTable {
    /// A complete listing of the misplaced services; true when the table
    /// changed.
    pub(super) fn mounts_listed(
        &mut self,
        now: BTreeMap<ServiceId, Misplaced>,
        changes: &mut Vec<Change>,
    ) -> bool {
        let first = self.mounts.is_none();
        let before = self.mounts.replace(now.clone()).unwrap_or_default();
        let mut mutated = first;
        for (id, m) in &now {
            let slot = self.services.entry(id.clone()).or_insert(None);
            match slot {
                None => {
                    *slot = ServiceLock::bare(Some(m.clone()));
                    if !m.held {
                        changes.push(Change::Misplaced {
                            id: id.clone(),
                            reason: m.reason.clone(),
                        });
                    }
                    mutated = true;
                }
                Some(lock) if lock.misplaced.as_ref() != Some(m) => {
                    let was_unseen = lock.unseen().is_some();
                    lock.misplaced = Some(m.clone());
                    if !m.held && !was_unseen {
                        changes.push(Change::Misplaced {
                            id: id.clone(),
                            reason: m.reason.clone(),
                        });
                    }
                    mutated = true;
                }
                Some(_) => {}
            }
        }
        for id in before.keys().filter(|id| !now.contains_key(*id)) {
            let Some(slot) = self.services.get_mut(id) else {
                continue;
            };
            let Some(lock) = slot.as_mut() else { continue };
            lock.misplaced = None;
            mutated = true;
            if lock.is_vacant() {
                *slot = None;
                changes.push(Change::Released { id: id.clone() });
            }
        }
        mutated
    }
}
