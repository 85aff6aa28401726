//! One app's update state machine. Pure: the per-app task feeds it what
//! happened, it says what the app is doing and when to try again. Every
//! transition is a named method that asserts the phases it may start from,
//! so an impossible sequence is a loud bug (in tests; logged in release
//! builds), not a silent wrong status.

use std::time::{Duration, Instant};

use crate::model::{AppState, AppStatus};

/// A failed apply is retried after this, doubling up to the maximum.
pub const RETRY_MIN: Duration = Duration::from_secs(5);
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// An unreachable engine is retried sooner, doubling up to this.
pub const ENGINE_RETRY_MIN: Duration = Duration::from_millis(100);
pub const ENGINE_RETRY_MAX: Duration = Duration::from_secs(5);
/// No fleet slot free (`[fleet.lock] updates`): asked again after this,
/// doubling up to the maximum.
pub const SLOT_RETRY_MIN: Duration = Duration::from_secs(1);
pub const SLOT_RETRY_MAX: Duration = Duration::from_secs(30);
/// Said of a release that failed in a way a retry would repeat against
/// the running app: what brings it back.
pub const NOT_RETRIED: &str = "not retried until a new target or update --force";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// At the target (or nothing to do yet).
    Idle,
    /// Pulling images; never held back by locks.
    Downloading { progress: Option<u8> },
    /// Held back: by locks (`lock:app/svc`, `unknown:app/svc`,
    /// `lock-root`, `powering`), or by the engine (`engine`, retried at
    /// `retry_at`).
    Waiting {
        blocked_by: Vec<String>,
        retry_at: Option<Instant>,
    },
    /// Locks taken, containers being changed.
    Applying,
    /// The last attempt failed; the next one is due at `retry_at`, or,
    /// for a release that was not healthy or could not start after the
    /// running containers were stopped, only on a new target or a forced
    /// update.
    Failed {
        error: String,
        retry_at: Option<Instant>,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Downloading { .. } => "downloading",
            Phase::Waiting { .. } => "waiting",
            Phase::Applying => "applying",
            Phase::Failed { .. } => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    phase: Phase,
    /// The release being worked on (or applied).
    release: String,
    /// Failed attempts at this release.
    attempts: u32,
    /// Consecutive engine outages (their back-off).
    outages: u32,
    /// The release the app went back to after this one was not healthy.
    rolled_back_to: Option<String>,
}

impl Machine {
    pub fn new(release: &str) -> Self {
        Self {
            phase: Phase::Idle,
            release: release.to_owned(),
            attempts: 0,
            outages: 0,
            rolled_back_to: None,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn release(&self) -> &str {
        &self.release
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the task must run again without being asked, if ever.
    pub fn retry_at(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { retry_at, .. } => *retry_at,
            Phase::Failed { retry_at, .. } => *retry_at,
            _ => None,
        }
    }

    /// Waiting on locks only (not on a timer): a snapshot change may free it.
    pub fn waits_on_locks(&self) -> bool {
        matches!(&self.phase, Phase::Waiting { retry_at: None, .. })
    }

    /// A transition not in `allowed` is a bug of the driver: it fails the
    /// tests (debug builds panic) and, in a release build (where a panic
    /// aborts the daemon), is logged and taken anyway: the next pass
    /// re-plans from the engine, so a wrong phase heals itself.
    fn go(&mut self, to: Phase, allowed: &[&str]) {
        let ok = allowed.contains(&self.phase.name());
        debug_assert!(
            ok,
            "update machine: no transition from {} to {}",
            self.phase.name(),
            to.name()
        );
        if !ok {
            tracing::error!(
                from = self.phase.name(),
                to = to.name(),
                "update machine: unexpected transition (a bug; please report it)"
            );
        }
        self.phase = to;
    }

    /// A new target release for the app: a fresh start, failures forgotten.
    pub fn new_target(&mut self, release: &str) {
        if release != self.release {
            self.release = release.to_owned();
        }
        self.attempts = 0;
        self.rolled_back_to = None;
        if matches!(self.phase, Phase::Failed { .. }) {
            self.phase = Phase::Idle;
        }
    }

    /// A pass pulls images: before the lock gate, or after the old
    /// containers are gone (kill-then-download).
    pub fn downloading(&mut self, progress: Option<u8>) {
        self.go(
            Phase::Downloading { progress },
            &["idle", "downloading", "waiting", "failed", "applying"],
        );
    }

    /// The pass reached the lock gate and it said no.
    pub fn wait(&mut self, blocked_by: Vec<String>) {
        self.go(
            Phase::Waiting {
                blocked_by,
                retry_at: None,
            },
            &["idle", "downloading", "waiting", "failed"],
        );
        self.outages = 0;
    }

    /// The lock gate agreed but no fleet slot is free: waiting, asked
    /// again after a back-off (a slot frees on another device: no local
    /// event says so).
    pub fn slot_busy(&mut self, blocked_by: Vec<String>, now: Instant) {
        let wait = backoff(SLOT_RETRY_MIN, SLOT_RETRY_MAX, self.outages);
        self.go(
            Phase::Waiting {
                blocked_by,
                retry_at: Some(now + wait),
            },
            &["idle", "downloading", "waiting", "failed"],
        );
        self.outages = self.outages.saturating_add(1);
    }

    /// Locks taken: containers are about to change.
    pub fn applying(&mut self) {
        self.go(
            Phase::Applying,
            &["idle", "downloading", "waiting", "failed"],
        );
    }

    /// The app is at its target.
    pub fn applied(&mut self) {
        self.go(
            Phase::Idle,
            &["idle", "downloading", "waiting", "applying", "failed"],
        );
        self.attempts = 0;
        self.outages = 0;
    }

    /// The engine could not be reached: waiting, retried soon.
    pub fn engine_down(&mut self, now: Instant) {
        let wait = backoff(ENGINE_RETRY_MIN, ENGINE_RETRY_MAX, self.outages);
        self.outages = self.outages.saturating_add(1);
        self.phase = Phase::Waiting {
            blocked_by: vec!["engine".into()],
            retry_at: Some(now + wait),
        };
    }

    /// The attempt failed for a reason of its own; retried with back-off.
    pub fn fail(&mut self, error: String, now: Instant) {
        self.go(
            Phase::Failed {
                error: String::new(),
                retry_at: None,
            },
            &["idle", "downloading", "waiting", "applying", "failed"],
        );
        let wait = backoff(RETRY_MIN, RETRY_MAX, self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        self.outages = 0;
        self.phase = Phase::Failed {
            error,
            retry_at: Some(now + wait),
        };
    }

    /// The release came up unhealthy: failed, and not tried again until a
    /// new target or a forced update. `rolled_back_to`: the healthy release
    /// the app went back to, if it did.
    pub fn unhealthy(&mut self, error: String, rolled_back_to: Option<String>) {
        self.go(
            Phase::Failed {
                error,
                retry_at: None,
            },
            &["idle", "downloading", "waiting", "applying", "failed"],
        );
        self.attempts = self.attempts.saturating_add(1);
        self.outages = 0;
        self.rolled_back_to = rolled_back_to;
    }

    /// The release failed after the pass had stopped the running
    /// containers (a new one could not be created or started, or a
    /// dependency did not come up), and they were started again: failed,
    /// and not tried again on a timer, since every try would stop the
    /// running app again; only on a new target or a forced update.
    pub fn put_back(&mut self, error: String) {
        self.go(
            Phase::Failed {
                error,
                retry_at: None,
            },
            &["idle", "downloading", "waiting", "applying", "failed"],
        );
        self.attempts = self.attempts.saturating_add(1);
        self.outages = 0;
        self.rolled_back_to = None;
    }

    /// A forced update tries a release that was not healthy (or could not
    /// start) again.
    pub fn forced(&mut self) {
        if matches!(self.phase, Phase::Failed { retry_at: None, .. }) {
            self.phase = Phase::Idle;
        }
        self.rolled_back_to = None;
    }

    /// As reported: `state`, `blocked_by`, `error`, `attempts`, `retry_at`.
    /// `wall` turns a deadline into wall-clock time for people.
    pub fn status(&self, wall: impl Fn(Instant) -> String) -> AppStatus {
        let (state, blocked_by, error, retry_at, progress) = match &self.phase {
            Phase::Idle => (AppState::Applied, vec![], None, None, None),
            Phase::Downloading { progress } => {
                (AppState::Downloading, vec![], None, None, *progress)
            }
            Phase::Waiting {
                blocked_by,
                retry_at,
            } => (AppState::Waiting, blocked_by.clone(), None, *retry_at, None),
            Phase::Applying => (AppState::Applying, vec![], None, None, None),
            Phase::Failed { error, retry_at } => (
                AppState::Failed,
                vec![],
                Some(match retry_at {
                    Some(_) => error.clone(),
                    None => format!("{error}; {NOT_RETRIED}"),
                }),
                *retry_at,
                None,
            ),
        };
        let mut st = AppStatus::new(state, &self.release);
        st.blocked_by = blocked_by;
        st.error = error;
        st.progress = progress;
        st.attempts = self.attempts;
        st.retry_at = retry_at.map(wall);
        st.rolled_back_to = self.rolled_back_to.clone();
        st
    }
}

fn backoff(min: Duration, max: Duration, n: u32) -> Duration {
    min.saturating_mul(2u32.saturating_pow(n.min(20))).min(max)
}

#[cfg(test)]
mod tests;
