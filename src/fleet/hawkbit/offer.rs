//! Whether a deployment the server offers is started now: pure, so the
//! pacing is tested as a table. A poll that offers the action already
//! running, one that failed for good, one waiting out a back-off or one
//! parked until the server changes it starts nothing; so an action costs
//! at most the polls the server's interval allows plus a bounded number of
//! retries, however it fails.

use std::time::Duration;

use tokio::time::Instant;

use super::ddi::{self, Deployment, Handling};
use super::journal::Journal;

/// What the last run of an action left, until the server offers another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: String,
    pub hash: String,
    pub why: String,
    pub kind: HeldKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldKind {
    /// A transient failure: not tried again before `not_before`.
    Retry { failures: u32, not_before: Instant },
    /// Downloaded, and waiting for the server to change what it asks
    /// (open the window, ask for the update): started again only when
    /// the offer differs from this one.
    Parked { window_open: bool, update: Handling },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Running already.
    Running,
    /// Nothing to do for this offer now (the reason, for the log).
    Wait(String),
    /// Closed as failed without a look at it: its artifact crashed
    /// holdfast before.
    Refuse(String),
    Start,
}

fn same(a: (&str, &str), d: &Deployment) -> bool {
    a.0 == d.id && a.1 == d.artifact.hash.hex()
}

/// The offer `d`, given what runs (`running`: id, hash), the journal
/// (its action, the artifacts that crashed holdfast) and what the last
/// run left.
pub fn decide(
    d: &Deployment,
    running: Option<(&str, &str)>,
    journal: &Journal,
    held: Option<&Held>,
    now: Instant,
) -> Decision {
    if running.is_some_and(|r| same(r, d)) {
        return Decision::Running;
    }
    let action = journal.action.as_ref();
    if let Some(a) = action.filter(|a| same((&a.id, &a.hash), d)) {
        if a.closed.as_ref().is_some_and(|c| !c.success) {
            // Refused, failed for good, or crashed holdfast while it was
            // read: the same action and artifact would end the same way.
            return Decision::Wait(format!(
                "action {} failed and is not tried again until the server offers another",
                crate::text::shown(&a.id)
            ));
        }
    }
    if journal.crashed.iter().any(|h| h == d.artifact.hash.hex()) {
        return Decision::Refuse(format!(
            "holdfast stopped while reading this artifact ({}) before: it is not read \
             again, under any action; deploy another release",
            d.artifact.hash.hex()
        ));
    }
    let Some(h) = held.filter(|h| same((&h.id, &h.hash), d)) else {
        return Decision::Start;
    };
    match &h.kind {
        HeldKind::Retry { not_before, .. } if now < *not_before => Decision::Wait(format!(
            "{}; trying again in {}",
            h.why,
            humantime::format_duration(Duration::from_secs(
                (*not_before - now).as_secs_f64().ceil() as u64
            ))
        )),
        HeldKind::Parked {
            window_open,
            update,
        } if *window_open == d.window_open && *update == d.update => Decision::Wait(h.why.clone()),
        _ => Decision::Start,
    }
}

/// What a run of `d` that ended `Retry(why)` or `Parked(why)` leaves.
/// Retries back off: 5 s doubling to 10 minutes, or the server's
/// interval when that is longer (the next poll comes no sooner anyway).
pub fn after_retry(
    d: &Deployment,
    why: String,
    before: Option<&Held>,
    sleep: Duration,
    now: Instant,
) -> Held {
    let failures = match before {
        Some(h) if same((&h.id, &h.hash), d) => match h.kind {
            HeldKind::Retry { failures, .. } => failures.saturating_add(1),
            HeldKind::Parked { .. } => 0,
        },
        _ => 0,
    };
    Held {
        id: d.id.clone(),
        hash: d.artifact.hash.hex().to_owned(),
        why,
        kind: HeldKind::Retry {
            failures,
            not_before: now + ddi::backoff(failures, sleep),
        },
    }
}

pub fn after_parked(d: &Deployment, why: String) -> Held {
    Held {
        id: d.id.clone(),
        hash: d.artifact.hash.hex().to_owned(),
        why,
        kind: HeldKind::Parked {
            window_open: d.window_open,
            update: d.update,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::hawkbit::ddi::{Artifact, Hash};
    use crate::fleet::hawkbit::journal::{Action, Closed};

    fn offer(id: &str, hash: &str) -> Deployment {
        Deployment {
            id: id.into(),
            download: Handling::Forced,
            update: Handling::Forced,
            window_open: true,
            artifact: Artifact {
                filename: "r.swu".into(),
                size: 1,
                hash: Hash::Sha256(hash.into()),
                href: "https://h/r.swu".into(),
            },
            version: "1.0.0".into(),
        }
    }

    fn journal(a: Option<Action>) -> Journal {
        Journal {
            action: a,
            ..Default::default()
        }
    }

    fn action(id: &str, hash: &str, closed: Option<bool>) -> Action {
        Action {
            id: id.into(),
            hash: hash.into(),
            version: "1.0.0".into(),
            applied: None,
            closed: closed.map(|success| Closed {
                success,
                details: vec![],
                reported: true,
            }),
            reading: false,
            boot: None,
        }
    }

    #[test]
    fn a_running_or_failed_action_is_not_started_again() {
        let now = Instant::now();
        let d = offer("7", "aa");
        assert_eq!(
            decide(&d, Some(("7", "aa")), &journal(None), None, now),
            Decision::Running
        );
        // Same id, another artifact: a new start.
        assert_eq!(
            decide(&d, Some(("7", "bb")), &journal(None), None, now),
            Decision::Start
        );
        let failed = action("7", "aa", Some(false));
        assert!(matches!(
            decide(&d, None, &journal(Some(failed.clone())), None, now),
            Decision::Wait(_)
        ));
        // The server changed the action or the artifact: started.
        assert_eq!(
            decide(
                &offer("8", "aa"),
                None,
                &journal(Some(failed.clone())),
                None,
                now
            ),
            Decision::Start
        );
        assert_eq!(
            decide(
                &offer("7", "cc"),
                None,
                &journal(Some(failed.clone())),
                None,
                now
            ),
            Decision::Start
        );
        // A success offered again is deployed again (gooseBit's forced
        // deployment of the same software has the same id).
        let ok = action("7", "aa", Some(true));
        assert_eq!(
            decide(&d, None, &journal(Some(ok)), None, now),
            Decision::Start
        );
        assert_eq!(
            decide(&d, None, &journal(Some(action("7", "aa", None))), None, now),
            Decision::Start
        );
    }

    #[test]
    fn an_artifact_that_crashed_holdfast_is_refused_under_any_action() {
        let now = Instant::now();
        let mut j = journal(None);
        j.crashed = vec!["aa".into()];
        for id in ["7", "8", "999"] {
            let Decision::Refuse(why) = decide(&offer(id, "aa"), None, &j, None, now) else {
                panic!("{id}")
            };
            assert!(why.contains("not read again, under any action"), "{why}");
        }
        assert_eq!(
            decide(&offer("7", "bb"), None, &j, None, now),
            Decision::Start
        );
        // Once refused (closed as failed), it is not even refused again.
        j.action = Some(action("8", "aa", Some(false)));
        assert!(matches!(
            decide(&offer("8", "aa"), None, &j, None, now),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn retries_back_off_and_the_server_interval_wins_when_longer() {
        let now = Instant::now();
        let d = offer("7", "aa");
        let sleep = Duration::from_secs(1);
        let mut held: Option<Held> = None;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let h = after_retry(&d, "HTTP 503".into(), held.as_ref(), sleep, now);
            let HeldKind::Retry { not_before, .. } = h.kind else {
                unreachable!()
            };
            waits.push((not_before - now).as_secs());
            held = Some(h);
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        let h = held.unwrap();
        let Decision::Wait(why) = decide(
            &d,
            None,
            &journal(None),
            Some(&h),
            now + Duration::from_secs(1),
        ) else {
            panic!()
        };
        assert!(why.starts_with("HTTP 503; trying again in 9m 59s"), "{why}");
        assert_eq!(
            decide(
                &d,
                None,
                &journal(None),
                Some(&h),
                now + Duration::from_secs(600)
            ),
            Decision::Start
        );
        // Another action starts at once, with a fresh back-off.
        let other = offer("8", "bb");
        assert_eq!(
            decide(&other, None, &journal(None), Some(&h), now),
            Decision::Start
        );
        let h = after_retry(&other, "reset".into(), Some(&h), sleep, now);
        assert_eq!(
            h.kind,
            HeldKind::Retry {
                failures: 0,
                not_before: now + Duration::from_secs(5)
            }
        );
        // With an hour's interval the back-off is the same; the next poll,
        // an hour away, is what waits longer.
        let h = after_retry(&d, "reset".into(), None, Duration::from_secs(3600), now);
        let h = after_retry(&d, "reset".into(), Some(&h), Duration::from_secs(3600), now);
        assert_eq!(
            h.kind,
            HeldKind::Retry {
                failures: 1,
                not_before: now + Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_parked_action_waits_until_the_server_changes_it() {
        let now = Instant::now();
        let mut d = offer("7", "aa");
        d.window_open = false;
        let h = after_parked(&d, "maintenance window closed".into());
        assert_eq!(
            decide(&d, None, &journal(None), Some(&h), now),
            Decision::Wait("maintenance window closed".into())
        );
        d.window_open = true;
        assert_eq!(
            decide(&d, None, &journal(None), Some(&h), now),
            Decision::Start
        );
        let mut d = offer("7", "aa");
        d.update = Handling::Skip;
        let h = after_parked(&d, "update: skip".into());
        assert!(matches!(
            decide(&d, None, &journal(None), Some(&h), now),
            Decision::Wait(_)
        ));
        d.update = Handling::Attempt;
        assert_eq!(
            decide(&d, None, &journal(None), Some(&h), now),
            Decision::Start
        );
    }
}
