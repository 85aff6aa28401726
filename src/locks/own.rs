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
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};
use serde::{Deserialize, Serialize};

use super::fs::{
    file_key, list_subdirs, open_or_create_subdir, open_root, open_service_dir, read_own_tag,
    FsError, NOBODY, OWN_TAG,
};
use super::state::LOCK_FILE_NAMES;
use crate::fsutil::{atomic_write, random_token};
use crate::names::{AppName, ServiceId, ServiceName};

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
}

impl OwnLocks {
    pub fn new(root_path: &Path, state_dir: &Path) -> Self {
        Self {
            root_path: root_path.to_owned(),
            record_path: state_dir.join(RECORD_FILE),
            held: BTreeMap::new(),
        }
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

    /// Takes the lock of every listed service of `app` (every service
    /// directory of the app when `services` is empty); missing service
    /// directories are created. On the first contended lock every lock
    /// taken so far is released again. `through`: a lock an app holds is
    /// passed over instead (override, forced update). `announce` gets the
    /// tokens about to be used before any file is created.
    pub fn take(
        &mut self,
        app: &AppName,
        services: &[ServiceName],
        through: bool,
        purpose: Purpose,
        announce: impl FnOnce(BTreeSet<String>),
    ) -> Result<Vec<ServiceId>, OwnLockError> {
        self.settle(app)?;
        let root = open_root(&self.root_path)?;
        let plan = self.plan_app(root.as_fd(), app, services)?;
        let mut ids: Vec<ServiceId> = plan.iter().map(|(id, _)| id.clone()).collect();
        ids.dedup();
        self.take_planned(
            root.as_fd(),
            vec![(app.clone(), plan)],
            through,
            purpose,
            announce,
        )?;
        Ok(ids)
    }

    /// Takes the locks of every service directory of each app at once, with
    /// one durable record write (a reboot may lock thousands of apps).
    /// Apps holdfast already holds are left as they are; apps with no
    /// service directory are skipped. All-or-nothing across the apps.
    pub fn take_many(
        &mut self,
        apps: &[AppName],
        through: bool,
        purpose: Purpose,
        announce: impl FnOnce(BTreeSet<String>),
    ) -> Result<Vec<AppName>, OwnLockError> {
        let root = open_root(&self.root_path)?;
        let mut plans = Vec::new();
        for app in apps.iter().filter(|a| !self.held.contains_key(*a)) {
            match self.plan_app(root.as_fd(), app, &[]) {
                Ok(plan) => plans.push((app.clone(), plan)),
                Err(OwnLockError::NoServices(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let taken = plans.iter().map(|(a, _)| a.clone()).collect();
        self.take_planned(root.as_fd(), plans, through, purpose, announce)?;
        Ok(taken)
    }

    /// A stranded release of `app` is retried before anything else.
    fn settle(&mut self, app: &AppName) -> Result<(), OwnLockError> {
        match self.held.get(app) {
            None => Ok(()),
            Some(h) if h.releasing => self.release(app).map(drop),
            Some(h) => Err(OwnLockError::AlreadyHeld {
                app: app.clone(),
                purpose: h.purpose,
            }),
        }
    }

    fn plan_app(
        &self,
        root: BorrowedFd<'_>,
        app: &AppName,
        services: &[ServiceName],
    ) -> Result<Vec<(ServiceId, String)>, OwnLockError> {
        let app_path = self.root_path.join(app.as_str());
        let services = if services.is_empty() {
            let app_dir = match super::fs::open_subdir(root, app.as_str(), &app_path) {
                Ok(d) => d,
                Err(e) if e.vanished() => return Err(OwnLockError::NoServices(app.clone())),
                Err(e) => return Err(e.into()),
            };
            let (names, _) = list_subdirs(app_dir.as_fd(), &app_path)?;
            names
                .into_iter()
                .filter_map(|n| ServiceName::new(n).ok())
                .collect()
        } else {
            services.to_vec()
        };
        if services.is_empty() {
            return Err(OwnLockError::NoServices(app.clone()));
        }
        Ok(services
            .into_iter()
            .flat_map(|s| {
                let id = ServiceId::new(app.clone(), s);
                LOCK_FILE_NAMES.map(|f| (id.clone(), f.to_owned()))
            })
            .collect())
    }

    fn take_planned(
        &mut self,
        root: BorrowedFd<'_>,
        plans: Vec<(AppName, Vec<(ServiceId, String)>)>,
        through: bool,
        purpose: Purpose,
        announce: impl FnOnce(BTreeSet<String>),
    ) -> Result<(), OwnLockError> {
        if plans.is_empty() {
            return Ok(());
        }
        let token = random_token().map_err(|source| OwnLockError::Record {
            path: self.record_path.clone(),
            source,
        })?;
        let intents: Vec<RecordEntry> = plans
            .iter()
            .flat_map(|(_, p)| p.iter())
            .map(|(id, file)| RecordEntry {
                service: id.clone(),
                file: file.clone(),
                token: token.clone(),
            })
            .collect();
        // Durable intent first: a crash between here and the creates leaves
        // a record whose files, if any, carry our token.
        self.write_record(&intents)?;
        let mut tokens = self.tokens();
        tokens.insert(token.clone());
        announce(tokens);

        let mut taken: Vec<(AppName, Vec<Held>)> = Vec::new();
        let mut failure = None;
        'apps: for (app, plan) in plans {
            let app_path = self.root_path.join(app.as_str());
            let app_dir = match open_or_create_subdir(root, app.as_str(), &app_path) {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(OwnLockError::Fs(e));
                    break;
                }
            };
            let mut files = Vec::new();
            let mut dirs: BTreeMap<ServiceName, OwnedFd> = BTreeMap::new();
            for entry in intents.iter().filter(|e| e.service.app == app) {
                let service = &entry.service.service;
                let shown = app_path.join(service.as_str());
                if !dirs.contains_key(service) {
                    match open_or_create_subdir(app_dir.as_fd(), service.as_str(), &shown) {
                        Ok(d) => dirs.insert(service.clone(), d),
                        Err(e) => {
                            failure = Some(OwnLockError::Fs(e));
                            taken.push((app, files));
                            break 'apps;
                        }
                    };
                }
                let dir = dirs[service].as_fd();
                match create_own_lock(dir, &entry.file, &token, &shown) {
                    Ok(held) => files.push(Held {
                        entry: entry.clone(),
                        dev: held.0,
                        ino: held.1,
                        flock: Some(held.2),
                    }),
                    Err(Errno::EEXIST) if through => {}
                    Err(Errno::EEXIST | Errno::EWOULDBLOCK) => {
                        failure = Some(OwnLockError::Contended {
                            id: entry.service.clone(),
                            file: entry.file.clone(),
                        });
                        taken.push((app, files));
                        break 'apps;
                    }
                    Err(e) => {
                        failure = Some(OwnLockError::Fs(FsError::Io {
                            path: shown.join(&entry.file),
                            source: e,
                        }));
                        taken.push((app, files));
                        break 'apps;
                    }
                }
            }
            drop(plan);
            taken.push((app, files));
        }
        if let Some(err) = failure {
            // Give back what we took; what cannot be removed stays held.
            for (app, files) in taken {
                let kept: Vec<Held> = files
                    .into_iter()
                    .filter_map(|mut h| {
                        remove_held(root, &self.root_path, &mut h)
                            .is_err()
                            .then_some(h)
                    })
                    .collect();
                if !kept.is_empty() {
                    self.held.insert(
                        app,
                        HeldApp {
                            purpose,
                            files: kept,
                            releasing: true,
                        },
                    );
                }
            }
            self.write_record(&[])?;
            return Err(err);
        }
        for (app, files) in taken {
            self.held.insert(
                app,
                HeldApp {
                    purpose,
                    files,
                    releasing: false,
                },
            );
        }
        // The record now lists exactly what we hold.
        self.write_record(&[])
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
                Ok(gone) => removed += usize::from(gone),
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

    /// Start-up: removes the own locks a previous run left behind. Files
    /// that cannot be removed now stay recorded (and count as ours) and are
    /// retried like a failed release.
    pub fn cleanup_leftovers(&mut self) -> Result<Cleanup, OwnLockError> {
        let record = match std::fs::read(&self.record_path) {
            Ok(bytes) => serde_json::from_slice::<Record>(&bytes).map_err(|e| {
                OwnLockError::RecordDamaged {
                    path: self.record_path.clone(),
                    reason: e.to_string(),
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(source) => {
                return Err(OwnLockError::Record {
                    path: self.record_path.clone(),
                    source,
                })
            }
        };
        let mut report = Cleanup::default();
        if record.locks.is_empty() {
            return Ok(report);
        }
        let root = open_root(&self.root_path)?;
        for entry in record.locks {
            let shown = format!("{}/{}", entry.service, entry.file);
            let dir = match open_service_dir(root.as_fd(), &self.root_path, &entry.service) {
                Ok(d) => d,
                Err(e) if e.vanished() || e.skipped() => continue,
                Err(e) => {
                    report.failed.push(format!("{shown}: {e}"));
                    self.keep_leftover(entry, 0, 0, None);
                    continue;
                }
            };
            let st = match fstatat(&dir, entry.file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    report.failed.push(format!("{shown}: {e}"));
                    self.keep_leftover(entry, 0, 0, None);
                    continue;
                }
            };
            let is_file =
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
            let ours = is_file
                && read_own_tag(dir.as_fd(), &entry.file, &st).as_deref()
                    == Some(entry.token.as_str());
            if !ours {
                report.kept.push(shown);
                continue;
            }
            let (dev, ino) = file_key(&st);
            // An app may have flocked it since we died (flock(1) does not
            // care that the file exists): then it is that app's lock now.
            let flock = match flock_existing(dir.as_fd(), &entry.file, &st) {
                Ok(f) => f,
                Err(Errno::EWOULDBLOCK) => {
                    report
                        .kept
                        .push(format!("{shown} (flocked by another process)"));
                    continue;
                }
                Err(Errno::ESTALE) => {
                    report.kept.push(shown);
                    continue;
                }
                Err(e) => {
                    report.failed.push(format!("{shown}: {e}"));
                    self.keep_leftover(entry, dev, ino, None);
                    continue;
                }
            };
            match unlinkat(&dir, entry.file.as_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => report.removed.push(shown),
                Err(e) => {
                    report.failed.push(format!("{shown}: {e}"));
                    self.keep_leftover(entry, dev, ino, Some(flock));
                }
            }
        }
        self.write_record(&[])?;
        Ok(report)
    }

    fn keep_leftover(
        &mut self,
        entry: RecordEntry,
        dev: u64,
        ino: u64,
        flock: Option<Flock<File>>,
    ) {
        let h = self
            .held
            .entry(entry.service.app.clone())
            .or_insert(HeldApp {
                purpose: Purpose::Leftover,
                files: Vec::new(),
                releasing: true,
            });
        h.files.push(Held {
            entry,
            dev,
            ino,
            flock,
        });
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

/// Removes one own lock file if it is still ours: the one we created, or
/// for a leftover (no identity known) one that carries its token. Gone
/// already is done; true when this call removed it. A leftover we have
/// not flocked yet is flocked first: one another process has flocked is
/// its lock now, and is left to it.
fn remove_held(root: BorrowedFd<'_>, root_path: &Path, h: &mut Held) -> Result<bool, Errno> {
    let dir = match open_service_dir(root, root_path, &h.entry.service) {
        Ok(d) => d,
        Err(e) if e.vanished() || e.skipped() => return Ok(false),
        Err(FsError::Io { source, .. }) => return Err(source),
        Err(_) => return Err(Errno::EIO),
    };
    let st = match fstatat(&dir, h.entry.file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    let ours = if (h.dev, h.ino) == (0, 0) {
        read_own_tag(dir.as_fd(), &h.entry.file, &st).as_deref() == Some(h.entry.token.as_str())
    } else {
        file_key(&st) == (h.dev, h.ino)
    };
    if !ours {
        return Ok(false); // replaced by someone else's: not ours to remove
    }
    if h.flock.is_none() {
        match flock_existing(dir.as_fd(), &h.entry.file, &st) {
            Ok(f) => h.flock = Some(f),
            Err(Errno::EWOULDBLOCK) => {
                tracing::warn!(path = %format!("{}/{}", h.entry.service, h.entry.file),
                    "holdfast's leftover lock {}/{} is flocked by another process: it is that process's lock now",
                    h.entry.service, h.entry.file);
                return Ok(false);
            }
            Err(Errno::ESTALE) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    unlinkat(&dir, h.entry.file.as_str(), UnlinkatFlags::NoRemoveDir).map(|()| true)
}

/// Flocks an existing lock file without waiting, through a read-only,
/// no-follow open (a read-only lock root allows it). `ESTALE` when the
/// name no longer leads to the file `expected`, `EWOULDBLOCK` when another
/// process holds a flock on it.
fn flock_existing(
    dir: BorrowedFd<'_>,
    file: &str,
    expected: &nix::sys::stat::FileStat,
) -> Result<Flock<File>, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd: OwnedFd = openat(dir, file, flags, Mode::empty())?;
    if file_key(&nix::sys::stat::fstat(&fd)?) != file_key(expected) {
        return Err(Errno::ESTALE);
    }
    Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)
}

/// Exclusive, no-follow create relative to the service directory, `flock`ed,
/// tagged and handed to uid 65534 through the fd (never through a path).
fn create_own_lock(
    dir: BorrowedFd<'_>,
    file: &str,
    token: &str,
    shown: &Path,
) -> Result<(u64, u64, Flock<File>), Errno> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd: OwnedFd = openat(dir, file, flags, Mode::from_bits_truncate(0o644))?;
    let undo = |e: Errno| {
        let _ = unlinkat(dir, file, UnlinkatFlags::NoRemoveDir);
        e
    };
    // Someone's flock(1) opened our fresh file first: theirs, not ours.
    let mut f =
        Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock).map_err(|(_, e)| undo(e))?;
    let content = format!("{OWN_TAG}{token}\n");
    if let Err(e) = f.write_all(content.as_bytes()) {
        return Err(undo(Errno::from_raw(
            e.raw_os_error().unwrap_or(Errno::EIO as i32),
        )));
    }
    if let Err(e) = fchown(
        &*f,
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    ) {
        // Unprivileged runs (development) cannot chown; the tag still marks it.
        tracing::debug!(path = %shown.join(file).display(), error = %e, "cannot hand own lock to uid 65534");
    }
    let st = nix::sys::stat::fstat(&*f).map_err(undo)?;
    let (dev, ino) = file_key(&st);
    Ok((dev, ino, f))
}

#[cfg(test)]
mod tests;
