//! Turns lock-directory changes into [`LockEvent`]s with inotify only: one
//! watch on the lock root, one per app directory, one per service directory.
//!
//! A failure to look is never reported as "gone": a service that cannot be
//! read becomes `ServiceUnreadable`, a lock root that cannot be scanned
//! makes the table `Blind`, and either schedules a full rebuild, retried
//! with a bounded back-off until it succeeds. A rebuild builds a fresh
//! inotify instance and scans it completely before it replaces the old one,
//! so a failed rebuild never leaves us with fewer watches than before.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InotifyEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;

mod tree;

use super::fs::{self as lockfs, FsError};
use super::holders::ScanRequest;
use super::state::{LockEvent, LOCK_FILE_NAMES};
use crate::liveness::Beat;
use crate::names::{AppName, ServiceId, ServiceName};
use crate::timer::sleep_until;
use tree::{
    read_service, report_fs_error, report_skipped, scan, service_mask, watch_app, Node, Watches,
};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub struct Watcher {
    root_path: PathBuf,
    /// `None` only when no instance could ever be made (then we are blind).
    watches: Option<Watches>,
    events: mpsc::Sender<LockEvent>,
    holders: mpsc::Sender<ScanRequest>,
    beat: Beat,
    rebuild_at: Option<Instant>,
    backoff: Duration,
    /// The last failure reported, so a retry loop logs it once.
    failing: Option<String>,
}

impl Watcher {
    /// Creates the lock root if needed, watches and scans it, and sends the
    /// result (a `Resync`, or `Blind` with a rebuild scheduled) before it
    /// returns, so the table is complete before holdfast says it is ready.
    pub async fn start(
        root_path: &Path,
        events: mpsc::Sender<LockEvent>,
        holders: mpsc::Sender<ScanRequest>,
        beat: Beat,
    ) -> Watcher {
        let mut w = Watcher {
            root_path: root_path.to_owned(),
            watches: None,
            events,
            holders,
            beat,
            rebuild_at: None,
            backoff: RETRY_MIN,
            failing: None,
        };
        w.rebuild().await;
        w
    }

    /// Runs until the table side has gone away.
    pub async fn run(mut self) {
        loop {
            let rebuild_at = self.rebuild_at;
            let ok = tokio::select! {
                batch = next_batch(self.watches.as_mut()) => match batch {
                    Ok(events) => self.handle_batch(events).await,
                    Err(e) => {
                        tracing::error!(error = %e, "inotify read failed; rebuilding the lock root watch");
                        self.rebuild().await
                    }
                },
                _ = sleep_until(rebuild_at) => self.rebuild().await,
                g = self.beat.asked() => {
                    self.beat.answer(g);
                    true
                }
            };
            if !ok {
                return;
            }
        }
    }

    /// Returns false when the table side has gone away.
    async fn handle_batch(&mut self, events: Vec<InotifyEvent>) -> bool {
        let Some(watches) = self.watches.as_mut() else {
            return true;
        };
        let mut rescan = false;
        let mut out = Vec::new();
        let mut inspect: BTreeSet<ServiceId> = BTreeSet::new();
        let mut closed: BTreeSet<ServiceId> = BTreeSet::new();
        let mut appeared_apps: Vec<String> = Vec::new();
        let mut appeared_services: Vec<(AppName, String)> = Vec::new();
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                tracing::warn!("inotify queue overflowed; rescanning the lock root");
                rescan = true;
                continue;
            }
            if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                // The root's watch going means it is gone or unmounted.
                if watches.nodes.remove(&ev.wd) == Some(Node::Root) {
                    rescan = true;
                }
                continue;
            }
            let Some(node) = watches.nodes.get(&ev.wd).cloned() else {
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
                    let Some(name) = name.filter(|n| n != super::root::MARKER) else {
                        continue;
                    };
                    if appeared {
                        appeared_apps.push(name);
                    } else if vanished {
                        if let Ok(app) = AppName::new(name) {
                            watches.forget(|n| {
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
                        appeared_services.push((app, name));
                    } else if vanished {
                        if let Ok(service) = ServiceName::new(name) {
                            let id = ServiceId::new(app.clone(), service);
                            watches.forget(|n| matches!(n, Node::Service(s) if *s == id));
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
            return self.rebuild().await;
        }

        let root = lockfs::open_root(&self.root_path);
        for name in appeared_apps {
            match &root {
                Ok(root) => self.app_appeared(root.as_fd(), &name, &mut out),
                Err(e) => self.failed(e, &mut out),
            }
        }
        for (app, name) in appeared_services {
            match &root {
                Ok(root) => {
                    if let Some(id) = self.service_appeared(root.as_fd(), &app, &name, &mut out) {
                        inspect.insert(id);
                    }
                }
                Err(e) => self.failed(e, &mut out),
            }
        }
        let mut scans = Vec::new();
        for id in inspect {
            let read = match &root {
                Ok(root) => read_service(root.as_fd(), &self.root_path, &id),
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(Some(entries)) => {
                    if !entries.is_empty() {
                        scans.push(ScanRequest {
                            id: id.clone(),
                            keys: entries.iter().map(|e| (e.dev, e.ino)).collect(),
                        });
                        closed.remove(&id);
                    }
                    out.push(LockEvent::ServiceObserved { id, entries });
                }
                Ok(None) => out.push(LockEvent::ServiceRemoved(id)),
                Err(reason) => {
                    self.schedule_rebuild(&reason);
                    out.push(LockEvent::ServiceUnreadable { id, reason });
                }
            }
        }
        if let Ok(root) = &root {
            for id in closed {
                if let Ok(dir) = lockfs::open_service_dir(root.as_fd(), &self.root_path, &id) {
                    let keys = lockfs::lock_file_keys(dir.as_fd());
                    if !keys.is_empty() {
                        scans.push(ScanRequest { id, keys });
                    }
                }
            }
        }
        for ev in out {
            if self.events.send(ev).await.is_err() {
                return false;
            }
        }
        // Holder scans walk /proc elsewhere: the next batch never waits.
        self.ask_holders(scans);
        true
    }

    fn ask_holders(&self, scans: Vec<ScanRequest>) {
        for s in scans {
            // Best effort: holders are a hint, never a decision.
            let _ = self.holders.try_send(s);
        }
    }

    /// A failure to look somewhere: everything binds until a rebuild works.
    fn failed(&mut self, e: &FsError, out: &mut Vec<LockEvent>) {
        let reason = e.to_string();
        self.schedule_rebuild(&reason);
        out.push(LockEvent::Blind(reason));
    }

    fn schedule_rebuild(&mut self, reason: &str) {
        if self.failing.as_deref() != Some(reason) {
            tracing::error!(root = %self.root_path.display(), reason,
                "cannot read the lock directories; what cannot be read counts as locked until a rescan succeeds");
            self.failing = Some(reason.to_owned());
        }
        if self.rebuild_at.is_none() {
            self.rebuild_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(RETRY_MAX);
        }
    }

    fn app_appeared(&mut self, root: BorrowedFd<'_>, name: &str, out: &mut Vec<LockEvent>) {
        let path = self.root_path.join(name);
        let app = match AppName::new(name) {
            Ok(a) => a,
            Err(e) => return report_skipped(&path, &e.to_string()),
        };
        let Some(watches) = self.watches.as_mut() else {
            return;
        };
        match watch_app(watches, &self.root_path, root, &app) {
            Ok(found) => out.extend(
                found
                    .into_iter()
                    .map(|(id, entries)| LockEvent::ServiceObserved { id, entries }),
            ),
            Err(e) if e.skipped() => report_fs_error(&e),
            Err(e) if e.vanished() => {}
            Err(e) => self.failed(&e, out),
        }
    }

    /// Watches a new service directory; `None` when there is nothing to read.
    fn service_appeared(
        &mut self,
        root: BorrowedFd<'_>,
        app: &AppName,
        name: &str,
        out: &mut Vec<LockEvent>,
    ) -> Option<ServiceId> {
        let path = self.root_path.join(app.as_str()).join(name);
        let service = match ServiceName::new(name) {
            Ok(s) => s,
            Err(e) => {
                report_skipped(&path, &e.to_string());
                return None;
            }
        };
        let id = ServiceId::new(app.clone(), service);
        let watched = lockfs::open_service_dir(root, &self.root_path, &id).and_then(|dir| {
            let watches = self.watches.as_mut().expect("a batch came from it");
            watches
                .add(dir.as_fd(), Node::Service(id.clone()), service_mask())
                .map_err(|source| FsError::Io {
                    path: path.clone(),
                    source,
                })
        });
        match watched {
            Ok(()) => Some(id),
            Err(e) if e.skipped() => {
                report_fs_error(&e);
                None
            }
            Err(e) if e.vanished() => None,
            Err(e) => {
                // Unwatched, a lock there could come and go unseen.
                let reason = e.to_string();
                self.schedule_rebuild(&reason);
                out.push(LockEvent::ServiceUnreadable { id, reason });
                None
            }
        }
    }

    /// A fresh instance, every directory watched and read, then swapped in.
    /// Returns false when the table side has gone away.
    async fn rebuild(&mut self) -> bool {
        self.rebuild_at = None;
        let started = std::time::Instant::now();
        match scan(&self.root_path) {
            Ok(scan) => {
                self.watches = Some(scan.watches);
                self.backoff = RETRY_MIN;
                if self.failing.take().is_some() {
                    tracing::info!(root = %self.root_path.display(),
                        "lock directories readable again; rescanned");
                }
                tracing::debug!(
                    services = scan.services.len(),
                    scan_us = started.elapsed().as_micros() as u64,
                    "lock root scanned"
                );
                let scans: Vec<ScanRequest> = scan
                    .services
                    .iter()
                    .filter(|(_, e)| !e.is_empty())
                    .map(|(id, e)| ScanRequest {
                        id: id.clone(),
                        keys: e.iter().map(|e| (e.dev, e.ino)).collect(),
                    })
                    .collect();
                if self
                    .events
                    .send(LockEvent::Resync(scan.services))
                    .await
                    .is_err()
                {
                    return false;
                }
                self.ask_holders(scans);
                true
            }
            Err(e) => {
                let reason = e.to_string();
                self.schedule_rebuild(&reason);
                self.events.send(LockEvent::Blind(reason)).await.is_ok()
            }
        }
    }
}

/// The next batch of the current instance; never resolves without one.
async fn next_batch(watches: Option<&mut Watches>) -> Result<Vec<InotifyEvent>, Errno> {
    match watches {
        Some(w) => w.inotify.next_batch().await,
        None => std::future::pending().await,
    }
}
