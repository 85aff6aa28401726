//! holdfast's own locks in the directories containers see instead of the
//! watched ones (a lock root changed under them): taken as the keeper takes
//! an app's locks (exclusive, no-follow create, tagged, `flock`ed, uid
//! 65534, all-or-nothing), recorded durably before the files exist
//! (`<state_dir>/mount-locks.json`), so a crash leaves files that the next
//! start recognises by their token and removes. Blocking: run it on the
//! blocking pool.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde::{Deserialize, Serialize};

use crate::fsutil::{atomic_write, random_token};
use crate::locks::fs::{file_key, read_own_tag, DIR_FLAGS};
use crate::locks::own::files::{create_own_lock, flock_existing};
use crate::locks::state::{FileKey, LOCK_FILE_NAMES};
use crate::names::AppName;

const RECORD_FILE: &str = "mount-locks.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    app: AppName,
    dir: PathBuf,
    file: String,
    token: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    locks: Vec<Entry>,
}

#[derive(Debug)]
struct Held {
    entry: Entry,
    key: FileKey,
    /// Kept for as long as we hold it: `flock(1)` fails against it too.
    _flock: Flock<File>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    /// Someone (the app) holds it there: nothing was taken.
    #[error("{0} exists")]
    Held(String),
    #[error("{0}")]
    Failed(String),
}

pub struct OldLocks {
    record_path: PathBuf,
    held: BTreeMap<AppName, Vec<Held>>,
    /// Given up but not removed yet ([`OldLocks::detach`]): they no longer
    /// count as held, and the table hears so before the files go.
    releasing: BTreeMap<AppName, Vec<Held>>,
    /// Recorded files of ours not removed yet (a previous run's, or a
    /// removal that failed): removed when they can be, never forgotten.
    leftovers: Vec<Entry>,
    /// Why the record could not be read at start: nothing is written over
    /// it (its leftovers would be forgotten), so nothing is taken, until it
    /// reads.
    unreadable: Option<String>,
}

/// The directory itself opened without following it (its parents are the
/// engine's path as given).
fn open_dir(dir: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(dir, DIR_FLAGS, Mode::empty())
}

impl OldLocks {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            record_path: state_dir.join(RECORD_FILE),
            held: BTreeMap::new(),
            releasing: BTreeMap::new(),
            leftovers: Vec::new(),
            unreadable: None,
        }
    }

    /// Start-up: what a previous run recorded becomes leftovers to remove.
    /// A record that cannot be read or parsed is an error: nothing is
    /// removed on a guess, and nothing is written over it (no take) until
    /// it reads (`take` tries again).
    pub fn load(&mut self) -> Result<(), String> {
        let r = self.read_record();
        self.unreadable = r.as_ref().err().cloned();
        r
    }

    fn read_record(&mut self) -> Result<(), String> {
        match std::fs::read(&self.record_path) {
            Ok(bytes) => {
                let r: Record = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{} is damaged ({e}); fix or remove it",
                        self.record_path.display()
                    )
                })?;
                self.leftovers = r.locks;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.record_path.display())),
        }
    }

    pub fn holds(&self, app: &AppName) -> bool {
        self.held.contains_key(app)
    }

    pub fn held_apps(&self) -> Vec<AppName> {
        self.held.keys().cloned().collect()
    }

    /// The directories holdfast holds the lock in for `app`.
    pub fn held_dirs(&self, app: &AppName) -> BTreeSet<PathBuf> {
        self.held
            .get(app)
            .into_iter()
            .flatten()
            .map(|h| h.entry.dir.clone())
            .collect()
    }

    fn write_record(&self, pending: &[Entry]) -> Result<(), String> {
        if let Some(why) = &self.unreadable {
            return Err(format!("{why}; holdfast writes nothing over it"));
        }
        let mut locks: Vec<Entry> = self.leftovers.clone();
        let held = self.held.values().chain(self.releasing.values());
        locks.extend(held.flatten().map(|h| h.entry.clone()));
        locks.extend_from_slice(pending);
        let bytes = serde_json::to_vec_pretty(&Record { locks }).expect("record serializes");
        atomic_write(&self.record_path, &bytes)
            .map_err(|e| format!("cannot record locks in {}: {e}", self.record_path.display()))
    }

    /// Every lock name in each of `dirs`, all or nothing.
    pub fn take(&mut self, app: &AppName, dirs: &BTreeSet<PathBuf>) -> Result<(), TakeError> {
        if self.unreadable.is_some() {
            // Fixed or removed since? Its leftovers are removed first.
            self.load().map_err(TakeError::Failed)?;
            for p in self.retry() {
                tracing::info!(path = %p, "removed holdfast's leftover lock {p}");
            }
        }
        let token = random_token().map_err(|e| TakeError::Failed(e.to_string()))?;
        let intents: Vec<Entry> = dirs
            .iter()
            .flat_map(|d| {
                LOCK_FILE_NAMES.map(|f| Entry {
                    app: app.clone(),
                    dir: d.clone(),
                    file: f.to_owned(),
                    token: token.clone(),
                })
            })
            .collect();
        // Durable intent first: what a crash leaves carries this token.
        self.write_record(&intents).map_err(TakeError::Failed)?;
        let mut taken: Vec<Held> = Vec::new();
        let mut failure = None;
        'dirs: for dir in dirs {
            let fd = match open_dir(dir) {
                Ok(fd) => fd,
                Err(e) => {
                    failure = Some(TakeError::Failed(format!("{}: {e}", dir.display())));
                    break;
                }
            };
            for e in intents.iter().filter(|e| &e.dir == dir) {
                match create_own_lock(fd.as_fd(), &e.file, &token, dir) {
                    Ok((dev, ino, flock)) => taken.push(Held {
                        entry: e.clone(),
                        key: (dev, ino),
                        _flock: flock,
                    }),
                    Err(Errno::EEXIST | Errno::EWOULDBLOCK) => {
                        failure = Some(TakeError::Held(dir.join(&e.file).display().to_string()));
                        break 'dirs;
                    }
                    Err(err) => {
                        failure = Some(TakeError::Failed(format!(
                            "{}: {err}",
                            dir.join(&e.file).display()
                        )));
                        break 'dirs;
                    }
                }
            }
        }
        let Some(failure) = failure else {
            self.held.insert(app.clone(), taken);
            return Ok(());
        };
        for h in taken {
            if remove(&h.entry, Some(h.key)).is_err() {
                self.leftovers.push(h.entry);
            }
        }
        if let Err(e) = self.write_record(&[]) {
            tracing::error!(error = %e, "after a failed take: {e}");
        }
        Err(failure)
    }

    /// Removes what holdfast holds for `app`; a file that cannot be removed
    /// stays recorded and is retried (`retry`). Returns the failures.
    pub fn release(&mut self, app: &AppName) -> Vec<String> {
        self.detach(app);
        self.remove_detached(app)
    }

    /// Gives up `app`'s locks without removing them yet: they no longer
    /// count as held ([`OldLocks::holds`]), so the table can be told that
    /// the services bind again before the files go
    /// ([`OldLocks::remove_detached`]).
    pub fn detach(&mut self, app: &AppName) {
        if let Some(h) = self.held.remove(app) {
            self.releasing.entry(app.clone()).or_default().extend(h);
        }
    }

    /// Removes what [`OldLocks::detach`] gave up for `app`; a file that
    /// cannot be removed stays recorded and is retried. Returns the failures.
    pub fn remove_detached(&mut self, app: &AppName) -> Vec<String> {
        let mut failures = Vec::new();
        for h in self.releasing.remove(app).into_iter().flatten() {
            if let Err(e) = remove(&h.entry, Some(h.key)) {
                failures.push(format!(
                    "{}: {e}",
                    h.entry.dir.join(&h.entry.file).display()
                ));
                self.leftovers.push(h.entry);
            }
        }
        if let Err(e) = self.write_record(&[]) {
            failures.push(e);
        }
        failures
    }

    /// Removes the leftovers that can go now; returns those done with
    /// (removed, gone, or someone else's now).
    pub fn retry(&mut self) -> Vec<String> {
        if self.leftovers.is_empty() {
            return Vec::new();
        }
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for e in std::mem::take(&mut self.leftovers) {
            let shown = e.dir.join(&e.file).display().to_string();
            match remove(&e, None) {
                Ok(Removed::Yes) => removed.push(shown),
                Ok(Removed::Gone) => {}
                Ok(Removed::Theirs) => tracing::info!(path = %shown,
                    "holdfast's leftover lock {shown} was flocked or replaced since: it is that process's lock now, left to it"),
                Err(err) => {
                    tracing::debug!(path = %shown, error = %err, "holdfast's leftover lock stays for now");
                    kept.push(e);
                }
            }
        }
        self.leftovers = kept;
        if let Err(e) = self.write_record(&[]) {
            tracing::error!(error = %e, "{e}");
        }
        removed
    }

    pub fn has_leftovers(&self) -> bool {
        !self.leftovers.is_empty()
    }
}

/// holdfastd stopping (its tasks dropped): what it holds goes, so an app
/// is not locked out until the next start. A crash leaves the files, and
/// the record that lets the next start remove them.
impl Drop for OldLocks {
    fn drop(&mut self) {
        if self.held.is_empty() && self.releasing.is_empty() {
            return;
        }
        let apps: BTreeSet<AppName> = self
            .held
            .keys()
            .chain(self.releasing.keys())
            .cloned()
            .collect();
        for app in apps {
            for failure in self.release(&app) {
                tracing::warn!(error = %failure, "cannot remove holdfast's lock at stop: {failure}; removed at the next start");
            }
        }
    }
}

#[cfg(test)]
impl OldLocks {
    /// What a crash does: the flocks go with the process, the files and
    /// the record stay.
    pub fn crash(mut self) {
        drop(std::mem::take(&mut self.held));
        drop(std::mem::take(&mut self.releasing));
        std::mem::forget(self);
    }
}

/// What became of one of our files: done with, either way.
#[derive(Debug, PartialEq, Eq)]
enum Removed {
    Yes,
    /// Gone already (or its directory is).
    Gone,
    /// Replaced, or flocked by someone since: theirs now, left to them.
    Theirs,
}

/// Removes one of our files if it is still ours: the file we created
/// (`key`), or for a leftover one that carries our token and that nobody
/// has flocked since (then it is theirs). Gone already is done.
fn remove(e: &Entry, key: Option<FileKey>) -> Result<Removed, Errno> {
    let dir = match open_dir(&e.dir) {
        Ok(d) => d,
        Err(Errno::ENOENT) => return Ok(Removed::Gone),
        Err(err) => return Err(err),
    };
    let st = match fstatat(&dir, e.file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(Removed::Gone),
        Err(err) => return Err(err),
    };
    // Held until the file is gone.
    let _flock = match key {
        Some(k) if file_key(&st) != k => return Ok(Removed::Theirs),
        Some(_) => None,
        None => {
            if !ours(dir.as_fd(), e, &st)? {
                return Ok(Removed::Theirs);
            }
            match flock_existing(dir.as_fd(), &e.file, &st) {
                Ok(f) => Some(f),
                // Flocked by someone since: theirs now.
                Err(Errno::EWOULDBLOCK | Errno::ESTALE) => return Ok(Removed::Theirs),
                Err(err) => return Err(err),
            }
        }
    };
    unlinkat(&dir, e.file.as_str(), UnlinkatFlags::NoRemoveDir).map(|()| Removed::Yes)
}

fn ours(dir: BorrowedFd<'_>, e: &Entry, st: &nix::sys::stat::FileStat) -> Result<bool, Errno> {
    Ok(read_own_tag(dir, &e.file, st)?.as_deref() == Some(e.token.as_str()))
}

#[cfg(test)]
mod tests;
