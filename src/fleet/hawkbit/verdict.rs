//! Whether a deployment is done: every app it brought applied at its
//! release and healthy (success), one given up on (failure), or still on
//! its way (with what it waits for, the feedback's details).

use crate::model::{AppState, UpdateStatus};
use crate::names::AppName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pending(Vec<String>),
    Success,
    Failure(String),
}

pub fn judge(status: &UpdateStatus, want: &[(AppName, String)]) -> Verdict {
    let mut waiting = Vec::new();
    for (app, release) in want {
        let Some(a) = status.apps.get(app.as_str()) else {
            waiting.push(format!("{app}: not started yet"));
            continue;
        };
        if a.state == AppState::Failed && a.release == *release {
            let why = a.error.clone().unwrap_or_else(|| "failed".into());
            if let Some(back) = &a.rolled_back_to {
                return Verdict::Failure(format!(
                    "{app} release {release} rolled back to {back}: {why}"
                ));
            }
            if a.retry_at.is_none() {
                return Verdict::Failure(format!("{app} release {release}: {why}"));
            }
            waiting.push(format!("{app}: failed, retrying: {why}"));
            continue;
        }
        if a.release != *release {
            waiting.push(format!("{app}: not started yet"));
            continue;
        }
        match a.state {
            AppState::Applied => {
                if let Some((s, _)) = a.services.iter().find(|(_, s)| s.health == "unhealthy") {
                    waiting.push(format!("{app}: service {s} unhealthy"));
                }
            }
            AppState::Waiting => {
                for b in &a.blocked_by {
                    waiting.push(match (b.strip_prefix("lock:"), b.strip_prefix("window:")) {
                        (Some(id), _) => format!("waiting for lock: {id}"),
                        (_, Some(w)) => format!("{app}: waiting for the maintenance window ({w})"),
                        _ => format!("{app}: waiting for {b}"),
                    });
                }
                if a.blocked_by.is_empty() {
                    waiting.push(format!("{app}: waiting"));
                }
            }
            AppState::Downloading => waiting.push(match a.progress {
                Some(p) => format!("{app}: pulling images {p}%"),
                None => format!("{app}: pulling images"),
            }),
            AppState::Applying => waiting.push(format!("{app}: applying")),
            AppState::Failed => unreachable!("handled above"),
        }
    }
    if waiting.is_empty() {
        Verdict::Success
    } else {
        Verdict::Pending(waiting)
    }
}

/// Whether any of the deployment's apps has begun to change its
/// containers for its new release (too late for a cancel).
pub fn started(status: &UpdateStatus, want: &[(AppName, String)]) -> bool {
    want.iter().any(|(app, release)| {
        status.apps.get(app.as_str()).is_some_and(|a| {
            a.release == *release
                && matches!(
                    a.state,
                    AppState::Applying | AppState::Applied | AppState::Failed
                )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppStatus, ServiceStatus};

    fn status(apps: &[(&str, AppStatus)]) -> UpdateStatus {
        UpdateStatus {
            apps: apps.iter().map(|(n, a)| ((*n).into(), a.clone())).collect(),
            ..Default::default()
        }
    }

    fn want(r: &str) -> Vec<(AppName, String)> {
        vec![(AppName::new("app1").unwrap(), r.into())]
    }

    #[test]
    fn success_only_when_applied_at_the_release_and_healthy() {
        let mut a = AppStatus::new(AppState::Applied, "r2");
        a.services.insert(
            "main".into(),
            ServiceStatus {
                health: "healthy".into(),
            },
        );
        assert_eq!(
            judge(&status(&[("app1", a.clone())]), &want("r2")),
            Verdict::Success
        );
        // The old release applied: the new one has not started.
        assert_eq!(
            judge(&status(&[("app1", a.clone())]), &want("r3")),
            Verdict::Pending(vec!["app1: not started yet".into()])
        );
        a.services.get_mut("main").unwrap().health = "unhealthy".into();
        assert!(matches!(
            judge(&status(&[("app1", a)]), &want("r2")),
            Verdict::Pending(_)
        ));
        assert!(matches!(
            judge(&status(&[]), &want("r2")),
            Verdict::Pending(_)
        ));
    }

    #[test]
    fn a_held_lock_is_named_in_the_details() {
        let mut a = AppStatus::new(AppState::Waiting, "r2");
        a.blocked_by = vec![
            "lock:app1/main".into(),
            "fleet-slot:default (1/1 held)".into(),
            "window:closed until Mon 22:30 UTC".into(),
        ];
        assert_eq!(
            judge(&status(&[("app1", a)]), &want("r2")),
            Verdict::Pending(vec![
                "waiting for lock: app1/main".into(),
                "app1: waiting for fleet-slot:default (1/1 held)".into(),
                "app1: waiting for the maintenance window (closed until Mon 22:30 UTC)".into()
            ])
        );
    }

    #[test]
    fn an_app_waiting_or_pulling_has_not_started() {
        for (state, yes) in [
            (AppState::Waiting, false),
            (AppState::Downloading, false),
            (AppState::Applying, true),
            (AppState::Applied, true),
            (AppState::Failed, true),
        ] {
            let a = AppStatus::new(state, "r2");
            assert_eq!(
                started(&status(&[("app1", a.clone())]), &want("r2")),
                yes,
                "{state:?}"
            );
            // The old release applied is not the new one started.
            assert!(!started(&status(&[("app1", a)]), &want("r3")));
        }
    }

    #[test]
    fn a_rollback_or_a_failure_not_retried_is_the_end() {
        let mut a = AppStatus::new(AppState::Failed, "r2");
        a.error = Some("service main unhealthy".into());
        a.rolled_back_to = Some("r1".into());
        assert_eq!(
            judge(&status(&[("app1", a.clone())]), &want("r2")),
            Verdict::Failure("app1 release r2 rolled back to r1: service main unhealthy".into())
        );
        a.rolled_back_to = None;
        a.retry_at = Some("2026-11-30T01:00:00Z".into());
        assert!(matches!(
            judge(&status(&[("app1", a.clone())]), &want("r2")),
            Verdict::Pending(_)
        ));
        a.retry_at = None;
        assert!(matches!(
            judge(&status(&[("app1", a)]), &want("r2")),
            Verdict::Failure(_)
        ));
    }
}
