//! Hostile files: each bound refused with its message at its place, and
//! the work behind each one linear (hence no quadratic sizes here run
//! long). Timings are not asserted: they are in the report of the change.

use super::super::interpolate::{MAX_NESTING, MAX_VALUE_BYTES};
use super::super::yaml::{parse, MAX_KEY_CHARS};
use super::{convert_with, err, err_with, json, service_yaml, FakeHost};

/// `${A:-` `depth` times around `x`.
fn nested(depth: usize) -> String {
    format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth))
}

fn image(value: &str) -> String {
    format!("services:\n  s:\n    image: \"{value}\"\n")
}

#[test]
fn interpolation_nests_32_deep_and_no_deeper() {
    let v = json(&image(&nested(MAX_NESTING)));
    assert_eq!(v["services"]["s"]["image"], "x");
    assert_eq!(
        err(&image(&nested(MAX_NESTING + 1))),
        "compose.yml:3:12: services.s.image: interpolation: variables nested more than 32 deep"
    );
    // 30,000 levels overflowed the stack after seconds of copying.
    assert_eq!(
        err(&image(&nested(30_000))),
        "compose.yml:3:12: services.s.image: interpolation: variables nested more than 32 deep"
    );
    // A default not taken is read over, and bounded alike.
    let host = FakeHost::default().env("A", "set");
    assert_eq!(
        err_with(&image(&nested(100_000)), &host),
        "compose.yml:3:12: services.s.image: interpolation: variables nested more than 32 deep"
    );
    let v = serde_json::to_value(convert_with(&image(&nested(MAX_NESTING)), &host).unwrap());
    assert_eq!(v.unwrap()["services"]["s"]["image"], "set");
}

#[test]
fn a_value_is_at_most_1_mib_once_interpolated() {
    let half = "a".repeat(MAX_VALUE_BYTES / 2 + 1);
    let host = FakeHost::default().env("H", &half);
    let ok = convert_with(&service_yaml("labels: {l: \"$H\"}"), &host).unwrap();
    assert_eq!(
        ok.services.values().next().unwrap().labels["l"].len(),
        half.len()
    );
    assert_eq!(
        err_with(&service_yaml("labels: {l: \"$H$H\"}"), &host),
        "compose.yml:4:17: services.s.labels.l: interpolation: the value is longer than 1 MiB"
    );
    // Written out or pasted in, alike.
    let long = "b".repeat(MAX_VALUE_BYTES + 1);
    assert_eq!(
        err(&service_yaml(&format!("labels: {{l: {long}}}"))),
        "compose.yml:4:17: services.s.labels.l: interpolation: the value is longer than 1 MiB"
    );
    // `$$` is a `$`, run after run, in one pass.
    let dollars = "$$".repeat(500_000);
    let v = json(&service_yaml(&format!("labels: {{l: \"{dollars}\"}}")));
    assert_eq!(
        v["services"]["s"]["labels"]["l"].as_str().unwrap().len(),
        500_000
    );
}

#[test]
fn variables_paste_at_most_16_mib_into_a_file() {
    let mb = "v".repeat(1_000_000);
    let host = FakeHost::default().env("V", &mb);
    let mut labels = String::from("labels:\n");
    for i in 0..17 {
        labels.push_str(&format!("  l{i}: $V\n"));
    }
    assert_eq!(
        err_with(&service_yaml(&labels), &host),
        "compose.yml:21:12: services.s.labels.l16: interpolation: variables paste more than 16 MiB into this file in all"
    );
    // A variable named without `=` in `environment` pastes its value too.
    let mut services = String::from("x-e: &e [V]\nservices:\n");
    for i in 0..17 {
        services.push_str(&format!("  s{i}:\n    image: i\n    environment: *e\n"));
    }
    assert_eq!(
        err_with(&services, &host),
        "compose.yml:1:10: services.s16.environment.V: variables paste more than 16 MiB into this file in all"
    );
    // Looking a big variable up pastes nothing, and is no copy.
    let unused = "${V:+}".repeat(100_000);
    let v = serde_json::to_value(convert_with(&image(&format!("{unused}i")), &host).unwrap());
    assert_eq!(v.unwrap()["services"]["s"]["image"], "i");
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
fn port_ranges_are_bounded() {
    assert_eq!(
        err(&service_yaml("ports: [\"0-4294967295:0-4294967295\"]")),
        "compose.yml:4:13: services.s.ports[0]: \"0-4294967295\":\"0-4294967295\" is not a port or a range like 8000-8009"
    );
    let e = err(&service_yaml(
        "ports: [\"1-40000:1-40000\", \"1-40000:1-40000/udp\"]",
    ));
    assert_eq!(
        e,
        "compose.yml:4:32: services.s.ports[1]: the ports of this file expand to more than 65536 mappings"
    );
}

#[test]
fn paths_of_long_names_are_bounded_in_all() {
    let mut file = String::from("x-l: &l\n");
    for i in 0..4000 {
        file.push_str(&format!("  l{i}: v\n"));
    }
    file.push_str("services:\n  s:\n    image: i\nnetworks:\n");
    // 20 networks of 4,000 labels: under 200,000 values, 82 MB of paths.
    for j in 0..20 {
        file.push_str(&format!("  ? {}{j}\n  : labels: *l\n", "n".repeat(1000)));
    }
    let e = err(&file);
    assert!(
        e.ends_with(": the paths of this file's values pass 16 MiB in all (long names with many values below them)"),
        "{e}"
    );
}

#[test]
fn the_compose_file_itself_is_bounded() {
    let src = super::super::Source {
        name: "big.yml",
        bytes: &vec![b'#'; (4 << 20) + 1],
        dir: std::path::Path::new("/"),
    };
    let app = crate::names::AppName::new("web").unwrap();
    let e = super::super::load(&src, &app, None, &FakeHost::default()).unwrap_err();
    assert_eq!(e.to_string(), "big.yml: larger than 4 MiB (4194304 bytes)");
}

#[test]
fn a_byte_order_mark_starts_nothing() {
    let host = FakeHost::default()
        .file("/srv/app/.env", "\u{FEFF}TAG=i:1\r\n")
        .file("/srv/app/e.env", "\u{FEFF}A=1\n");
    let yaml = "\u{FEFF}services:\n  s:\n    image: $TAG\n    env_file: e.env\n";
    let v = serde_json::to_value(convert_with(yaml, &host).unwrap()).unwrap();
    assert_eq!(v["services"]["s"]["image"], "i:1");
    assert_eq!(
        v["services"]["s"]["environment"],
        serde_json::json!({"A": "1"})
    );
}

#[test]
fn env_files_are_bounded_and_never_quoted() {
    let secret = "PASSWORD is hunter2\n";
    let host = FakeHost::default().file("/srv/app/s.env", secret);
    let e = err_with(&service_yaml("env_file: s.env"), &host);
    assert_eq!(
        e,
        "compose.yml:4:15: services.s.env_file: /srv/app/s.env:1:1: not KEY=VALUE, a comment (#) or a blank line"
    );
    // /proc/self/environ: NUL-separated, the whole environment on a line.
    let host = FakeHost::default().file("/srv/app/environ", "HOME=/root\0TOKEN=s3cr3t\0");
    let e = err_with(&service_yaml("env_file: environ"), &host);
    assert_eq!(
        e,
        "compose.yml:4:15: services.s.env_file: /srv/app/environ:1:11: a NUL character: an env file holds lines of text, KEY=VALUE"
    );
    let host = FakeHost::default().file("/srv/app/.env", "A=1\nTOKEN=\"s3cr3t $\"\n");
    let e = err_with(&service_yaml(""), &host);
    assert_eq!(
        e,
        "/srv/app/.env:2:7: a \"$\" that starts no variable; write \"$$\" for a literal \"$\""
    );
    // Sizes: one file, and all the files one compose file reads.
    let big = format!("A={}\n", "a".repeat(1 << 20));
    let host = FakeHost::default().file("/srv/app/.env", &big);
    assert_eq!(
        err_with(&service_yaml(""), &host),
        "/srv/app/.env: is larger than 1048576 bytes"
    );
    let file = format!("A={}\n", "a".repeat(1_000_000));
    let host = FakeHost::default().file("/srv/app/e.env", &file);
    let mut services = String::from("services:\n");
    for i in 0..17 {
        services.push_str(&format!("  s{i}:\n    image: i\n    env_file: e.env\n"));
    }
    assert_eq!(
        err_with(&services, &host),
        "compose.yml:52:15: services.s16.env_file: /srv/app/e.env: one file too many: the .env and env_files one compose file reads hold at most 16 MiB in all"
    );
    // 20,000 keys, each set twice, the second time from the first: a
    // rescan per line was quadratic.
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("K{i}=a\nK{i}=${{K{i}}}b\n"));
    }
    let vars = super::interpolation::env_file(&text, &[]).unwrap();
    assert_eq!(vars.len(), 20_000);
    assert_eq!(
        (vars[19_999].0.as_str(), &*vars[19_999].1),
        ("K19999", "ab")
    );
}

#[test]
fn messages_quote_at_most_200_characters_of_the_file() {
    let long = "p".repeat(100_000);
    let cases = [
        service_yaml(&format!("ports: [\"{long}\"]")),
        service_yaml(&format!("volumes: [\"{long}\"]")),
        service_yaml(&format!("privileged: {long}")),
        image(&format!("${{{long}")),
        image(&format!("${{A:?{long}}}")),
        image(&format!("${{{long} }}")),
        service_yaml(&format!("networks: [{long}]")),
        // The target's own checks quote the value whole; cut here.
        service_yaml(&format!("stop_signal: {long}")),
        format!("services:\n  ? {}\n  : image: i\n", "n".repeat(1000)),
        format!(
            "services:\n  s:\n    image: i\n    ? {}\n    : 1\n",
            "z".repeat(1000)
        ),
    ];
    for yaml in cases {
        let e = err(&yaml);
        assert!(e.len() < 1500, "{} bytes: {}", e.len(), &e[..300]);
    }
}
