//! The watched tree: one inotify instance and what each watch is, and the
//! complete scan that builds one. Any failure to look fails a scan whole:
//! a partial scan would read as "those services are gone".

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, WatchDescriptor};

use crate::inotify::AsyncInotify;
use crate::locks::fs::{self as lockfs, FsError, ServiceScan};
use crate::locks::state::LockEntry;
use crate::names::{AppName, ServiceId, ServiceName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Root,
    App(AppName),
    Service(ServiceId),
}

pub(super) fn dir_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

pub(super) fn service_mask() -> AddWatchFlags {
    // Close events tell us a holder may have gone (flock(1) exiting).
    dir_mask() | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_CLOSE_NOWRITE
}

/// One inotify instance and what each of its watches is.
pub(super) struct Watches {
    pub inotify: AsyncInotify,
    pub nodes: HashMap<WatchDescriptor, Node>,
}

impl Watches {
    pub fn new() -> Result<Self, Errno> {
        let inotify = AsyncInotify::new().map_err(|e| lockfs::errno_of(&e))?;
        Ok(Self {
            inotify,
            nodes: HashMap::new(),
        })
    }

    /// Watches through the opened fd: the path can't be swapped for a
    /// symlink between our no-follow open and the watch.
    pub fn add(
        &mut self,
        dir: BorrowedFd<'_>,
        node: Node,
        mask: AddWatchFlags,
    ) -> Result<(), Errno> {
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let wd = self.inotify.add(path.as_ref(), mask)?;
        self.nodes.insert(wd, node);
        Ok(())
    }

    pub fn forget(&mut self, pred: impl Fn(&Node) -> bool) {
        let doomed: Vec<WatchDescriptor> = self
            .nodes
            .iter()
            .filter(|(_, n)| pred(n))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in doomed {
            self.nodes.remove(&wd);
            // A renamed-away directory keeps its watch unless removed.
            self.inotify.remove(wd);
        }
    }
}

/// What a complete scan found.
pub(super) struct Scan {
    pub services: Vec<ServiceScan>,
    pub watches: Watches,
}

/// Reads one service directory: `Ok(None)` when it is gone (or no longer
/// a directory), `Err` when it could not be read.
pub(super) fn read_service(
    root: BorrowedFd<'_>,
    root_path: &Path,
    id: &ServiceId,
) -> Result<Option<Vec<LockEntry>>, String> {
    match lockfs::open_service_dir(root, root_path, id) {
        Ok(dir) => lockfs::read_lock_entries(dir.as_fd())
            .map(Some)
            .map_err(|e| format!("{}: {e}", root_path.join(id.to_string()).display())),
        Err(e) if e.vanished() => Ok(None),
        Err(e) if e.skipped() => {
            report_fs_error(&e);
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A complete scan on a new instance. Any failure to look fails it whole:
/// a partial scan would read as "those services are gone".
pub(super) fn scan(root_path: &Path) -> Result<Scan, FsError> {
    let io = |source: Errno| FsError::Io {
        path: root_path.to_owned(),
        source,
    };
    let mut watches = Watches::new().map_err(io)?;
    let root: OwnedFd = lockfs::open_root(root_path)?;
    watches
        .add(root.as_fd(), Node::Root, dir_mask())
        .map_err(io)?;
    let (apps, skipped) = lockfs::list_subdirs(root.as_fd(), root_path)?;
    skipped
        .iter()
        .for_each(|s| report_skipped(&s.path, &s.reason));
    let mut services = Vec::new();
    for name in apps {
        let path = root_path.join(&name);
        let app = match AppName::new(name.as_str()) {
            Ok(a) => a,
            Err(e) => {
                report_skipped(&path, &e.to_string());
                continue;
            }
        };
        match watch_app(&mut watches, root_path, root.as_fd(), &app) {
            Ok(found) => services.extend(found),
            Err(e) if e.skipped() => report_fs_error(&e),
            Err(e) if e.vanished() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Scan { services, watches })
}

/// Watches an app directory and its services, then reads them.
pub(super) fn watch_app(
    watches: &mut Watches,
    root_path: &Path,
    root: BorrowedFd<'_>,
    app: &AppName,
) -> Result<Vec<ServiceScan>, FsError> {
    let app_path = root_path.join(app.as_str());
    let io = |path: &Path, source: Errno| FsError::Io {
        path: path.to_owned(),
        source,
    };
    let app_dir = lockfs::open_subdir(root, app.as_str(), &app_path)?;
    watches
        .add(app_dir.as_fd(), Node::App(app.clone()), dir_mask())
        .map_err(|e| io(&app_path, e))?;
    let (names, skipped) = lockfs::list_subdirs(app_dir.as_fd(), &app_path)?;
    skipped
        .iter()
        .for_each(|s| report_skipped(&s.path, &s.reason));
    let mut found = Vec::new();
    for name in names {
        let shown = app_path.join(&name);
        let service = match ServiceName::new(name.as_str()) {
            Ok(s) => s,
            Err(e) => {
                report_skipped(&shown, &e.to_string());
                continue;
            }
        };
        let id = ServiceId::new(app.clone(), service);
        let dir = match lockfs::open_subdir(app_dir.as_fd(), &name, &shown) {
            Ok(d) => d,
            Err(e) if e.skipped() => {
                report_fs_error(&e);
                continue;
            }
            Err(e) if e.vanished() => continue,
            Err(e) => return Err(e),
        };
        watches
            .add(dir.as_fd(), Node::Service(id.clone()), service_mask())
            .map_err(|e| io(&shown, e))?;
        let entries = lockfs::read_lock_entries(dir.as_fd()).map_err(|e| io(&shown, e))?;
        found.push((id, entries));
    }
    Ok(found)
}

pub(super) fn report_skipped(path: &Path, reason: &str) {
    tracing::warn!(path = %path.display(), reason, "skipping lock directory entry");
}

pub(super) fn report_fs_error(e: &FsError) {
    tracing::warn!(error = %e, "skipping lock directory entry");
}
