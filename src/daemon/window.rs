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
        let now = jiff::Timestamp::now();
        let state = periodic.as_ref().map(|p| p.at(now));
        let closed = state.as_ref().and_then(WindowState::blocker);
        let wake = state.as_ref().map(|s| Instant::now() + until_edge(s, now));
        if published.as_ref() != Some(&closed) {
            match (&periodic, &closed, state) {
                (Some(p), Some(c), _) => {
                    tracing::info!(time_zone = %p.time_zone, zone = %p.zone_name(),
                    "maintenance window {c}: no app is updated and holdfast does not reboot until then")
                }
                (Some(p), None, Some(s)) => {
                    tracing::info!(time_zone = %p.time_zone, zone = %p.zone_name(),
                    "maintenance window open{}", edge_text(s))
                }
                _ => tracing::info!("no maintenance windows: updates and reboots at any time"),
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

/// Until the next edge (a millisecond past it), at most [`RECHECK`]. An
/// edge that passed while it was computed: at once. One further back (the
/// hour the clocks go back repeats, and the edge is its first pass): the
/// next look, not a spin.
fn until_edge(state: &WindowState, now: jiff::Timestamp) -> Duration {
    let Some(at) = &state.changes_at else {
        return RECHECK;
    };
    let ahead = at.timestamp().as_millisecond() - now.as_millisecond();
    match ahead {
        a if a >= 0 => Duration::from_millis(a.unsigned_abs() + 1).min(RECHECK),
        a if a > -1000 => Duration::from_millis(1),
        _ => RECHECK,
    }
}

fn edge_text(state: WindowState) -> String {
    match state.changes_at {
        Some(at) => format!(" until {}", at.strftime("%a %H:%M %Z")),
        None => " at all times".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_ends_just_past_the_edge_and_never_spins() {
        let now: jiff::Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let at = |s: &str| WindowState {
            open: false,
            changes_at: Some(
                s.parse::<jiff::Timestamp>()
                    .unwrap()
                    .to_zoned(jiff::tz::TimeZone::UTC),
            ),
        };
        assert_eq!(
            until_edge(&at("2026-11-30T12:00:30Z"), now),
            Duration::from_millis(30_001)
        );
        assert_eq!(until_edge(&at("2026-11-30T13:00:00Z"), now), RECHECK);
        assert_eq!(
            until_edge(&at("2026-11-30T11:59:59.800Z"), now),
            Duration::from_millis(1)
        );
        assert_eq!(
            until_edge(&at("2026-11-30T11:00:00Z"), now),
            RECHECK,
            "the repeated hour"
        );
        let never = WindowState {
            open: true,
            changes_at: None,
        };
        assert_eq!(until_edge(&never, now), RECHECK);
    }
}
