//! Hostile values: numbers out of every range, control characters and
//! huge names in what errors quote.

use serde_json::{json, Value};

use crate::target::parse;

/// A target whose service `s` of app `a` has `fields`.
fn with_service(fields: Value) -> String {
    let mut s = json!({"image": "i:1"});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"version": 1, "apps": {"a": {"release": "r", "services": {"s": s}}}}).to_string()
}

/// `field: raw` (raw JSON text) is refused, the error naming the field.
fn refused_raw(field: &str, raw: &str) -> String {
    let text = with_service(json!({})).replacen(
        "\"image\":\"i:1\"",
        &format!("\"image\":\"i:1\",\"{field}\":{raw}"),
        1,
    );
    let e = parse(&text, "t.json")
        .expect_err(&format!("{field}: {raw} was accepted"))
        .to_string();
    assert!(e.contains(field), "{field}: {raw}: {e}");
    e
}

#[test]
fn numbers_out_of_range_are_refused_with_their_path() {
    let huge = [
        "1e400",
        "-1e400",
        "1e300",
        "18446744073709551616",
        "9223372036854775808",
    ];
    let fields = [
        "mem_limit",
        "memswap_limit",
        "shm_size",
        "cpus",
        "cpu_shares",
        "pids_limit",
        "oom_score_adj",
        "stop_timeout",
    ];
    for f in fields {
        for raw in huge {
            refused_raw(f, raw);
        }
        for raw in [
            "-1",
            "-0.5",
            "\"-1\"",
            "\"1e400\"",
            "\"NaN\"",
            "\"inf\"",
            "true",
            "null",
        ] {
            // pids_limit: -1 means unlimited; null means unset.
            if (f == "pids_limit" && raw == "-1") || raw == "null" {
                continue;
            }
            if f == "oom_score_adj" && raw == "-1" {
                continue;
            }
            refused_raw(f, raw);
        }
    }
    for raw in [
        "1e400",
        "-2",
        "{\"soft\": 1e400, \"hard\": 1}",
        "{\"soft\": 1, \"hard\": 99999999999999999999}",
    ] {
        refused_raw("ulimits", &format!("{{\"nofile\": {raw}}}"));
    }
    for raw in ["1e400", "-1", "0", "4294967296"] {
        refused_raw(
            "healthcheck",
            &format!("{{\"test\": \"true\", \"retries\": {raw}}}"),
        );
    }
    for raw in [
        "\"1e400s\"",
        "\"99999999999999999999999h\"",
        "\"-1s\"",
        "1e400",
    ] {
        refused_raw(
            "healthcheck",
            &format!("{{\"test\": \"true\", \"interval\": {raw}}}"),
        );
        refused_raw("stop_grace_period", raw);
    }
}

#[test]
fn a_size_below_one_byte_is_refused_not_read_as_no_limit() {
    for f in ["mem_limit", "memswap_limit", "shm_size"] {
        let e = refused_raw(f, "\"0.5\"");
        assert!(e.contains("less than one byte"), "{e}");
    }
    // 0 stays "no limit" / the engine's default.
    parse(&with_service(json!({"shm_size": "0"})), "t.json").unwrap();
}

#[test]
fn image_references_with_control_characters_or_too_long_are_refused() {
    for image in [
        "i:1\u{7}",
        "i\n:1",
        "reg/i:1\u{1b}[31m",
        "i:1\u{85}",
        "i:\u{0}",
    ] {
        let e = parse(&with_service(json!({"image": image})), "t.json").unwrap_err();
        let e = e.to_string();
        assert!(e.contains(".image: "), "{e}");
        assert!(!e.contains(|c: char| c.is_control()), "{e:?}");
    }
    let long = "a".repeat(256);
    let e = parse(
        &with_service(json!({"image": format!("{long}:1")})),
        "t.json",
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 255"), "{e}");
    let e = parse(
        &with_service(json!({"image": format!("reg:5000/i:{}", "t".repeat(129))})),
        "t.json",
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 128"), "{e}");
    for ok in [
        "registry.local:5000/ns/app:1.2",
        "busybox",
        "reg:5000/app@sha256:0123456789012345678901234567890123456789012345678901234567890123",
    ] {
        parse(&with_service(json!({"image": ok})), "t.json").unwrap();
    }
    parse(
        &with_service(json!({"image": format!("{}:{}", "a".repeat(255), "t".repeat(128))})),
        "t.json",
    )
    .unwrap();
}

/// Every error that quotes a value or a key of the target stays short
/// and without raw control characters, whatever the value's size.
#[test]
fn errors_quoting_a_100_kb_name_stay_bounded() {
    let big = format!("\u{1b}[31m\n{}", "x".repeat(100_000));
    let service_cases = [
        json!({"image": big}),
        json!({"volumes": [format!("{big}:/d")]}),
        json!({"volumes": [format!("data:/{big}:zz")]}),
        json!({"tmpfs": [format!("/t:{big}")]}),
        json!({"devices": [format!("/dev/{big}:/x:q")]}),
        json!({"network_mode": big}),
        json!({"network_mode": format!("container:{big}")}),
        json!({"user": big}),
        json!({"stop_signal": big}),
        json!({"cap_add": [big]}),
        json!({"sysctls": {big.clone(): "1"}}),
        json!({"extra_hosts": [format!("{big}:1.2.3.4")]}),
        json!({"dns": [big]}),
        json!({"hostname": big}),
        json!({"labels": {format!("io.holdfast.{big}"): "x"}}),
        json!({"environment": {format!("{big}="): "x"}}),
        json!({"ports": [big]}),
        json!({"security_opt": [big]}),
        json!({"ulimits": {big.clone(): 1}}),
        json!({"logging": {"driver": big}}),
        json!({"logging": {"driver": "local", "options": {big.clone(): "1"}}}),
        json!({"healthcheck": {"test": [big]}}),
        json!({"mem_limit": big}),
        json!({"cpus": big}),
        json!({"stop_grace_period": big}),
        json!({big.clone(): 1}),
        json!({"restart": big}),
    ];
    for (i, fields) in service_cases.iter().enumerate() {
        let e = parse(&with_service(fields.clone()), "t.json")
            .expect_err(&format!("case {i} accepted"))
            .to_string();
        assert!(e.len() < 2000, "case {i}: {} bytes: {}", e.len(), &e[..300]);
        assert!(!e.contains(|c: char| c.is_control()), "case {i}: {e:?}");
    }
    let app_cases = [
        json!({"release": "r", "networks": {big.clone(): {}}}),
        json!({"release": "r", "volumes": {big.clone(): {}}}),
        json!({"release": big}),
        json!({"release": "r", "networks": {"n": {"driver": big}}}),
        json!({"release": "r", "networks": {"n": {"ipam": {"config": [{"subnet": big}]}}}}),
    ];
    for (i, app) in app_cases.iter().enumerate() {
        let t = json!({"version": 1, "apps": {"a": app}}).to_string();
        let e = parse(&t, "t.json")
            .expect_err(&format!("app case {i} accepted"))
            .to_string();
        assert!(
            e.len() < 2000,
            "app case {i}: {} bytes: {}",
            e.len(),
            &e[..300]
        );
        assert!(!e.contains(|c: char| c.is_control()), "app case {i}: {e:?}");
    }
}
