//! Judging a container's state against what an update waits for (pure):
//! a dependency's `depends_on` condition, a hand-over's successor, or the
//! new release as a whole.

use crate::engine::Liveness;
use crate::target::Condition;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Started (or already done, for a one-shot).
    Started,
    /// Healthy by its healthcheck; without one, running.
    Healthy,
    /// Exited with code 0.
    Completed,
}

impl From<Condition> for Want {
    fn from(c: Condition) -> Self {
        match c {
            Condition::ServiceStarted => Want::Started,
            Condition::ServiceHealthy => Want::Healthy,
            Condition::ServiceCompletedSuccessfully => Want::Completed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Failed(String),
}

/// `None`: not decided yet (health still `starting`, not exited yet).
/// `restarts_before`: the restart count when the wait began; more
/// restarts since is a crash loop.
pub fn judge(want: Want, live: &Liveness, restarts_before: i64) -> Option<Verdict> {
    let crashed = || {
        if live.restart_count > restarts_before || live.restarting {
            Some(Verdict::Failed(format!(
                "crash-looping (restarted {} times)",
                (live.restart_count - restarts_before).max(1)
            )))
        } else if live.exited && live.exit_code != 0 {
            Some(Verdict::Failed(format!(
                "exited with code {}",
                live.exit_code
            )))
        } else {
            None
        }
    };
    match want {
        Want::Started => {
            if live.running || live.exited {
                Some(Verdict::Met)
            } else {
                crashed()
            }
        }
        Want::Completed => {
            if live.exited && live.exit_code == 0 {
                Some(Verdict::Met)
            } else {
                crashed()
            }
        }
        Want::Healthy => match live.health.as_deref() {
            Some("healthy") if live.running => Some(Verdict::Met),
            Some("unhealthy") => Some(Verdict::Failed(match &live.last_check {
                Some(out) if !out.is_empty() => format!("unhealthy (last check: {out})"),
                _ => "unhealthy".to_owned(),
            })),
            Some(_) => crashed(),
            None if live.running && live.restart_count == restarts_before => Some(Verdict::Met),
            None if live.exited && live.exit_code == 0 => Some(Verdict::Met),
            None => crashed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(running: bool, health: Option<&str>) -> Liveness {
        Liveness {
            running,
            health: health.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn healthy_waits_for_the_healthcheck_and_fails_on_unhealthy_or_crashes() {
        assert_eq!(judge(Want::Healthy, &live(true, Some("starting")), 0), None);
        assert_eq!(
            judge(Want::Healthy, &live(true, Some("healthy")), 0),
            Some(Verdict::Met)
        );
        let mut bad = live(true, Some("unhealthy"));
        bad.last_check = Some("connection refused".into());
        assert_eq!(
            judge(Want::Healthy, &bad, 0),
            Some(Verdict::Failed(
                "unhealthy (last check: connection refused)".into()
            ))
        );
        let mut looping = live(false, Some("starting"));
        looping.restarting = true;
        looping.restart_count = 3;
        assert!(
            matches!(judge(Want::Healthy, &looping, 1), Some(Verdict::Failed(r)) if r.contains("crash-looping"))
        );
    }

    #[test]
    fn without_a_healthcheck_running_is_healthy() {
        assert_eq!(
            judge(Want::Healthy, &live(true, None), 0),
            Some(Verdict::Met)
        );
        let mut died = live(false, None);
        died.exited = true;
        died.exit_code = 2;
        assert_eq!(
            judge(Want::Healthy, &died, 0),
            Some(Verdict::Failed("exited with code 2".into()))
        );
    }

    #[test]
    fn completed_needs_exit_code_zero() {
        assert_eq!(judge(Want::Completed, &live(true, None), 0), None);
        let mut done = live(false, None);
        done.exited = true;
        assert_eq!(judge(Want::Completed, &done, 0), Some(Verdict::Met));
        done.exit_code = 1;
        assert!(matches!(
            judge(Want::Completed, &done, 0),
            Some(Verdict::Failed(_))
        ));
        assert_eq!(judge(Want::Started, &done, 0), Some(Verdict::Met));
    }
}
