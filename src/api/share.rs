//! Each key's share of the API, so that no caller starves another: a few
//! requests of one key run at once, a few more wait their turn (first
//! come, first served), and the rest are refused at once with 429 and
//! `Retry-After`, never queued without bound. Actions (POST) have their
//! own, smaller share: they wait for the engine, and an app's task serves
//! them one after the other anyway, so more at once would only queue
//! there. An app's key has one share of each; the device key one of reads
//! and one of actions per app named in the path (the operator's actions on
//! two apps do not wait for each other), whatever apps do with theirs.
//!
//! A request keeps its place until the work it started is answered, even
//! when its client hangs up or its 120 s run out: hanging up and calling
//! again must not pile restarts into the app's queue. Identical calls are
//! not merged: a caller past its share is told so and may call again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::serve::limit_error;
use super::Scope;
use crate::names::AppName;

/// A share: how many of its requests run at once, how many more may wait
/// for a place, and how long a refused caller is asked to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub running: usize,
    pub waiting: usize,
    pub retry_after: Duration,
}

/// GET routes: answered from what the tasks publish, or one engine
/// listing or /proc walk each.
pub const READS: Limits = Limits {
    running: 4,
    waiting: 4,
    retry_after: Duration::from_secs(1),
};

/// POST routes: a restart waits for the engine to stop and start the
/// container (seconds), a reboot for logind.
pub const ACTIONS: Limits = Limits {
    running: 1,
    waiting: 2,
    retry_after: Duration::from_secs(5),
};

/// At most one warning per key this often while its calls are refused.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ShareKey {
    scope: Scope,
    class: Class,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Class {
    Read,
    /// The app named in the path, for the device key (an app's key acts
    /// on its own app only).
    Action(Option<AppName>),
}

impl ShareKey {
    pub(super) fn of(scope: &Scope, method: &Method, path: &str) -> ShareKey {
        let class = if method == Method::GET || method == Method::HEAD {
            Class::Read
        } else {
            Class::Action(match scope {
                Scope::Device => app_in_path(path),
                Scope::App(_) => None,
            })
        };
        ShareKey {
            scope: scope.clone(),
            class,
        }
    }

    fn limits(&self) -> Limits {
        match self.class {
            Class::Read => READS,
            Class::Action(_) => ACTIONS,
        }
    }

    /// For the refusal and the journal, e.g. `actions on app app1 of the
    /// device key`.
    fn describe(&self) -> String {
        let whose = match &self.scope {
            Scope::Device => "the device key".to_owned(),
            Scope::App(a) => format!("the key of app {a}"),
        };
        match &self.class {
            Class::Read => format!("reads of {whose}"),
            Class::Action(Some(a)) => format!("actions on app {a} of {whose}"),
            Class::Action(None) => format!("actions of {whose}"),
        }
    }
}

/// `/v2/applications/{app}/...` and `/v1/apps/{app}/...`.
fn app_in_path(path: &str) -> Option<AppName> {
    let mut parts = path.trim_start_matches('/').split('/');
    let app = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v2"), Some("applications"), Some(app), Some(_)) => app,
        (Some("v1"), Some("apps"), Some(app), Some(_)) => app,
        _ => return None,
    };
    AppName::new(app).ok()
}

/// What becomes of a request arriving at its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    Run,
    Wait,
    Refuse,
}

/// `free`: places not taken; `waiting`: requests already waiting. A
/// newcomer never overtakes one that waits.
pub(super) fn admit(limits: Limits, free: usize, waiting: usize) -> Admit {
    if free > 0 && waiting == 0 {
        Admit::Run
    } else if waiting < limits.waiting {
        Admit::Wait
    } else {
        Admit::Refuse
    }
}

/// Every key's shares, for every listener.
#[derive(Clone, Default)]
pub struct Shares {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Shares in use; one goes when its last request does.
    shares: HashMap<ShareKey, Share>,
    /// Refusals per key, for a warning at most every `WARN_EVERY`.
    refusals: HashMap<Scope, Tally>,
}

struct Share {
    /// `running` permits, handed out in the order asked (tokio's
    /// semaphore is fair).
    places: Arc<Semaphore>,
    waiting: usize,
    /// Requests holding a place or waiting for one.
    users: usize,
}

struct Tally {
    since_warned: u64,
    warned: Instant,
}

/// A place in a share, held while its request runs.
pub(super) struct Place {
    shares: Shares,
    key: ShareKey,
    _permit: OwnedSemaphorePermit,
}

/// A request waiting for a place; leaves the queue (and the share's
/// users) when dropped before it has one.
struct Waiter(Option<(Shares, ShareKey)>);

/// The caller is past its share.
#[derive(Debug)]
pub(super) struct Refused {
    pub message: String,
    pub retry_after: Duration,
}

impl Shares {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place in `key`'s share, at once, after those waiting before, or
    /// refused when too many wait already.
    pub(super) async fn enter(&self, key: ShareKey) -> Result<Place, Refused> {
        let limits = key.limits();
        let places = {
            let mut inner = self.lock();
            let share = inner.shares.entry(key.clone()).or_insert_with(|| Share {
                places: Arc::new(Semaphore::new(limits.running)),
                waiting: 0,
                users: 0,
            });
            match admit(limits, share.places.available_permits(), share.waiting) {
                Admit::Run => {
                    if let Ok(permit) = share.places.clone().try_acquire_owned() {
                        share.users += 1;
                        return Ok(Place {
                            shares: self.clone(),
                            key,
                            _permit: permit,
                        });
                    }
                    // Not reached (the count was read under our lock);
                    // waiting is right anyway.
                    share.waiting += 1;
                }
                Admit::Wait => share.waiting += 1,
                Admit::Refuse => {
                    let refused = Refused {
                        message: format!(
                            "too many requests at once: {} ({} at a time, {} waiting at most); try again later",
                            key.describe(),
                            limits.running,
                            limits.waiting
                        ),
                        retry_after: limits.retry_after,
                    };
                    inner.refused(&key, limits);
                    return Err(refused);
                }
            }
            share.users += 1;
            share.places.clone()
        };
        let waiter = Waiter(Some((self.clone(), key)));
        let refused = || Refused {
            message: "the API is shutting down".into(),
            retry_after: limits.retry_after,
        };
        // Neither happens: the semaphore is never closed, and the waiter
        // is only taken here.
        let permit = places.acquire_owned().await.map_err(|_| refused())?;
        waiter.placed(permit).ok_or_else(refused)
    }

    #[cfg(test)]
    fn counts(&self, key: &ShareKey) -> Option<(usize, usize)> {
        let inner = self.lock();
        let s = inner.shares.get(key)?;
        Some((s.places.available_permits(), s.waiting))
    }
}

impl Inner {
    /// Counts a refusal; warns at the first one of a key and then at most
    /// every `WARN_EVERY`, with how many there were.
    fn refused(&mut self, key: &ShareKey, limits: Limits) {
        let now = Instant::now();
        let tally = self.refusals.entry(key.scope.clone()).or_insert(Tally {
            since_warned: 0,
            warned: now.checked_sub(WARN_EVERY).unwrap_or(now),
        });
        tally.since_warned += 1;
        if now.duration_since(tally.warned) >= WARN_EVERY || tally.since_warned == 1 {
            let n = tally.since_warned;
            tracing::warn!(
                "HTTP API: {} asks for more than its share ({} at a time, {} waiting); refused with 429 ({n} since the last warning, at most one warning a minute)",
                key.describe(),
                limits.running,
                limits.waiting
            );
            tally.since_warned = 0;
            tally.warned = now;
        }
    }

    fn stop_waiting(&mut self, key: &ShareKey) {
        if let Some(s) = self.shares.get_mut(key) {
            s.waiting -= 1;
        }
    }

    /// One user of `key` is done; the share goes with its last one.
    fn leave(&mut self, key: &ShareKey) {
        if let Some(s) = self.shares.get_mut(key) {
            s.users -= 1;
            if s.users == 0 {
                self.shares.remove(key);
            }
        }
    }
}

impl Waiter {
    /// Its turn came: it stays a user of the share, now with a place.
    fn placed(mut self, permit: OwnedSemaphorePermit) -> Option<Place> {
        let (shares, key) = self.0.take()?;
        shares.lock().stop_waiting(&key);
        Some(Place {
            shares,
            key,
            _permit: permit,
        })
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some((shares, key)) = self.0.take() {
            let mut inner = shares.lock();
            inner.stop_waiting(&key);
            inner.leave(&key);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // The permit goes after this (fields drop after `drop`), to the
        // first waiter if any; the share stays while it has users.
        self.shares.lock().leave(&self.key);
    }
}

/// Runs a keyed request within its key's share (after `auth::require_key`,
/// which put its `Scope` there). The request runs in a task of its own
/// that keeps the place until the handler has its answer: a client that
/// hangs up, or a request past its 120 s, does not give its place to more
/// work while what it asked for still waits in an app's queue.
pub(super) async fn within_share(
    State(shares): State<Shares>,
    req: Request,
    next: Next,
) -> Response {
    let Some(scope) = req.extensions().get::<Scope>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let path = req.uri().path().to_owned();
    let key = ShareKey::of(&scope, req.method(), &path);
    let place = match shares.enter(key).await {
        Ok(p) => p,
        Err(refused) => return too_many(&path, &refused),
    };
    let run = tokio::spawn(async move {
        let r = next.run(req).await;
        drop(place);
        r
    });
    match run.await {
        Ok(r) => r,
        Err(e) => limit_error(&path, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// 429 in the route's shape, with `Retry-After` in seconds.
fn too_many(path: &str, refused: &Refused) -> Response {
    let mut r = limit_error(path, StatusCode::TOO_MANY_REQUESTS, &refused.message);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(refused.retry_after.as_secs()),
    );
    r
}

#[cfg(test)]
mod tests;
