//! Hostile files: each bound refused with its message at its place, and
//! the work behind each one linear (hence no quadratic sizes here run
//! long). Timings are not asserted: they are in the report of the change.

use super::{err, err_with, json, service_yaml, FakeHost};

#[test]
fn non_finite_numbers_are_refused_not_dropped() {
    for field in ["mem_limit", "memswap_limit", "shm_size", "cpus"] {
        for value in [".inf", "-.inf", ".NaN", "1e400", "!!float .inf"] {
            let shown = value.trim_start_matches("!!float ");
            let column = 5 + field.len() + 2;
            assert_eq!(
                err(&service_yaml(&format!("{field}: {value}"))),
                format!("compose.yml:4:{column}: services.s.{field}: \"{shown}\" is not a finite number"),
            );
        }
        // As strings (quoted, or from a variable) the target's parsers refuse them.
        let host = FakeHost::default().env("X", "inf");
        for value in ["\".inf\"", "\"1e400\"", "$X"] {
            let e = err_with(&service_yaml(&format!("{field}: {value}")), &host);
            assert!(e.starts_with("compose.yml:4:"), "{e}");
        }
    }
    // Whole-number fields never took a float.
    for field in ["cpu_shares", "pids_limit", "oom_score_adj"] {
        let e = err(&service_yaml(&format!("{field}: .inf")));
        assert!(e.ends_with("expected a whole number, not \".inf\""), "{e}");
    }
    let e = err(&service_yaml("healthcheck:\n  retries: 1e400"));
    assert!(e.ends_with("expected a whole number, not \"1e400\""), "{e}");
    let e = err(&service_yaml("ulimits:\n  nofile: {soft: .nan, hard: 1}"));
    assert!(e.ends_with("expected a whole number, not \".nan\""), "{e}");
    // Finite numbers still go through.
    let v = json(&service_yaml("cpus: 1.5\nmem_limit: 8388608"));
    assert_eq!(
        (
            &v["services"]["s"]["cpus"],
            &v["services"]["s"]["mem_limit"]
        ),
        (&1.5.into(), &8388608.into())
    );
}
