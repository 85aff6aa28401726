//! Tells the core whether a maintenance window is open: at start, when the
//! settings change, and at each window's edge.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::command::{Command, Handle};
use crate::config::Settings;
use crate::timer::sleep_until;
use crate::window::WindowState;

/// Looked at again at least this often: the wall clock can be set (NTP
/// after boot, an operator) while a timer runs on the monotonic clock.
const RECHECK: Duration = Duration::from_secs(60);

/// `closed until …` now, for the first snapshot (no update may start in
/// a closed window before this task has run).
pub fn closed_now(settings: &Settings) -> Option<String> {
    settings
        .periodic
        .as_ref()
        .and_then(|p| p.at(jiff::Timestamp::now()).blocker())
}

pub async fn publish(mut settings: watch::Receiver<Arc<Settings>>, handle: Handle) {
    let mut published: Option<Option<String>> = None;
    loop {
        let periodic = settings.borrow_and_update().periodic.clone();
        let (closed, wake) = match &periodic {
            None => (None, None),
            Some(p) => {
                let state = p.at(jiff::Timestamp::now());
                (state.blocker(), Some(Instant::now() + until_edge(&state)))
            }
        };
        if published.as_ref() != Some(&closed) {
            match (&periodic, &closed) {
                (None, _) => {
                    tracing::info!("no maintenance windows: updates and reboots at any time")
                }
                (Some(p), Some(c)) => tracing::info!(time_zone = %p.time_zone,
                    "maintenance window {c}: no app is updated and holdfast does not reboot until then"),
                (Some(p), None) => tracing::info!(time_zone = %p.time_zone,
                    "maintenance window open{}", edge_text(p.at(jiff::Timestamp::now()))),
            }
            if handle
                .send(Command::SetWindow(closed.clone()))
                .await
                .is_err()
            {
                return;
            }
            published = Some(closed);
        }
        tokio::select! {
            r = settings.changed() => if r.is_err() { return },
            _ = sleep_until(wake) => {}
        }
    }
}

/// Until the next edge (a millisecond past it), at most [`RECHECK`].
fn until_edge(state: &WindowState) -> Duration {
    state
        .changes_at
        .as_ref()
        .and_then(|at| {
            let d = at.timestamp().duration_since(jiff::Timestamp::now());
            Duration::try_from(d).ok()
        })
        .map(|d| (d + Duration::from_millis(1)).min(RECHECK))
        .unwrap_or(RECHECK)
}

fn edge_text(state: WindowState) -> String {
    match state.changes_at {
        Some(at) => format!(" until {}", at.strftime("%a %H:%M %Z")),
        None => " at all times".into(),
    }
}
