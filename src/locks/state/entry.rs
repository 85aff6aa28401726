//! What the table holds per service: the lock paths as read, their
//! holders, and why the lock binds unseen (a directory that could not be
//! read, a container whose lock mount is another directory).

use serde::Serialize;

/// File names that lock a service (both container paths are the same host
/// directory, so the legacy name sits beside the current one).
pub const LOCK_FILE_NAMES: [&str; 2] = ["updates.lock", "resin-updates.lock"];

/// Identity of a file: (device, inode).
pub type FileKey = (u64, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    /// Never followed; its existence alone is the lock.
    Symlink,
    Other,
    /// The service directory could not be read, or a container sees
    /// another directory.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    App,
    Holdfast,
}

/// One existing lock path in a service directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    pub name: String,
    pub kind: EntryKind,
    pub uid: u32,
    /// Modification time in microseconds since the epoch: when an exclusive
    /// create made it.
    pub mtime_usec: u64,
    pub dev: u64,
    pub ino: u64,
    /// The token of holdfast's own-lock tag in its content, if it has one.
    pub token: Option<String>,
    /// The token is one holdfast recorded (set by the table, not the reader:
    /// a tag alone proves nothing).
    pub own: bool,
}

#[cfg(test)]
impl LockEntry {
    /// An `updates.lock` file for tests: identity `(0, ino)`, an own-lock
    /// tag when `token` is given.
    pub fn test_file(ino: u64, token: Option<&str>) -> Self {
        LockEntry {
            name: "updates.lock".into(),
            kind: EntryKind::File,
            uid: 0,
            mtime_usec: 0,
            dev: 0,
            ino,
            token: token.map(str::to_owned),
            own: false,
        }
    }
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

/// A container whose lock mount (`/tmp/balena`, `/tmp/resin`) is not the
/// directory holdfast watches for its service: its app may hold a lock
/// holdfast cannot see (a lock root changed under running containers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    /// Which container mounts which directory, and what to do.
    pub reason: String,
    /// holdfast holds its own lock in every directory those containers
    /// see: their app cannot take its lock meanwhile, so it binds no more
    /// than holdfast's own locks do (the container is being made again).
    pub held: bool,
}

/// A locked service as the table reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLock {
    /// The lock paths as last read (empty when never read).
    pub entries: Vec<LockEntry>,
    /// `None` until a holder scan ran for these files.
    pub holders: Option<Vec<Holder>>,
    /// Why the directory could not be read the last time we looked; the
    /// lock binds until a read succeeds.
    pub unknown: Option<String>,
    /// A container of this service mounts another directory than the
    /// watched one: it binds until the container is made again.
    pub misplaced: Option<Misplaced>,
}

impl ServiceLock {
    /// A lock with nothing read: only a misplaced mount keeps it.
    pub fn bare(misplaced: Option<Misplaced>) -> Option<Self> {
        misplaced.map(|m| Self {
            entries: Vec::new(),
            holders: None,
            unknown: None,
            misplaced: Some(m),
        })
    }

    /// Nothing left that locks: no entry, nothing unseen.
    pub fn is_vacant(&self) -> bool {
        self.entries.is_empty() && self.unknown.is_none() && self.misplaced.is_none()
    }

    /// Why it binds without being seen: the directory could not be read,
    /// or a container sees another directory (and holdfast does not hold
    /// the lock there).
    pub fn unseen(&self) -> Option<&str> {
        self.unknown.as_deref().or(self
            .misplaced
            .as_ref()
            .filter(|m| !m.held)
            .map(|m| m.reason.as_str()))
    }

    pub fn owner(&self) -> Owner {
        let mounts_own = self.misplaced.as_ref().is_none_or(|m| m.held);
        let files_own = self.entries.iter().all(|e| e.own);
        let anything = !self.entries.is_empty() || self.misplaced.is_some();
        if mounts_own && files_own && anything {
            Owner::Holdfast
        } else {
            Owner::App
        }
    }

    pub fn kind(&self) -> EntryKind {
        match (self.unseen(), self.entries.first()) {
            (None, Some(e)) => e.kind,
            // holdfast's own file in the directory the container sees.
            (None, None) if self.misplaced.is_some() => EntryKind::File,
            _ => EntryKind::Unknown,
        }
    }

    pub fn since_usec(&self) -> u64 {
        self.entries.iter().map(|e| e.mtime_usec).min().unwrap_or(0)
    }

    /// Nothing has it open or locked: typical of `flock(1)` leftovers and
    /// crashed apps, but also of create-and-close clients like `lockfile(1)`.
    pub fn stale(&self) -> bool {
        self.unknown.is_none()
            && self.misplaced.is_none()
            && matches!(&self.holders, Some(h) if h.is_empty())
    }

    pub fn keys(&self) -> Vec<FileKey> {
        self.entries.iter().map(|e| (e.dev, e.ino)).collect()
    }

    pub(super) fn same_files(&self, entries: &[LockEntry]) -> bool {
        self.entries.len() == entries.len()
            && self
                .entries
                .iter()
                .zip(entries)
                .all(|(a, b)| a.name == b.name && a.dev == b.dev && a.ino == b.ino)
    }
}
