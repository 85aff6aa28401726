//! Hostile files: each bound refused with its message at its place, and
//! the work behind each one linear (hence no quadratic sizes here run
//! long). Timings are not asserted: they are in the report of the change.

use super::super::yaml::{parse, MAX_KEY_CHARS};
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

#[test]
fn aliases_expand_to_at_most_16_mib() {
    let big = "y".repeat(1 << 20);
    // 1 MiB, its anchor's copy, then one MiB per alias: the 14th passes.
    let file = format!(
        "x-big: &a \"{big}\"\nservices:\n  s:\n    image: i\n    labels: [{}]\n",
        vec!["*a"; 20].join(", ")
    );
    assert_eq!(
        err(&file),
        "compose.yml:5:66: services.s.labels[13]: the anchors and aliases expand the file to more than 16 MiB"
    );
    // Many small aliases: the count of values.
    let file = format!(
        "x-a: &a 1\nservices:\n  s:\n    image: i\n    labels: [{}]\n",
        vec!["*a"; 250_000].join(", ")
    );
    let e = err(&file);
    assert!(
        e.starts_with("compose.yml:5:")
            && e.ends_with(": the aliases expand to more than 200000 values"),
        "{e}"
    );
    // Each anchor keeps a copy: anchors nested over a big value count.
    let mut nest = String::new();
    for i in 0..20 {
        nest.push_str(&format!("{}k{i}: &a{i}\n", "  ".repeat(i)));
    }
    nest.push_str(&format!(
        "{}\"{}\"\n",
        "  ".repeat(20),
        "z".repeat(1_000_000)
    ));
    let e = parse(&nest).unwrap_err();
    assert_eq!(
        e.reason,
        "the anchors and aliases expand the file to more than 16 MiB"
    );
}

#[test]
fn keys_are_at_most_1024_characters() {
    let ok = "k".repeat(MAX_KEY_CHARS);
    let v = json(&service_yaml(&format!("labels:\n  ? {ok}\n  : v")));
    assert_eq!(v["services"]["s"]["labels"][&ok], "v");
    let long = "é".repeat(MAX_KEY_CHARS + 1);
    assert_eq!(
        err(&service_yaml(&format!("labels:\n  ? {long}\n  : v"))),
        "compose.yml:5:9: services.s.labels: a key of 1025 characters; a key is at most 1024"
    );
}

#[test]
fn an_alias_of_a_mapping_is_no_key() {
    // This reached unreachable!() and aborted.
    assert_eq!(
        err("x: &a {b: 1}\ny:\n  *a : 2\nservices: {}\n"),
        "compose.yml:3:3: y: a mapping key must be a string, not a list or mapping"
    );
}

#[test]
fn many_keys_and_merges_are_checked_with_sets() {
    // A rescan per key was quadratic (tests/hostile_compose.rs runs the
    // big ones).
    let mut labels = String::from("labels:\n");
    for i in 0..20_000 {
        labels.push_str(&format!("  k{i}: v\n"));
    }
    let v = json(&service_yaml(&labels));
    assert_eq!(
        v["services"]["s"]["labels"].as_object().unwrap().len(),
        20_000
    );
    labels.push_str("  k19999: again\n");
    assert_eq!(
        err(&service_yaml(&labels)),
        "compose.yml:20005:7: services.s.labels.k19999: duplicate key \"k19999\"; give each key once"
    );
    // A merged mapping of 10,000 keys into one of 10,000: own keys win,
    // then the first merged mapping's.
    let mut file = String::from("x-m: &m\n");
    for i in 0..10_000 {
        file.push_str(&format!("  m{i}: merged\n"));
    }
    file.push_str("x-n: &n {m0: second, n: second}\nservices:\n  s:\n    image: i\n    labels:\n      <<: [*m, *n]\n      m1: own\n");
    for i in 0..10_000 {
        file.push_str(&format!("      o{i}: own\n"));
    }
    let v = json(&file);
    let l = &v["services"]["s"]["labels"];
    assert_eq!(l.as_object().unwrap().len(), 20_001);
    assert_eq!(
        (&l["m0"], &l["m1"], &l["n"]),
        (&"merged".into(), &"own".into(), &"second".into())
    );
}
