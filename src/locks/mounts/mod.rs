//! Containers whose lock mount is not the directory holdfast watches (a
//! lock root changed under running containers, or a container made by
//! something else): their app may hold a lock no watch sees. This task
//! lists the managed containers' lock mounts at start and at every
//! creation or removal the engine reports, and sends the table the
//! complete list of misplaced services (`LockEvent::Mounts`): they count
//! as locked (kind `unknown`) until their containers are made again.
//!
//! Making them again is the app task's ordinary work (the lock root is in
//! the config hash when it is not the default, so a changed one changes
//! every container's hash), behind the gate like any change. What lets it
//! through is this task: when an app waits only on its misplaced services,
//! holdfast takes its own lock in each directory those containers see
//! (`old`); if the app does not hold it there, the services count as held
//! by holdfast, the pass goes on under the app's locks in the watched
//! root, and the locks in the old directories go once the containers are
//! gone (or the pass ends without that). A directory holdfast cannot take
//! a lock in (a tmpfs, a volume, nothing mounted, gone, a symlink) keeps
//! the service locked until a forced update (`holdfast update --force`)
//! or the lock override.

mod apps;
mod check;
mod old;
#[cfg(test)]
mod tests;
mod wake;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::Settings;
use crate::engine::{Engine, EngineError, MountedContainer};
use crate::locks::state::{LockEvent, Misplaced};
use crate::model::{AppState, UpdateStatus};
use crate::names::{AppName, ServiceId};
use crate::timer::sleep_until;
use apps::{busy, by_app, relevant, takeable, waits_only_on};
pub use check::{misplaced, Finding};
use old::{OldLocks, TakeError};
use wake::Wakes;

/// A burst of creations and removals (an update) is listed once.
const SETTLE: Duration = Duration::from_millis(100);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

type Changes = Pin<Box<dyn Stream<Item = Result<(), EngineError>> + Send>>;

pub struct MountWatch {
    /// The lock root in force (fixed for the daemon's life).
    pub lock_root: PathBuf,
    pub state_dir: PathBuf,
    pub settings: watch::Receiver<Arc<Settings>>,
    /// The app tasks' states: when an app waits only on misplaced
    /// services, holdfast takes the locks that let it through.
    pub apps: watch::Receiver<UpdateStatus>,
    pub events: mpsc::Sender<LockEvent>,
}

/// What the loop keeps between looks.
struct Seen {
    findings: BTreeMap<ServiceId, Finding>,
    sent: Option<BTreeMap<ServiceId, Misplaced>>,
    /// The states of the apps that matter here, last looked at.
    apps: BTreeMap<String, (AppState, Vec<String>)>,
    /// The last failure to list, said once.
    failing: Option<String>,
    /// The last "the app holds its lock there", said once per app.
    contended: BTreeMap<AppName, String>,
    /// Where an app's lock stopped a take: looked at again when it goes.
    wakes: Wakes,
}

impl MountWatch {
    pub async fn run(mut self) {
        let mut old = OldLocks::new(&self.state_dir);
        old = blocking(old, |o| {
            if let Err(e) = o.load() {
                tracing::error!(error = %e, "holdfast's locks in other directories: {e}");
            }
            for p in o.retry() {
                tracing::info!(path = %p, "removed holdfast's leftover lock {p}");
            }
        })
        .await;
        let mut socket = self.settings.borrow_and_update().engine_socket();
        let mut engine: Option<Engine> = None;
        let mut changes: Option<Changes> = None;
        let mut look_at = Some(Instant::now());
        let mut retry_at: Option<Instant> = None;
        let mut backoff = RETRY_MIN;
        let mut seen = Seen {
            findings: BTreeMap::new(),
            sent: None,
            apps: BTreeMap::new(),
            failing: None,
            contended: BTreeMap::new(),
            wakes: Wakes::default(),
        };
        loop {
            tokio::select! {
                _ = sleep_until(look_at) => {
                    look_at = None;
                    let since = crate::model::now_usec() / 1_000_000;
                    let listed = match engine.get_or_insert_with_result(&socket) {
                        Ok(e) => {
                            // Subscribed from before the listing: nothing
                            // between the two is missed.
                            if changes.is_none() {
                                changes = Some(Box::pin(e.container_changes(since.saturating_sub(1))));
                            }
                            e.lock_mounts().await
                        }
                        Err(e) => Err(e),
                    };
                    match listed {
                        Ok(list) => {
                            backoff = RETRY_MIN;
                            if seen.failing.take().is_some() {
                                tracing::info!("the containers' lock mounts are listed again");
                            }
                            let (o, again) = self.settle(old, list, &mut seen).await;
                            old = o;
                            retry_at = again.map(|d| Instant::now() + d);
                            if !self.publish(&old, &mut seen).await {
                                return;
                            }
                        }
                        Err(e) => {
                            let why = e.to_string();
                            if seen.failing.as_ref() != Some(&why) {
                                tracing::warn!(error = %why, "cannot list the containers' lock mounts: {why}; what was listed last stays, looked at again");
                                seen.failing = Some(why);
                            }
                            changes = None;
                            look_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(RETRY_MAX);
                        }
                    }
                }
                ev = next_change(changes.as_mut()) => match ev {
                    Some(Ok(())) => look_at = soonest(look_at, Instant::now() + SETTLE),
                    // The engine went away: listed again when it is back.
                    _ => {
                        changes = None;
                        look_at = soonest(look_at, Instant::now() + backoff);
                    }
                },
                _ = sleep_until(retry_at) => {
                    retry_at = None;
                    look_at = Some(Instant::now());
                }
                _ = seen.wakes.gone() => {
                    seen.wakes.clear();
                    look_at = Some(Instant::now());
                }
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    let now = self.settings.borrow_and_update().engine_socket();
                    if now != socket {
                        socket = now;
                        engine = None;
                        changes = None;
                        look_at = Some(Instant::now());
                    }
                }
                r = self.apps.changed() => {
                    if r.is_err() { return }
                    let apps = relevant(&self.apps.borrow_and_update(), &seen.findings, &old);
                    if apps != seen.apps {
                        look_at = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Compares what the containers mount with the watched directories,
    /// then takes or gives back holdfast's locks in the directories they
    /// see. Returns when a take is to be tried again at the latest (a
    /// contended one sooner, when its lock file goes: `seen.wakes`).
    async fn settle(
        &self,
        mut old: OldLocks,
        list: Vec<MountedContainer>,
        seen: &mut Seen,
    ) -> (OldLocks, Option<Duration>) {
        let root = self.lock_root.clone();
        let findings = tokio::task::spawn_blocking(move || {
            let real_dir =
                |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir());
            misplaced(&list, &root, crate::locks::root::resolved, real_dir)
        })
        .await
        .unwrap_or_default();
        let status = self.apps.borrow().clone();
        seen.apps = relevant(&status, &findings, &old);
        let by_app = by_app(&findings);
        // Give back what no app is being made again under: the table hears
        // first that those services bind again, then the files go (never a
        // moment in which an app's lock there would read as holdfast's).
        let mut giving_back = Vec::new();
        for app in old.held_apps() {
            let services = by_app.get(&app);
            if services.is_some_and(|s| busy(status.apps.get(app.as_str()), s)) {
                continue;
            }
            let dirs = old.held_dirs(&app);
            old.detach(&app);
            giving_back.push((app, services.is_some(), dirs));
        }
        if !giving_back.is_empty() {
            seen.findings = findings.clone();
            // The table gone is the daemon stopping: the files go anyway.
            let _ = self.publish(&old, seen).await;
        }
        for (app, still, dirs) in giving_back {
            let failures;
            (old, failures) = blocking_with(old, move |o| o.remove_detached(&app)).await;
            let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            match (still, failures.is_empty()) {
                (false, true) => tracing::info!(dirs = ?shown,
                    "the containers were made again; holdfast gave back its locks in {}", shown.join(", ")),
                (true, true) => tracing::info!(dirs = ?shown,
                    "the update under those locks ended without making the containers again; holdfast gave back its locks in {}, they count as locked again", shown.join(", ")),
                (_, false) => tracing::error!(failures = ?failures,
                    "cannot remove holdfast's locks in {}: {}; retried", shown.join(", "), failures.join(", ")),
            }
        }
        // Take what lets an app through that waits only on these.
        let mut again = None;
        seen.wakes.clear();
        for (app, services) in &by_app {
            if old.holds(app) || !waits_only_on(status.apps.get(app.as_str()), services) {
                continue;
            }
            let Some(dirs) = takeable(services) else {
                continue;
            };
            let (a, d) = (app.clone(), dirs.clone());
            let taken;
            (old, taken) = blocking_with(old, move |o| o.take(&a, &d)).await;
            let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            match taken {
                Ok(()) => {
                    seen.contended.remove(app);
                    tracing::info!(app = %app, dirs = ?shown,
                        "holdfast holds the lock in {} (what the containers of app {app} see): they are made again under the app's locks", shown.join(", "));
                }
                Err(e) => {
                    let mut wait = RETRY_MAX;
                    // Gone before it could be watched: soon.
                    if let TakeError::Held(path) = &e {
                        if !seen.wakes.on_removal(Path::new(path)) {
                            wait = RETRY_MIN;
                        }
                    }
                    again = Some(again.map_or(wait, |a: Duration| a.min(wait)));
                    let why = e.to_string();
                    if seen.contended.get(app) != Some(&why) {
                        match e {
                            TakeError::Held(_) => tracing::info!(app = %app, reason = %why,
                                "app {app} holds its lock where its containers see it ({why}); they are made again once it lets go"),
                            TakeError::Failed(_) => tracing::warn!(app = %app, reason = %why,
                                "cannot take holdfast's lock in {}: {why}; tried again", shown.join(", ")),
                        }
                        seen.contended.insert(app.clone(), why);
                    }
                }
            }
        }
        if old.has_leftovers() {
            (old, _) = blocking_with(old, |o| o.retry()).await;
            if old.has_leftovers() {
                again = Some(again.map_or(RETRY_MAX, |a| a.min(RETRY_MAX)));
            }
        }
        seen.findings = findings;
        (old, again)
    }

    /// Sends the misplaced services to the table when they changed; false
    /// when the table side has gone away.
    async fn publish(&self, old: &OldLocks, seen: &mut Seen) -> bool {
        let now: BTreeMap<ServiceId, Misplaced> = seen
            .findings
            .iter()
            .map(|(id, f)| {
                let held_dirs = old.held_dirs(&id.app);
                let held =
                    old.holds(&id.app) && f.dirs.as_ref().is_some_and(|d| d.is_subset(&held_dirs));
                let m = Misplaced {
                    reason: f.reason.clone(),
                    held,
                };
                (id.clone(), m)
            })
            .collect();
        if seen.sent.as_ref() == Some(&now) {
            return true;
        }
        seen.sent = Some(now.clone());
        self.events.send(LockEvent::Mounts(now)).await.is_ok()
    }
}

trait EngineSlot {
    fn get_or_insert_with_result(&mut self, socket: &Path) -> Result<&Engine, EngineError>;
}

impl EngineSlot for Option<Engine> {
    fn get_or_insert_with_result(&mut self, socket: &Path) -> Result<&Engine, EngineError> {
        if self.is_none() {
            *self = Some(Engine::new(socket)?);
        }
        Ok(self.as_ref().expect("just made"))
    }
}

fn soonest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

async fn next_change(changes: Option<&mut Changes>) -> Option<Result<(), EngineError>> {
    match changes {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// Runs `f` on the blocking pool with the locks moved there and back.
async fn blocking(old: OldLocks, f: impl FnOnce(&mut OldLocks) + Send + 'static) -> OldLocks {
    blocking_with(old, f).await.0
}

async fn blocking_with<T: Send + 'static>(
    mut old: OldLocks,
    f: impl FnOnce(&mut OldLocks) -> T + Send + 'static,
) -> (OldLocks, T) {
    tokio::task::spawn_blocking(move || {
        let r = f(&mut old);
        (old, r)
    })
    .await
    .expect("holdfast's own lock files do not panic")
}
