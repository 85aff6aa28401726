use super::*;

fn at(m: &Machine) -> Option<Duration> {
    m.retry_at().map(|t| t.duration_since(T0.with(|t| *t)))
}

thread_local! {
    static T0: Instant = Instant::now();
}

fn t0() -> Instant {
    T0.with(|t| *t)
}

#[test]
fn the_happy_path_and_waiting_on_a_lock() {
    let mut m = Machine::new("r1");
    m.downloading(Some(0));
    m.downloading(Some(50));
    m.wait(vec!["lock:app1/main".into()]);
    assert!(m.waits_on_locks());
    assert_eq!(m.retry_at(), None, "a lock wait has no timer: no polling");
    m.applying();
    m.applied();
    assert_eq!(m.phase(), &Phase::Idle);
    let st = m.status(|_| String::new());
    assert_eq!(st.state, AppState::Applied);
    assert_eq!(st.release, "r1");
}

#[test]
fn failures_back_off_and_a_new_target_resets_them() {
    let mut m = Machine::new("r1");
    m.applying();
    m.fail("engine refused".into(), t0());
    assert_eq!(at(&m), Some(RETRY_MIN));
    assert_eq!(m.attempts(), 1);
    m.applying();
    m.fail("again".into(), t0());
    assert_eq!(at(&m), Some(RETRY_MIN * 2));
    for _ in 0..20 {
        m.fail("again".into(), t0());
    }
    assert_eq!(at(&m), Some(RETRY_MAX));
    let st = m.status(|_| "then".into());
    assert_eq!(st.state, AppState::Failed);
    assert_eq!(st.retry_at.as_deref(), Some("then"));
    assert_eq!(st.attempts, 22);
    m.new_target("r2");
    assert_eq!(m.attempts(), 0);
    assert_eq!(m.phase(), &Phase::Idle);
    assert_eq!(m.release(), "r2");
}

#[test]
fn the_retry_deadline_does_not_move_while_nothing_happens() {
    let mut m = Machine::new("r1");
    m.fail("x".into(), t0());
    let first = m.retry_at();
    // Reading the machine (as a loop pass does) never moves it.
    let _ = m.status(|_| String::new());
    assert_eq!(m.retry_at(), first);
}

#[test]
fn engine_outages_are_retried_soon_and_reset_on_progress() {
    let mut m = Machine::new("r1");
    m.engine_down(t0());
    assert_eq!(at(&m), Some(ENGINE_RETRY_MIN));
    assert!(!m.waits_on_locks(), "an engine wait runs on its timer");
    m.engine_down(t0());
    assert_eq!(at(&m), Some(ENGINE_RETRY_MIN * 2));
    let st = m.status(|_| String::new());
    assert_eq!(st.blocked_by, ["engine"]);
    m.applying();
    m.applied();
    m.engine_down(t0());
    assert_eq!(at(&m), Some(ENGINE_RETRY_MIN));
}

#[test]
fn a_busy_fleet_slot_is_asked_again_on_a_timer() {
    let mut m = Machine::new("r1");
    let b = vec!["fleet-slot:default (1/1 held)".to_string()];
    m.slot_busy(b.clone(), t0());
    assert_eq!(at(&m), Some(SLOT_RETRY_MIN));
    assert!(!m.waits_on_locks(), "no local event frees a slot");
    m.slot_busy(b.clone(), t0());
    assert_eq!(at(&m), Some(SLOT_RETRY_MIN * 2));
    assert_eq!(m.status(|_| String::new()).blocked_by, b);
    m.applying();
    m.applied();
    m.slot_busy(b, t0());
    assert_eq!(at(&m), Some(SLOT_RETRY_MIN), "progress resets the back-off");
}

#[test]
fn kill_then_download_pulls_after_taking_the_locks() {
    let mut m = Machine::new("r1");
    m.applying();
    m.downloading(Some(10));
    m.applied();
    assert_eq!(m.phase(), &Phase::Idle);
}

#[test]
fn an_unhealthy_release_waits_for_a_new_target_or_a_forced_update() {
    let mut m = Machine::new("r2");
    m.applying();
    m.unhealthy("service web unhealthy".into(), Some("r1".into()));
    assert_eq!(m.retry_at(), None, "not retried on a timer");
    let st = m.status(|_| String::new());
    assert_eq!(st.state, AppState::Failed);
    assert_eq!(st.rolled_back_to.as_deref(), Some("r1"));
    assert_eq!(st.retry_at, None);
    m.forced();
    assert_eq!(m.phase(), &Phase::Idle);
    m.unhealthy("again".into(), None);
    m.new_target("r3");
    assert_eq!(m.status(|_| String::new()).rolled_back_to, None);
}

/// Each way an attempt can end, from the phase it ends in: retried on a
/// timer when a retry touches nothing that runs (a pull, a create before
/// the lock gate, the engine away); only on a new target or a forced update
/// when it stopped the running app (put back) or the release was not
/// healthy, since every retry would stop the running app again.
#[test]
fn which_failures_are_retried_on_a_timer() {
    type Step = fn(&mut Machine);
    // (what, how the attempt went, state, retry after, says it is not retried)
    let rows: [(&str, Step, AppState, Option<Duration>, bool); 8] = [
        (
            "a pull refused before the lock gate",
            |m| {
                m.downloading(Some(10));
                m.fail("pull of x refused: registry down".into(), t0());
            },
            AppState::Failed,
            Some(RETRY_MIN),
            false,
        ),
        (
            "a create refused before the lock gate",
            |m| m.fail("engine refused: invalid mount".into(), t0()),
            AppState::Failed,
            Some(RETRY_MIN),
            false,
        ),
        (
            "the engine gone midway",
            |m| {
                m.applying();
                m.engine_down(t0());
            },
            AppState::Waiting,
            Some(ENGINE_RETRY_MIN),
            false,
        ),
        (
            "a stop refused (nothing stopped)",
            |m| {
                m.applying();
                m.fail("engine refused: injected".into(), t0());
            },
            AppState::Failed,
            Some(RETRY_MIN),
            false,
        ),
        (
            "a start refused after the stop",
            |m| {
                m.applying();
                m.put_back("service main: engine refused: exec: /bin/sleeep".into());
            },
            AppState::Failed,
            None,
            true,
        ),
        (
            "a pull after the stop (kill-then-download), old ones started again",
            |m| {
                m.applying();
                m.downloading(Some(0));
                m.put_back("pull of x refused".into());
            },
            AppState::Failed,
            None,
            true,
        ),
        (
            "not healthy, rolled back",
            |m| {
                m.applying();
                m.unhealthy("service main unhealthy".into(), Some("r1".into()));
            },
            AppState::Failed,
            None,
            true,
        ),
        (
            "restored after a restart of holdfastd",
            |m| m.put_back("service main: engine refused".into()),
            AppState::Failed,
            None,
            true,
        ),
    ];
    for (what, step, state, retry, not_retried) in rows {
        let mut m = Machine::new("r2");
        step(&mut m);
        let st = m.status(|_| "then".into());
        assert_eq!(st.state, state, "{what}");
        assert_eq!(at(&m), retry, "{what}");
        assert_eq!(st.retry_at.is_some(), retry.is_some(), "{what}");
        let error = st.error.unwrap_or_default();
        assert_eq!(error.ends_with(NOT_RETRIED), not_retried, "{what}: {error}");
        assert!(!m.waits_on_locks(), "{what}: no lock event runs it again");
    }
}

/// What ends a failure that is not retried on a timer: a new target (a new
/// release, or the same release with another config) or a forced update;
/// reading the machine or time passing do not.
#[test]
fn a_put_back_release_waits_for_a_new_target_or_a_forced_update() {
    type End = fn(&mut Machine);
    let rows: [(&str, End, Phase); 4] = [
        (
            "nothing",
            |_| {},
            Phase::Failed {
                error: "x".into(),
                retry_at: None,
            },
        ),
        ("a new release", |m| m.new_target("r3"), Phase::Idle),
        (
            "the same release, another config",
            |m| m.new_target("r2"),
            Phase::Idle,
        ),
        ("a forced update", |m| m.forced(), Phase::Idle),
    ];
    for (what, end, phase) in rows {
        let mut m = Machine::new("r2");
        m.applying();
        m.put_back("x".into());
        assert_eq!(m.attempts(), 1, "{what}");
        let _ = m.status(|_| String::new());
        end(&mut m);
        assert_eq!(m.phase(), &phase, "{what}");
        assert_eq!(m.retry_at(), None, "{what}");
    }
    // A forced retry that fails the same way is marked again, once.
    let mut m = Machine::new("r2");
    m.applying();
    m.put_back("x".into());
    m.forced();
    m.applying();
    m.put_back("x".into());
    assert_eq!(m.attempts(), 2);
    assert_eq!(m.retry_at(), None);
}

#[test]
#[should_panic(expected = "no transition from idle to idle")]
fn applying_twice_without_a_pass_is_a_bug() {
    let mut m = Machine::new("r1");
    m.applied();
    m.go(Phase::Idle, &["applying"]);
}

#[test]
#[should_panic(expected = "no transition from applying to waiting")]
fn waiting_on_locks_after_taking_them_is_a_bug() {
    let mut m = Machine::new("r1");
    m.applying();
    m.wait(vec![]);
}
