//! Start-up: what a previous run left behind. Only files whose content
//! carries a recorded token are ours; each is flocked before it goes (an
//! app that flocked it since is its owner now), and one that cannot be
//! removed stays recorded and held, retried like a failed release.

use std::fs::File;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock};
use nix::sys::stat::{fstatat, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::files::flock_existing;
use super::{Cleanup, Held, HeldApp, OwnLockError, OwnLocks, Purpose, Record, RecordEntry};
use crate::locks::fs::{file_key, open_root, open_service_dir, read_own_tag};

impl OwnLocks {
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
            let tag = match is_file {
                true => read_own_tag(dir.as_fd(), &entry.file, &st),
                false => Ok(None),
            };
            let ours = match tag {
                Ok(t) => t.as_deref() == Some(entry.token.as_str()),
                // Could not read it: it stays recorded and is retried.
                Err(e) => {
                    report.failed.push(format!("{shown}: {e}"));
                    self.keep_leftover(entry, 0, 0, None);
                    continue;
                }
            };
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
}
