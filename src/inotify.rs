//! inotify on tokio: one async wrapper for the lock watcher, the target
//! file, the hand-over wait and config.json.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// tokio's `AsyncFd` wants `AsRawFd`, which nix's `Inotify` does not implement.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct AsyncInotify(AsyncFd<InotifyFd>);

impl AsyncInotify {
    pub fn new() -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: InotifyFd owns the inotify fd, which stays open and unchanged
        // until the AsyncFd (and with it the InotifyFd) is dropped.
        unsafe {
            AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE)
        }
        .map(Self)
        .map_err(std::io::Error::from)
    }

    pub fn add(&self, path: &Path, mask: AddWatchFlags) -> Result<WatchDescriptor, Errno> {
        self.0.get_ref().0.add_watch(path, mask)
    }

    pub fn remove(&self, wd: WatchDescriptor) {
        let _ = self.0.get_ref().0.rm_watch(wd);
    }

    /// The next batch of events (never empty).
    pub async fn next_batch(&mut self) -> Result<Vec<InotifyEvent>, Errno> {
        loop {
            let mut guard = self.0.readable().await.map_err(|_| Errno::EIO)?;
            match guard.get_inner().0.read_events() {
                Ok(events) => return Ok(events),
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Watches one directory for changes to some of its entries by name:
/// created, written and closed, renamed over, deleted.
pub struct NamesWatch {
    inotify: AsyncInotify,
    dir: PathBuf,
    names: Vec<OsString>,
}

impl NamesWatch {
    pub fn new(dir: &Path, names: &[&str]) -> io::Result<Self> {
        let inotify = AsyncInotify::new()?;
        inotify.add(
            dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_ONLYDIR,
        )?;
        Ok(Self {
            inotify,
            dir: dir.to_owned(),
            names: names.iter().map(OsString::from).collect(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns when one of the names changed (or the queue overflowed).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let events = self.inotify.next_batch().await?;
            if events.iter().any(|e| {
                e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || e.name.as_ref().is_some_and(|n| self.names.contains(n))
            }) {
                return Ok(());
            }
        }
    }

    /// Waits until one of the names exists or `timeout` passes; true when
    /// it exists.
    pub async fn wait_exists(&mut self, timeout: Duration) -> io::Result<bool> {
        let exists = |w: &Self| {
            w.names
                .iter()
                .any(|n| w.dir.join(n).symlink_metadata().is_ok())
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if exists(self) {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, self.changed()).await {
                Ok(r) => r?,
                Err(_) => return Ok(exists(self)),
            }
        }
    }
}
