use super::*;

#[test]
fn only_a_failure_after_a_stop_is_a_put_back() {
    let e = || "x".to_string();
    // (outcome, a container the pass stopped runs again, a put back)
    let rows: [(Outcome, bool, bool); 10] = [
        (Outcome::Failed(e()), true, true),
        (Outcome::Unhealthy(e()), true, true),
        (Outcome::Failed(e()), false, false),
        (Outcome::Unhealthy(e()), false, false),
        (Outcome::EngineDown(e()), true, false),
        (Outcome::EngineDown(e()), false, false),
        (Outcome::Waiting(vec![]), true, false),
        (Outcome::SlotBusy(vec![]), true, false),
        (Outcome::Done { gone: false }, false, false),
        (Outcome::PutBack(e()), false, true),
    ];
    for (i, (o, runs_again, put_back)) in rows.into_iter().enumerate() {
        let got = matches!(after_put_back(o, runs_again), Outcome::PutBack(_));
        assert_eq!(got, put_back, "row {i}");
    }
}
