//! Waking up when an app lets go of the lock that stopped holdfast taking
//! its own in a directory its containers see: an inotify watch on that
//! one file's directory (added through the no-follow opened directory),
//! so the take is tried again the moment the file goes, not at the next
//! timer. Only the contended name counts: holdfast's own files coming and
//! going there (a take given back) are no reason. One inotify instance
//! serves every contended app: instances are few per user (128 by
//! default, shared with systemd), and apps may be many.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::inotify::{AddWatchFlags, WatchDescriptor};
use nix::sys::stat::{fstatat, Mode};

use crate::inotify::AsyncInotify;
use crate::locks::fs::DIR_FLAGS;

#[derive(Default)]
pub struct Wakes {
    /// Made at the first watch; dropped (with every watch) by `clear`.
    inotify: Option<AsyncInotify>,
    /// The contended names in each watched directory.
    names: HashMap<WatchDescriptor, Vec<String>>,
}

impl Wakes {
    /// Watches `path`'s directory for `path` going. False when it is gone
    /// already or cannot be watched (then the timer tries again).
    pub fn on_removal(&mut self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return false;
        };
        let Ok(fd) = nix::fcntl::open(dir, DIR_FLAGS, Mode::empty()) else {
            return false;
        };
        if self.inotify.is_none() {
            self.inotify = AsyncInotify::new().ok();
        }
        let Some(inotify) = &self.inotify else {
            return false;
        };
        let mask = AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let Ok(wd) = inotify.add(proc_path.as_ref(), mask) else {
            return false;
        };
        self.names.entry(wd).or_default().push(name.to_owned());
        // Gone between the take and the watch: no event will say so.
        !matches!(
            fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW),
            Err(Errno::ENOENT)
        )
    }

    /// Forgets every watch (the instance goes with them).
    pub fn clear(&mut self) {
        self.names.clear();
        self.inotify = None;
    }

    /// Resolves when a watched file went (or its directory did, or the
    /// watch failed: then looking again is the safe answer). Pending while
    /// nothing is watched.
    pub async fn gone(&mut self) {
        let Some(inotify) = self.inotify.as_mut().filter(|_| !self.names.is_empty()) else {
            return std::future::pending().await;
        };
        loop {
            let Ok(batch) = inotify.next_batch().await else {
                return;
            };
            let went = batch.iter().any(|ev| {
                let name = ev.name.as_ref().and_then(|n| n.to_str());
                ev.mask.intersects(
                    AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_Q_OVERFLOW,
                ) || self
                    .names
                    .get(&ev.wd)
                    .is_some_and(|names| name.is_some_and(|n| names.iter().any(|c| c == n)))
            });
            if went {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Many contended apps share one instance; the contended name going
    /// wakes, another name in the same directory does not.
    #[tokio::test]
    async fn one_instance_for_every_contended_lock() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Wakes::default();
        for i in 0..50 {
            let d = t.path().join(format!("app{i}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("updates.lock"), b"").unwrap();
            std::fs::write(d.join("other"), b"").unwrap();
            assert!(w.on_removal(&d.join("updates.lock")));
        }
        // Every watch in the one instance.
        let fd = w.inotify.as_ref().unwrap().as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        assert_eq!(info.matches("inotify wd:").count(), 50, "{info}");
        std::fs::remove_file(t.path().join("app7/other")).unwrap();
        let early = tokio::time::timeout(Duration::from_millis(200), w.gone()).await;
        assert!(early.is_err(), "another name is no reason");
        std::fs::remove_file(t.path().join("app7/updates.lock")).unwrap();
        tokio::time::timeout(Duration::from_secs(10), w.gone())
            .await
            .expect("the contended lock went");
        w.clear();
        assert!(w.names.is_empty() && w.inotify.is_none());
        assert!(!w.on_removal(&t.path().join("app7/updates.lock")), "gone");
    }
}
