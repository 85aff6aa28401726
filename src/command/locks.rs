//! The lock table as the adapters report it: each held lock with its
//! holders, read fresh from /proc.

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

use crate::locks::holders;
use crate::locks::state::{LockTable, ServiceLock};
use crate::names::ServiceId;

/// One held lock as reported on D-Bus and by `holdfast locks --json`.
/// D-Bus signature `(ssstba(uss))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct LockInfo {
    /// `app/service`
    pub service: String,
    /// `app` or `holdfast`
    pub owner: String,
    /// `file`, `dir`, `symlink`, `other`, or `unknown` when the directory
    /// could not be read (the lock binds until it can)
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

/// The table with holders read now, not as last seen.
pub(super) fn fresh_lock_infos(table: &LockTable, proc_root: &std::path::Path) -> Vec<LockInfo> {
    let keys: Vec<holders::FileKey> = table.locks().flat_map(|(_, l)| l.keys()).collect();
    let found = holders::scan(proc_root, &keys);
    table
        .locks()
        .map(|(id, l)| {
            let mut lock = l.clone();
            if l.unknown.is_none() {
                lock.holders = Some(holders::holders_of(&found, &l.keys()));
            }
            LockInfo::new(id, &lock)
        })
        .collect()
}
