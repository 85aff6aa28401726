//! inotify on tokio: one async wrapper for the lock watcher, the target
//! file, the hand-over wait and config.json.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// tokio's `AsyncFd` wants `AsRawFd`, which nix's `Inotify` does not implement.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct AsyncInotify(AsyncFd<InotifyFd>);

impl AsRawFd for AsyncInotify {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.get_ref().as_raw_fd()
    }
}

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

/// Watches one directory for changes to some of its entries by name. A
/// directory that goes away (removed, or its file system unmounted, as a
/// boot partition may be) is watched again once it is back, retried with a
/// bounded back-off, and that counts as a change: anything may differ. A
/// file system mounted over the directory (which inotify does not report)
/// is noticed through the mount table and watched instead.
pub struct NamesWatch {
    inotify: Option<AsyncInotify>,
    /// The directory's (device, inode) when its watch was added.
    watched: Option<(u64, u64)>,
    /// `/proc/self/mountinfo`, ready (priority) when the mount table changes.
    mounts: Option<AsyncFd<File>>,
    dir: PathBuf,
    names: Vec<OsString>,
    mask: AddWatchFlags,
    /// Coalesce a burst of writes into one change (content watches).
    settle: Option<Duration>,
    backoff: Duration,
    /// Why the directory is not watched, once logged.
    lost: Option<String>,
    /// A change seen and not yet reported: kept when `changed` is dropped
    /// midway (it runs in `select!` loops), so no change is ever lost.
    dirty: bool,
    /// While the directory does not exist: a watch on its nearest existing
    /// ancestor, so its creation wakes us (no timer while idle).
    ancestor: Option<AsyncInotify>,
}

const REWATCH_MIN: Duration = Duration::from_millis(100);
const REWATCH_MAX: Duration = Duration::from_secs(5);
/// A content change is reported once the file has been quiet this long.
const SETTLE: Duration = Duration::from_millis(50);
/// ... but never later than this after the first event of a burst.
pub const SETTLE_MAX: Duration = Duration::from_secs(1);

/// The (device, inode) a path leads to now.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The mount table, to be told when it changes (the kernel flags
/// `/proc/self/mountinfo` with POLLPRI at every mount and unmount).
fn mount_table(dir: &Path) -> Option<AsyncFd<File>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/proc/self/mountinfo")
        .and_then(|f| {
            // SAFETY: the AsyncFd owns the File, whose fd stays open and
            // unchanged until both are dropped together.
            unsafe { AsyncFd::register_with_interest(f, Interest::PRIORITY) }
                .map_err(io::Error::from)
        });
    match opened {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e,
                "cannot follow the mount table; a file system mounted on {} is seen only once its old watch is lost",
                dir.display());
            None
        }
    }
}

/// Resolves when the mount table changed (never without one).
async fn mount_table_changed(mounts: &Option<AsyncFd<File>>) {
    match mounts {
        Some(fd) => match fd.ready(Interest::PRIORITY).await {
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// What one wait of [`NamesWatch`] saw.
enum Woke {
    Events(Result<Vec<InotifyEvent>, Errno>),
    Mounts,
}

impl NamesWatch {
    /// For files read whole (config.json, the target): a change is a
    /// finished write (close after writing), a rename onto or away from the
    /// name, or a removal; bursts settle into one change.
    pub fn content(dir: &Path, names: &[&str]) -> Self {
        let mask = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE;
        Self::with(dir, names, mask, Some(SETTLE))
    }

    /// For signal files whose existence is the message (hand-over): any
    /// create counts at once.
    pub fn existence(dir: &Path, names: &[&str]) -> io::Result<Self> {
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE;
        let mut w = Self::with(dir, names, mask, None);
        match w.rewatch() {
            Ok(()) => Ok(w),
            Err(e) => Err(e),
        }
    }

    fn with(dir: &Path, names: &[&str], mask: AddWatchFlags, settle: Option<Duration>) -> Self {
        let mut w = Self {
            inotify: None,
            watched: None,
            mounts: mount_table(dir),
            dir: dir.to_owned(),
            names: names.iter().map(OsString::from).collect(),
            mask: mask
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR,
            settle,
            backoff: REWATCH_MIN,
            lost: None,
            dirty: false,
            ancestor: None,
        };
        if let Err(e) = w.rewatch() {
            w.report_lost(&e.to_string());
            w.arm_ancestor(&e);
        }
        w
    }

    /// The directory is missing: watch the nearest ancestor that exists for
    /// anything created or moved in (creating the path wakes us then). For
    /// other errors (out of descriptors, say) the back-off timer retries.
    fn arm_ancestor(&mut self, e: &io::Error) {
        self.ancestor = None;
        if e.kind() != io::ErrorKind::NotFound {
            return;
        }
        let Some(existing) = self.dir.ancestors().skip(1).find(|a| a.is_dir()) else {
            return;
        };
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        self.ancestor = AsyncInotify::new()
            .ok()
            .filter(|i| i.add(existing, mask).is_ok());
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn rewatch(&mut self) -> io::Result<()> {
        // What the path leads to before the watch is added: a mount in
        // between then differs at the next mount-table change.
        let id = identity(&self.dir);
        let inotify = AsyncInotify::new()?;
        inotify.add(&self.dir, self.mask)?;
        self.inotify = Some(inotify);
        self.watched = id;
        self.backoff = REWATCH_MIN;
        if self.lost.take().is_some() {
            tracing::info!(dir = %self.dir.display(), "watching {} again", self.dir.display());
        }
        Ok(())
    }

    fn report_lost(&mut self, why: &str) {
        if self.lost.as_deref() != Some(why) {
            tracing::warn!(dir = %self.dir.display(), reason = why,
                "cannot watch {}; retrying until it is back", self.dir.display());
            self.lost = Some(why.to_owned());
        }
    }

    fn lose(&mut self) {
        self.inotify = None;
        self.report_lost("the directory was removed or unmounted");
        if !self.dir.is_dir() {
            self.arm_ancestor(&io::Error::from(io::ErrorKind::NotFound));
        }
    }

    /// The mount table changed: when the path now leads to another
    /// directory (a file system mounted on it or unmounted from it), that
    /// one is watched, and that is a change.
    fn follow_mounts(&mut self) -> bool {
        let now = identity(&self.dir);
        if now.is_none() || now == self.watched {
            return false;
        }
        match self.rewatch() {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(),
                    "{} is another file system now; watching it", self.dir.display());
                true
            }
            Err(e) => {
                self.inotify = None;
                self.report_lost(&e.to_string());
                false
            }
        }
    }

    /// Returns when one of the names changed (or may have: a queue
    /// overflow, the directory watched again after it went away, another
    /// file system mounted on it). Cancel-safe.
    pub async fn changed(&mut self) -> io::Result<()> {
        while !self.dirty {
            self.dirty = self.next_change().await?;
        }
        if let Some(quiet) = self.settle {
            self.settle_burst(quiet).await;
        }
        self.dirty = false;
        Ok(())
    }

    /// One wait: true when it saw a change of the names.
    async fn next_change(&mut self) -> io::Result<bool> {
        let Some(inotify) = self.inotify.as_mut() else {
            // Not watched: try again when something is created where the
            // directory should be, or the mount table changes (the partition
            // is back); after a back-off only when neither can be watched.
            match self.ancestor.as_mut() {
                Some(ancestor) => tokio::select! {
                    _ = ancestor.next_batch() => {}
                    _ = mount_table_changed(&self.mounts) => {}
                },
                None => tokio::select! {
                    _ = tokio::time::sleep(self.backoff) => {
                        self.backoff = (self.backoff * 2).min(REWATCH_MAX);
                    }
                    _ = mount_table_changed(&self.mounts) => {}
                },
            }
            return match self.rewatch() {
                Ok(()) => {
                    self.ancestor = None;
                    Ok(true)
                }
                Err(e) => {
                    self.report_lost(&e.to_string());
                    self.arm_ancestor(&e);
                    Ok(false)
                }
            };
        };
        let woke = tokio::select! {
            r = inotify.next_batch() => Woke::Events(r),
            _ = mount_table_changed(&self.mounts) => Woke::Mounts,
        };
        match woke {
            Woke::Events(r) => Ok(match self.classify(&r?) {
                Seen::Nothing => false,
                Seen::Lost => {
                    self.lose();
                    false
                }
                Seen::Change => true,
            }),
            Woke::Mounts => Ok(self.follow_mounts()),
        }
    }

    /// Reads events until the names have been quiet for `quiet`.
    async fn settle_burst(&mut self, quiet: Duration) {
        let until = tokio::time::Instant::now() + SETTLE_MAX;
        loop {
            let Some(inotify) = self.inotify.as_mut() else {
                return;
            };
            let next = tokio::time::timeout(quiet, inotify.next_batch());
            match tokio::time::timeout_at(until, next).await {
                Ok(Ok(Ok(events))) => {
                    if let Seen::Lost = self.classify(&events) {
                        self.lose();
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn classify(&self, events: &[InotifyEvent]) -> Seen {
        let gone = AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_UNMOUNT
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        if events.iter().any(|e| e.mask.intersects(gone)) {
            return Seen::Lost;
        }
        if events.iter().any(|e| {
            e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                || e.name.as_ref().is_some_and(|n| self.names.contains(n))
        }) {
            Seen::Change
        } else {
            Seen::Nothing
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

enum Seen {
    Nothing,
    Change,
    /// The directory's watch is gone.
    Lost,
}

#[cfg(test)]
mod tests;
