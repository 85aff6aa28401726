//! Turns lock-directory changes into [`LockEvent`]s with inotify only: one
//! watch on the lock root, one per app directory, one per service directory.
//! Queue overflow, the root vanishing and start-up are all handled by one
//! full rescan on a fresh inotify instance.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::inotify::AsyncInotify;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InotifyEvent, WatchDescriptor};
use tokio::sync::mpsc;

use super::fs::{self as lockfs, FsError, ServiceScan, Skipped};
use super::holders;
use super::state::{LockEvent, LOCK_FILE_NAMES};
use crate::names::{AppName, ServiceId, ServiceName};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Root,
    App(AppName),
    Service(ServiceId),
}

fn dir_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

fn service_mask() -> AddWatchFlags {
    // Close events tell us a holder may have gone (flock(1) exiting).
    dir_mask() | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_CLOSE_NOWRITE
}

pub struct Watcher {
    root_path: PathBuf,
    proc_root: PathBuf,
    inotify: AsyncInotify,
    nodes: HashMap<WatchDescriptor, Node>,
}

/// What the initial scan found, for the table and the logs.
pub struct Scan {
    pub services: Vec<ServiceScan>,
    pub skipped: Vec<Skipped>,
}

impl Watcher {
    /// Creates the lock root if needed, watches it and scans it.
    pub fn start(root_path: &Path) -> Result<(Self, Scan), FsError> {
        let inotify = new_inotify(root_path)?;
        let mut w = Watcher {
            root_path: root_path.to_owned(),
            proc_root: PathBuf::from("/proc"),
            inotify,
            nodes: HashMap::new(),
        };
        let scan = w.watch_and_scan_root()?;
        Ok((w, scan))
    }

    /// Runs until the receiver goes away.
    pub async fn run(mut self, tx: mpsc::Sender<LockEvent>, initial: Vec<ServiceId>) {
        self.send_holders(&tx, initial.into_iter().collect()).await;
        loop {
            let events = match self.inotify.next_batch().await {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::error!(error = %e, "inotify read failed; rescanning");
                    vec![]
                }
            };
            if !self.handle_batch(events, &tx).await {
                return;
            }
        }
    }

    /// Returns false when the table side has gone away.
    async fn handle_batch(
        &mut self,
        events: Vec<InotifyEvent>,
        tx: &mpsc::Sender<LockEvent>,
    ) -> bool {
        let mut rescan = events.is_empty();
        let mut out = Vec::new();
        let mut inspect: BTreeSet<ServiceId> = BTreeSet::new();
        let mut closed: BTreeSet<ServiceId> = BTreeSet::new();
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                tracing::warn!("inotify queue overflowed; rescanning the lock root");
                rescan = true;
                continue;
            }
            if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.nodes.remove(&ev.wd);
                continue;
            }
            let Some(node) = self.nodes.get(&ev.wd).cloned() else {
                continue;
            };
            let gone_self = ev
                .mask
                .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF);
            let name = ev.name.as_ref().and_then(|n| n.to_str()).map(str::to_owned);
            let appeared = ev
                .mask
                .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
            let vanished = ev
                .mask
                .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM);
            match node {
                Node::Root if gone_self => {
                    tracing::warn!(root = %self.root_path.display(), "lock root removed; recreating it");
                    rescan = true;
                }
                Node::Root => {
                    let Some(name) = name else { continue };
                    if appeared {
                        self.app_appeared(&name, &mut out);
                    } else if vanished {
                        if let Ok(app) = AppName::new(name) {
                            self.forget(|n| {
                                matches!(n, Node::App(a) if *a == app)
                                    || matches!(n, Node::Service(id) if id.app == app)
                            });
                            inspect.retain(|id| id.app != app);
                            out.push(LockEvent::AppRemoved(app));
                        }
                    }
                }
                Node::App(app) => {
                    let Some(name) = name else { continue };
                    if gone_self {
                        continue; // the root's event reports it
                    }
                    if appeared {
                        if let Some(id) = self.service_appeared(&app, &name) {
                            inspect.insert(id);
                        }
                    } else if vanished {
                        if let Ok(service) = ServiceName::new(name) {
                            let id = ServiceId::new(app.clone(), service);
                            self.forget(|n| matches!(n, Node::Service(s) if *s == id));
                            inspect.remove(&id);
                            out.push(LockEvent::ServiceRemoved(id));
                        }
                    }
                }
                Node::Service(id) => {
                    let Some(name) = name else { continue };
                    if !LOCK_FILE_NAMES.contains(&name.as_str()) {
                        continue;
                    }
                    // A writer closing may have just written an own-lock tag
                    // (create, then write): read the entry again. Readers
                    // closing (our own tag reads too) only move holders.
                    if appeared || vanished || ev.mask.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                        inspect.insert(id);
                    } else {
                        closed.insert(id);
                    }
                }
            }
        }

        if rescan {
            match self.rebuild() {
                Ok(scan) => {
                    let ids = scan
                        .services
                        .iter()
                        .filter(|(_, e)| !e.is_empty())
                        .map(|(id, _)| id.clone())
                        .collect();
                    if tx.send(LockEvent::Resync(scan.services)).await.is_err() {
                        return false;
                    }
                    self.send_holders(tx, ids).await;
                }
                Err(e) => tracing::error!(error = %e, "cannot rescan the lock root"),
            }
            return true;
        }

        let root = self.open_root_quiet();
        for id in &inspect {
            let entries = root
                .as_ref()
                .and_then(|r| lockfs::open_service_dir(r.as_fd(), &self.root_path, id).ok())
                .map(|d| lockfs::read_lock_entries(d.as_fd()));
            match entries {
                Some(entries) => {
                    if !entries.is_empty() {
                        closed.insert(id.clone());
                    }
                    out.push(LockEvent::ServiceObserved {
                        id: id.clone(),
                        entries,
                    });
                }
                None => out.push(LockEvent::ServiceRemoved(id.clone())),
            }
        }
        for ev in out {
            if tx.send(ev).await.is_err() {
                return false;
            }
        }
        // Holder scans come after the lock events so a new lock is reported
        // (and inhibited) before /proc is walked.
        self.send_holders(tx, closed).await;
        true
    }

    async fn send_holders(&self, tx: &mpsc::Sender<LockEvent>, ids: BTreeSet<ServiceId>) {
        if ids.is_empty() {
            return;
        }
        let Some(root) = self.open_root_quiet() else {
            return;
        };
        let mut files: Vec<(ServiceId, Vec<holders::FileKey>)> = Vec::new();
        for id in ids {
            if let Ok(dir) = lockfs::open_service_dir(root.as_fd(), &self.root_path, &id) {
                let keys = lockfs::lock_file_keys(dir.as_fd());
                if !keys.is_empty() {
                    files.push((id, keys));
                }
            }
        }
        let all: Vec<holders::FileKey> = files.iter().flat_map(|(_, k)| k.clone()).collect();
        // Walking /proc takes milliseconds: off the event loop, so lock
        // events and the inhibitor never wait behind it.
        let proc_root = self.proc_root.clone();
        let Ok(found) = tokio::task::spawn_blocking(move || holders::scan(&proc_root, &all)).await
        else {
            return;
        };
        for (id, keys) in files {
            let mut hs: Vec<_> = keys
                .iter()
                .filter_map(|k| found.get(k))
                .flatten()
                .cloned()
                .collect();
            hs.sort();
            hs.dedup_by(|a, b| a.pid == b.pid);
            if tx
                .send(LockEvent::HoldersObserved { id, holders: hs })
                .await
                .is_err()
            {
                return;
            }
        }
    }

    fn open_root_quiet(&self) -> Option<OwnedFd> {
        lockfs::open_root(&self.root_path).ok()
    }

    fn forget(&mut self, pred: impl Fn(&Node) -> bool) {
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

    fn add_watch(
        &mut self,
        dir: BorrowedFd<'_>,
        node: Node,
        mask: AddWatchFlags,
    ) -> Result<(), Errno> {
        // Watching through the opened fd: the path can't be swapped for a
        // symlink between our no-follow open and the watch.
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let wd = self.inotify.add(path.as_ref(), mask)?;
        self.nodes.insert(wd, node);
        Ok(())
    }

    fn app_appeared(&mut self, name: &str, out: &mut Vec<LockEvent>) {
        let path = self.root_path.join(name);
        let app = match AppName::new(name) {
            Ok(a) => a,
            Err(e) => return report_skipped(&path, &e.to_string()),
        };
        let Some(root) = self.open_root_quiet() else {
            return;
        };
        match self.watch_app(root.as_fd(), &app) {
            Ok(found) => out.extend(
                found
                    .into_iter()
                    .map(|(id, entries)| LockEvent::ServiceObserved { id, entries }),
            ),
            Err(e) => report_fs_error(&e),
        }
    }

    fn service_appeared(&mut self, app: &AppName, name: &str) -> Option<ServiceId> {
        let path = self.root_path.join(app.as_str()).join(name);
        let service = match ServiceName::new(name) {
            Ok(s) => s,
            Err(e) => {
                report_skipped(&path, &e.to_string());
                return None;
            }
        };
        let id = ServiceId::new(app.clone(), service);
        let root = self.open_root_quiet()?;
        match lockfs::open_service_dir(root.as_fd(), &self.root_path, &id) {
            Ok(dir) => {
                if let Err(e) =
                    self.add_watch(dir.as_fd(), Node::Service(id.clone()), service_mask())
                {
                    tracing::error!(service = %id, error = %e, "cannot watch service directory");
                }
                Some(id)
            }
            Err(e) => {
                report_fs_error(&e);
                None
            }
        }
    }

    /// Watches an app directory and its services, then reads them.
    fn watch_app(
        &mut self,
        root: BorrowedFd<'_>,
        app: &AppName,
    ) -> Result<Vec<ServiceScan>, FsError> {
        let app_path = self.root_path.join(app.as_str());
        let app_dir = lockfs::open_subdir(root, app.as_str(), &app_path)?;
        self.add_watch(app_dir.as_fd(), Node::App(app.clone()), dir_mask())
            .map_err(|source| FsError::Io {
                path: app_path.clone(),
                source,
            })?;
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
            let Ok(dir) = lockfs::open_subdir(app_dir.as_fd(), &name, &shown) else {
                continue;
            };
            self.add_watch(dir.as_fd(), Node::Service(id.clone()), service_mask())
                .map_err(|source| FsError::Io {
                    path: shown.clone(),
                    source,
                })?;
            found.push((id, lockfs::read_lock_entries(dir.as_fd())));
        }
        Ok(found)
    }

    fn watch_and_scan_root(&mut self) -> Result<Scan, FsError> {
        let root = lockfs::open_root(&self.root_path)?;
        self.add_watch(root.as_fd(), Node::Root, dir_mask())
            .map_err(|source| FsError::Io {
                path: self.root_path.clone(),
                source,
            })?;
        let (apps, mut skipped) = lockfs::list_subdirs(root.as_fd(), &self.root_path)?;
        let mut services = Vec::new();
        for name in apps {
            let path = self.root_path.join(&name);
            match AppName::new(name.as_str()) {
                Ok(app) => match self.watch_app(root.as_fd(), &app) {
                    Ok(found) => services.extend(found),
                    Err(e) => skipped.push(Skipped {
                        path,
                        reason: e.to_string(),
                    }),
                },
                Err(e) => skipped.push(Skipped {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
        skipped
            .iter()
            .for_each(|s| report_skipped(&s.path, &s.reason));
        Ok(Scan { services, skipped })
    }

    /// A fresh inotify instance and a full scan: nothing is missed in between
    /// because every directory is watched before it is read.
    fn rebuild(&mut self) -> Result<Scan, FsError> {
        self.inotify = new_inotify(&self.root_path)?;
        self.nodes.clear();
        self.watch_and_scan_root()
    }
}

fn new_inotify(root_path: &Path) -> Result<AsyncInotify, FsError> {
    AsyncInotify::new().map_err(|e| FsError::Io {
        path: root_path.to_owned(),
        source: lockfs::errno_of(&e),
    })
}

fn report_skipped(path: &Path, reason: &str) {
    tracing::warn!(path = %path.display(), reason, "skipping lock directory entry");
}

fn report_fs_error(e: &FsError) {
    tracing::warn!(error = %e, "skipping lock directory entry");
}
