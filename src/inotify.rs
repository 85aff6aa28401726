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

/// Watches one directory for changes to some of its entries by name. A
/// directory that goes away (removed, or its file system unmounted, as a
/// boot partition may be) is watched again once it is back, retried with a
/// bounded back-off, and that counts as a change: anything may differ.
pub struct NamesWatch {
    inotify: Option<AsyncInotify>,
    dir: PathBuf,
    names: Vec<OsString>,
    mask: AddWatchFlags,
    /// Coalesce a burst of writes into one change (content watches).
    settle: Option<Duration>,
    backoff: Duration,
    /// Why the directory is not watched, once logged.
    lost: Option<String>,
}

const REWATCH_MIN: Duration = Duration::from_millis(100);
const REWATCH_MAX: Duration = Duration::from_secs(5);
/// A content change is reported once the file has been quiet this long.
const SETTLE: Duration = Duration::from_millis(50);
/// ... but never later than this after the first event of a burst.
const SETTLE_MAX: Duration = Duration::from_secs(1);

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
            dir: dir.to_owned(),
            names: names.iter().map(OsString::from).collect(),
            mask: mask
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR,
            settle,
            backoff: REWATCH_MIN,
            lost: None,
        };
        if let Err(e) = w.rewatch() {
            w.report_lost(&e.to_string());
        }
        w
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn rewatch(&mut self) -> io::Result<()> {
        let inotify = AsyncInotify::new()?;
        inotify.add(&self.dir, self.mask)?;
        self.inotify = Some(inotify);
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

    /// Returns when one of the names changed (or may have: a queue
    /// overflow, the directory watched again after it went away).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let Some(inotify) = self.inotify.as_mut() else {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(REWATCH_MAX);
                match self.rewatch() {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        self.report_lost(&e.to_string());
                        continue;
                    }
                }
            };
            let events = inotify.next_batch().await?;
            match self.classify(&events) {
                Seen::Nothing => continue,
                Seen::Lost => {
                    self.inotify = None;
                    self.report_lost("the directory was removed or unmounted");
                    continue;
                }
                Seen::Change => {}
            }
            if let Some(quiet) = self.settle {
                self.settle_burst(quiet).await;
            }
            return Ok(());
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
                        self.inotify = None;
                        self.report_lost("the directory was removed or unmounted");
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_removed_directory_is_watched_again_when_it_is_back() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("boot");
        std::fs::create_dir(&dir).unwrap();
        let mut w = NamesWatch::content(&dir, &["config.json"]);
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .unwrap()
            .unwrap();
        // Gone (as an unmount would make it), then back.
        std::fs::remove_dir_all(&dir).unwrap();
        let back = dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::create_dir(&back).unwrap();
        });
        tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .expect("noticed the directory came back")
            .unwrap();
        std::fs::write(dir.join("config.json"), b"{\"a\": 1}").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("and watches it again")
            .unwrap();
    }

    #[tokio::test]
    async fn a_burst_of_rewrites_is_one_change() {
        let t = tempfile::tempdir().unwrap();
        let mut w = NamesWatch::content(t.path(), &["f"]);
        for i in 0..50 {
            std::fs::write(t.path().join("f"), format!("{i}")).unwrap();
        }
        w.changed().await.unwrap();
        let more = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
        assert!(more.is_err(), "the burst settled into one change");
    }
}
