//! holdfast taking an app's locks itself, as the supervisor apps already
//! write against does before it touches a service: every lock of the app,
//! exclusive create, uid 65534, all-or-nothing.
//!
//! Own locks are recorded durably under the state directory *before* the
//! files are created and carry a random token in their content, so after a
//! crash holdfast removes exactly its own leftovers, even when an app also
//! runs as uid 65534.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
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

#[derive(Debug, thiserror::Error)]
pub enum OwnLockError {
    #[error("{id} is locked ({file} exists); no lock of app {} was taken", id.app)]
    Contended { id: ServiceId, file: String },
    #[error("app {0} has no service directories to lock")]
    NoServices(AppName),
    #[error("holdfast already holds the locks of app {0}")]
    AlreadyHeld(AppName),
    #[error("holdfast holds no locks of app {0}")]
    NotHeld(AppName),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("cannot record own locks in {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

#[derive(Debug, Clone)]
struct Held {
    entry: RecordEntry,
    dev: u64,
    ino: u64,
}

/// What the start-up cleanup did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    pub removed: Vec<String>,
    /// Recorded paths now held by someone else: left alone.
    pub kept: Vec<String>,
}

pub struct OwnLocks {
    root_path: PathBuf,
    record_path: PathBuf,
    held: BTreeMap<AppName, Vec<Held>>,
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

    /// Takes the lock of every listed service of `app` (every service
    /// directory of the app when `services` is empty). Missing service
    /// directories are created. On the first contended lock, every lock taken
    /// so far is released again.
    pub fn take(
        &mut self,
        app: &AppName,
        services: &[ServiceName],
    ) -> Result<Vec<ServiceId>, OwnLockError> {
        self.take_inner(app, services, false)
    }

    /// As `take`, but a lock an app holds is passed over instead of failing
    /// (under the lock override or a forced update).
    pub fn take_through(
        &mut self,
        app: &AppName,
        services: &[ServiceName],
    ) -> Result<Vec<ServiceId>, OwnLockError> {
        self.take_inner(app, services, true)
    }

    fn take_inner(
        &mut self,
        app: &AppName,
        services: &[ServiceName],
        through: bool,
    ) -> Result<Vec<ServiceId>, OwnLockError> {
        if self.held.contains_key(app) {
            return Err(OwnLockError::AlreadyHeld(app.clone()));
        }
        let root = open_root(&self.root_path)?;
        let app_path = self.root_path.join(app.as_str());
        let app_dir = open_or_create_subdir(root.as_fd(), app.as_str(), &app_path)?;
        let services = if services.is_empty() {
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
        let token = random_token().map_err(|source| OwnLockError::Record {
            path: self.record_path.clone(),
            source,
        })?;
        let intents: Vec<RecordEntry> = services
            .iter()
            .flat_map(|s| {
                LOCK_FILE_NAMES.iter().map(|f| RecordEntry {
                    service: ServiceId::new(app.clone(), s.clone()),
                    file: (*f).to_owned(),
                    token: token.clone(),
                })
            })
            .collect();
        // Durable intent first: a crash between here and the creates leaves
        // a record whose files, if any, carry our token.
        self.write_record(&intents)?;

        let mut taken: Vec<Held> = Vec::new();
        let mut failure = None;
        'services: for service in &services {
            let id = ServiceId::new(app.clone(), service.clone());
            let shown = app_path.join(service.as_str());
            let dir = match open_or_create_subdir(app_dir.as_fd(), service.as_str(), &shown) {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(OwnLockError::Fs(e));
                    break;
                }
            };
            for file in LOCK_FILE_NAMES {
                let entry = RecordEntry {
                    service: id.clone(),
                    file: file.to_owned(),
                    token: token.clone(),
                };
                match create_own_lock(dir.as_fd(), file, &token, &shown) {
                    Ok((dev, ino)) => taken.push(Held { entry, dev, ino }),
                    Err(Errno::EEXIST) if through => {}
                    Err(Errno::EEXIST) => {
                        failure = Some(OwnLockError::Contended {
                            id: id.clone(),
                            file: file.to_owned(),
                        });
                        break 'services;
                    }
                    Err(e) => {
                        failure = Some(OwnLockError::Fs(FsError::Io {
                            path: shown.join(file),
                            source: e,
                        }));
                        break 'services;
                    }
                }
            }
        }
        if let Some(err) = failure {
            for h in &taken {
                self.remove_held(root.as_fd(), h);
            }
            self.write_record(&[])?;
            return Err(err);
        }
        let ids: Vec<ServiceId> = services
            .iter()
            .map(|s| ServiceId::new(app.clone(), s.clone()))
            .collect();
        self.held.insert(app.clone(), taken);
        Ok(ids)
    }

    /// Removes holdfast's own locks of `app`; app locks are never touched.
    pub fn release(&mut self, app: &AppName) -> Result<usize, OwnLockError> {
        let root = open_root(&self.root_path)?;
        let held = self
            .held
            .remove(app)
            .ok_or_else(|| OwnLockError::NotHeld(app.clone()))?;
        let removed = held
            .iter()
            .filter(|h| self.remove_held(root.as_fd(), h))
            .count();
        self.write_record(&[])?;
        Ok(removed)
    }

    pub fn release_all(&mut self) -> Result<usize, OwnLockError> {
        let apps: Vec<AppName> = self.held.keys().cloned().collect();
        let mut n = 0;
        for app in apps {
            n += self.release(&app)?;
        }
        Ok(n)
    }

    /// Start-up: removes the own locks a previous run left behind.
    pub fn cleanup_leftovers(&mut self) -> Result<Cleanup, OwnLockError> {
        let record = match std::fs::read(&self.record_path) {
            Ok(bytes) => serde_json::from_slice::<Record>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %self.record_path.display(), error = %e,
                    "own-lock record is unreadable; no leftover lock is removed");
                Record::default()
            }),
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
        for entry in &record.locks {
            let shown = format!("{}/{}", entry.service, entry.file);
            let Ok(dir) = open_service_dir(root.as_fd(), &self.root_path, &entry.service) else {
                continue;
            };
            let Ok(st) = fstatat(&dir, entry.file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            let is_file =
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
            let ours = is_file
                && read_own_tag(dir.as_fd(), &entry.file, &st).as_deref()
                    == Some(entry.token.as_str());
            if ours && unlinkat(&dir, entry.file.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                report.removed.push(shown);
            } else {
                report.kept.push(shown);
            }
        }
        self.write_record(&[])?;
        Ok(report)
    }

    /// Removes one own lock file if it is still the one we created.
    fn remove_held(&self, root: BorrowedFd<'_>, h: &Held) -> bool {
        let Ok(dir) = open_service_dir(root, &self.root_path, &h.entry.service) else {
            return false;
        };
        match fstatat(&dir, h.entry.file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if file_key(&st) == (h.dev, h.ino) => {
                unlinkat(&dir, h.entry.file.as_str(), UnlinkatFlags::NoRemoveDir).is_ok()
            }
            _ => false,
        }
    }

    /// Persists every held lock plus `pending` (locks about to be created).
    fn write_record(&self, pending: &[RecordEntry]) -> Result<(), OwnLockError> {
        let mut locks: Vec<RecordEntry> = self
            .held
            .values()
            .flatten()
            .map(|h| h.entry.clone())
            .collect();
        locks.extend_from_slice(pending);
        let bytes = serde_json::to_vec_pretty(&Record { locks }).expect("record serializes");
        atomic_write(&self.record_path, &bytes).map_err(|source| OwnLockError::Record {
            path: self.record_path.clone(),
            source,
        })
    }
}

/// Exclusive, no-follow create relative to the service directory, tagged and
/// handed to uid 65534 through the fd (never through a path).
fn create_own_lock(
    dir: BorrowedFd<'_>,
    file: &str,
    token: &str,
    shown: &Path,
) -> Result<(u64, u64), Errno> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd: OwnedFd = openat(dir, file, flags, Mode::from_bits_truncate(0o644))?;
    let mut f = std::fs::File::from(fd);
    let content = format!("{OWN_TAG}{token}\n");
    if let Err(e) = f.write_all(content.as_bytes()) {
        let _ = unlinkat(dir, file, UnlinkatFlags::NoRemoveDir);
        return Err(Errno::from_raw(
            e.raw_os_error().unwrap_or(Errno::EIO as i32),
        ));
    }
    if let Err(e) = fchown(&f, Some(Uid::from_raw(NOBODY)), Some(Gid::from_raw(NOBODY))) {
        // Unprivileged runs (development) cannot chown; the tag still marks it.
        tracing::debug!(path = %shown.join(file).display(), error = %e, "cannot hand own lock to uid 65534");
    }
    let st = nix::sys::stat::fstat(&f)?;
    Ok(file_key(&st))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("locks");
        let state = t.path().join("state");
        for s in ["main", "worker"] {
            std::fs::create_dir_all(root.join("app1").join(s)).unwrap();
        }
        (t, root, state)
    }

    fn app(s: &str) -> AppName {
        AppName::new(s).unwrap()
    }

    #[test]
    fn takes_and_releases_every_service() {
        let (_t, root, state) = setup();
        let mut own = OwnLocks::new(&root, &state);
        let ids = own.take(&app("app1"), &[]).unwrap();
        assert_eq!(ids.len(), 2);
        for s in ["main", "worker"] {
            for f in LOCK_FILE_NAMES {
                let text = std::fs::read_to_string(root.join("app1").join(s).join(f)).unwrap();
                assert!(text.starts_with(OWN_TAG));
            }
        }
        assert!(matches!(
            own.take(&app("app1"), &[]),
            Err(OwnLockError::AlreadyHeld(_))
        ));
        assert_eq!(own.release(&app("app1")).unwrap(), 4);
        assert!(!root.join("app1/main/updates.lock").exists());
    }

    #[test]
    fn all_or_nothing_against_an_app_lock() {
        let (_t, root, state) = setup();
        std::fs::write(root.join("app1/worker/updates.lock"), b"").unwrap();
        let mut own = OwnLocks::new(&root, &state);
        let err = own.take(&app("app1"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app1/worker is locked (updates.lock exists); no lock of app app1 was taken"
        );
        assert!(!root.join("app1/main/updates.lock").exists());
        assert!(!root.join("app1/main/resin-updates.lock").exists());
        assert!(
            root.join("app1/worker/updates.lock").exists(),
            "app lock kept"
        );
    }

    #[test]
    fn leftovers_are_cleaned_but_app_locks_survive() {
        let (_t, root, state) = setup();
        let mut own = OwnLocks::new(&root, &state);
        own.take(&app("app1"), &[]).unwrap();
        drop(own); // "crash": nothing released
                   // An app replaced one of our files with its own meanwhile.
        std::fs::remove_file(root.join("app1/main/updates.lock")).unwrap();
        std::fs::write(root.join("app1/main/updates.lock"), b"app").unwrap();
        let mut own = OwnLocks::new(&root, &state);
        let report = own.cleanup_leftovers().unwrap();
        assert_eq!(report.removed.len(), 3);
        assert_eq!(report.kept, vec!["app1/main/updates.lock".to_string()]);
        assert_eq!(
            std::fs::read(root.join("app1/main/updates.lock")).unwrap(),
            b"app"
        );
        // The record is empty now: a second start removes nothing.
        let report = OwnLocks::new(&root, &state).cleanup_leftovers().unwrap();
        assert_eq!(report, Cleanup::default());
    }

    #[test]
    fn symlinked_service_dir_is_refused() {
        let (t, root, state) = setup();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("app1/evil")).unwrap();
        let mut own = OwnLocks::new(&root, &state);
        let err = own
            .take(&app("app1"), &[ServiceName::new("evil").unwrap()])
            .unwrap_err();
        assert!(
            matches!(err, OwnLockError::Fs(FsError::Symlink { .. })),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn planted_symlink_lock_is_not_followed() {
        let (t, root, state) = setup();
        let target = t.path().join("target");
        std::os::unix::fs::symlink(&target, root.join("app1/main/updates.lock")).unwrap();
        let mut own = OwnLocks::new(&root, &state);
        assert!(matches!(
            own.take(&app("app1"), &[]),
            Err(OwnLockError::Contended { .. })
        ));
        assert!(
            !target.exists(),
            "O_NOFOLLOW|O_EXCL never creates through a link"
        );
    }
}
