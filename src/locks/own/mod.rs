//! holdfast taking an app's locks itself, as the supervisor apps already
//! write against does before it touches a service: every lock of the app,
//! exclusive create, uid 65534, all-or-nothing.
//!
//! Own locks are recorded durably under the state directory *before* the
//! files are created and carry a random token in their content, so after a
//! crash holdfast removes exactly its own leftovers, even when an app also
//! runs as uid 65534; only a recorded token makes a file holdfast's. While
//! holdfast owns a lock file it also holds a `flock` on it, so `flock(1)`
//! (which apps may use) fails against it too; a leftover of a previous run
//! is flocked before it is removed, and one an app has flocked meanwhile is
//! that app's lock now and stays. A file that cannot be
//! removed stays held and recorded, and its removal is retried: the record
//! never forgets a file that is still there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use super::fs::{open_root, FsError};
use super::state::FileKey;
use crate::fsutil::atomic_write;
use crate::names::{AppName, ServiceId};

const RECORD_FILE: &str = "own-locks.json";

/// Why holdfast holds an app's locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// `holdfast take` / D-Bus TakeLocks: until the operator releases them.
    Operator,
    /// An update or restart of the app under way.
    Update,
    /// A reboot or power-off under way.
    Power,
    /// Left over from a previous run and not removable yet.
    Leftover,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnLockError {
    #[error("{id} is locked ({file} exists); no lock of app {} was taken", id.app)]
    Contended { id: ServiceId, file: String },
    #[error("app {0} has no service directories to lock")]
    NoServices(AppName),
    #[error("holdfast already holds the locks of app {app} ({purpose:?})")]
    AlreadyHeld { app: AppName, purpose: Purpose },
    #[error("app {0} is being updated")]
    Updating(AppName),
    #[error("holdfast holds no locks of app {0}")]
    NotHeld(AppName),
    #[error("cannot remove holdfast's own locks of app {app}: {}; they stay recorded and are retried", failures.join(", "))]
    Release { app: AppName, failures: Vec<String> },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("cannot record own locks in {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the own-lock record {path} is damaged ({reason}); no leftover is removed: fix or remove it")]
    RecordDamaged { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordEntry {
    service: ServiceId,
    file: String,
    token: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    locks: Vec<RecordEntry>,
}

/// One own lock file: created by us, `flock`ed while we hold it.
#[derive(Debug)]
struct Held {
    entry: RecordEntry,
    dev: u64,
    ino: u64,
    /// `None` only for a leftover of a previous run that could not be
    /// opened yet; it is flocked before it is removed.
    flock: Option<Flock<File>>,
}

#[derive(Debug)]
struct HeldApp {
    purpose: Purpose,
    files: Vec<Held>,
    /// A release was asked and failed: retry it, never hand these out.
    releasing: bool,
}

/// What the start-up cleanup did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub removed: Vec<String>,
    /// Recorded paths now held by someone else: left alone.
    pub kept: Vec<String>,
    /// Ours, but removing them failed: still recorded, retried.
    pub failed: Vec<String>,
}

pub struct OwnLocks {
    root_path: PathBuf,
    record_path: PathBuf,
    held: BTreeMap<AppName, HeldApp>,
    /// Files removed since the keeper last asked: the table drops them
    /// before it hears the shorter token list, so they never read as an
    /// app's lock in between.
    gone: Vec<(ServiceId, FileKey)>,
}

impl OwnLocks {
    pub fn new(root_path: &Path, state_dir: &Path) -> Self {
        Self {
            root_path: root_path.to_owned(),
            record_path: state_dir.join(RECORD_FILE),
            held: BTreeMap::new(),
            gone: Vec::new(),
        }
    }

    /// The files removed since the last call.
    pub fn take_gone(&mut self) -> Vec<(ServiceId, FileKey)> {
        std::mem::take(&mut self.gone)
    }

    pub fn held_apps(&self) -> impl Iterator<Item = &AppName> {
        self.held.keys()
    }

    /// Whose a held app's locks are.
    pub fn purpose(&self, app: &AppName) -> Option<Purpose> {
        self.held.get(app).map(|h| h.purpose)
    }

    /// Apps whose release failed and is to be retried.
    pub fn releasing(&self) -> Vec<AppName> {
        self.held
            .iter()
            .filter(|(_, h)| h.releasing)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Every token recorded for a file that may still exist: the only
    /// tokens that make a lock file holdfast's.
    pub fn tokens(&self) -> BTreeSet<String> {
        self.held
            .values()
            .flat_map(|h| h.files.iter().map(|f| f.entry.token.clone()))
            .collect()
    }

    /// Removes holdfast's own locks of `app` (app locks are never touched).
    /// Files that cannot be removed stay held and recorded, the release is
    /// retried later, and the error names them.
    pub fn release(&mut self, app: &AppName) -> Result<usize, OwnLockError> {
        let Some(mut h) = self.held.remove(app) else {
            return Err(OwnLockError::NotHeld(app.clone()));
        };
        let root = match open_root(&self.root_path) {
            Ok(r) => r,
            Err(e) => {
                h.releasing = true;
                self.held.insert(app.clone(), h);
                return Err(e.into());
            }
        };
        let mut failures = Vec::new();
        let mut kept = Vec::new();
        let mut removed = 0;
        for mut f in h.files {
            match remove_held(root.as_fd(), &self.root_path, &mut f) {
                Ok(true) => {
                    removed += 1;
                    self.gone.push((f.entry.service.clone(), (f.dev, f.ino)));
                }
                Ok(false) => {}
                Err(e) => {
                    failures.push(format!("{}/{}: {e}", f.entry.service, f.entry.file));
                    kept.push(f);
                }
            }
        }
        if !kept.is_empty() {
            self.held.insert(
                app.clone(),
                HeldApp {
                    purpose: h.purpose,
                    files: kept,
                    releasing: true,
                },
            );
        }
        self.write_record(&[])?;
        if failures.is_empty() {
            Ok(removed)
        } else {
            Err(OwnLockError::Release {
                app: app.clone(),
                failures,
            })
        }
    }

    /// Releases every app held for `purpose` (all apps when `None`).
    pub fn release_all(&mut self, purpose: Option<Purpose>) -> Result<usize, OwnLockError> {
        let apps: Vec<AppName> = self
            .held
            .iter()
            .filter(|(_, h)| purpose.is_none_or(|p| h.purpose == p))
            .map(|(a, _)| a.clone())
            .collect();
        let mut n = 0;
        let mut first_err = None;
        for app in apps {
            match self.release(&app) {
                Ok(k) => n += k,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Persists every held lock plus `pending` (locks about to be created).
    fn write_record(&self, pending: &[RecordEntry]) -> Result<(), OwnLockError> {
        let mut locks: Vec<RecordEntry> = self
            .held
            .values()
            .flat_map(|h| h.files.iter().map(|f| f.entry.clone()))
            .collect();
        locks.extend_from_slice(pending);
        let bytes = serde_json::to_vec_pretty(&Record { locks }).expect("record serializes");
        atomic_write(&self.record_path, &bytes).map_err(|source| OwnLockError::Record {
            path: self.record_path.clone(),
            source,
        })
    }
}

pub(crate) mod files;
mod leftovers;
mod take;

use files::remove_held;
#[cfg(test)]
mod tests;
