//! Waking up when an app lets go of the lock that stopped holdfast taking
//! its own in a directory its containers see: an inotify watch on that
//! one file's directory (added through the no-follow opened directory),
//! so the take is tried again the moment the file goes, not at the next
//! timer. Only the contended name counts: holdfast's own files coming and
//! going there (a take given back) are no reason.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::inotify::AddWatchFlags;
use nix::sys::stat::{fstatat, Mode};

use crate::inotify::AsyncInotify;
use crate::locks::fs::DIR_FLAGS;

pub struct Wake {
    inotify: AsyncInotify,
    name: String,
}

impl Wake {
    /// Watches `path`'s directory for `path` going. `None` when it is gone
    /// already or cannot be watched (then the timer tries again).
    pub fn on_removal(path: &Path) -> Option<Wake> {
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        let fd = nix::fcntl::open(dir, DIR_FLAGS, Mode::empty()).ok()?;
        let inotify = AsyncInotify::new().ok()?;
        let mask = AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        inotify.add(proc_path.as_ref(), mask).ok()?;
        // Gone between the take and the watch: no event will say so.
        match fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => None,
            _ => Some(Wake {
                inotify,
                name: name.to_owned(),
            }),
        }
    }

    /// Resolves when the file went (or the directory did, or the watch
    /// failed: then looking again is the safe answer).
    pub async fn gone(&mut self) {
        loop {
            let Ok(batch) = self.inotify.next_batch().await else {
                return;
            };
            let went = batch.iter().any(|ev| {
                ev.mask.intersects(
                    AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_Q_OVERFLOW,
                ) || ev.name.as_ref().and_then(|n| n.to_str()) == Some(self.name.as_str())
            });
            if went {
                return;
            }
        }
    }
}
