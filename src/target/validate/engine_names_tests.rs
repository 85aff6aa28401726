//! Engine names two apps would share, and the engine's name limits.

use serde_json::{json, Value};

use super::validate;
use crate::target::Target;

fn target(apps: Value) -> Target {
    serde_json::from_value(json!({"version": 1, "apps": apps})).unwrap()
}

/// Refused at `path`, the reason containing each of `want`.
fn refused(apps: Value, path: &str, want: &[&str]) {
    let (p, r) = validate(&target(apps.clone())).expect_err(&apps.to_string());
    assert_eq!(p, path, "{apps}: {r}");
    for w in want {
        assert!(r.contains(w), "{apps}: {w:?} not in {r:?}");
    }
}

fn svc(extra: Value) -> Value {
    let mut s = json!({"image": "i:1"});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[test]
fn a_volume_two_apps_would_share_is_refused() {
    // The case: a's b_data and a_b's data are both a_b_data.
    refused(
        json!({
            "a": {"release": "1", "services": {"s": svc(json!({"volumes": ["b_data:/d"]}))}},
            "a_b": {"release": "1", "services": {"t": svc(json!({"volumes": ["data:/d"]}))}}
        }),
        "apps.a_b.services.t.volumes[0]",
        &[
            "app a_b's volume \"data\" is engine volume \"a_b_data\"",
            "app a's (\"b_data\")",
            "rename one",
        ],
    );
    // Declared volumes too, and a declared one against a mounted one.
    refused(
        json!({
            "a": {"release": "1", "volumes": {"b_data": {}}},
            "a_b": {"release": "1", "volumes": {"data": {}}}
        }),
        "apps.a_b.volumes.data",
        &["engine volume \"a_b_data\""],
    );
}

#[test]
fn a_network_two_apps_would_share_is_refused() {
    // x's network y_default and x_y's default network: x_y_default.
    refused(
        json!({
            "x": {"release": "1", "networks": {"y_default": {}},
                  "services": {"s": svc(json!({"networks": ["y_default"]}))}},
            "x_y": {"release": "1", "services": {"s": svc(json!({}))}}
        }),
        "apps.x_y.services.s",
        &[
            "app x_y's network \"default\" is engine network \"x_y_default\"",
            "app x's (\"y_default\")",
        ],
    );
    refused(
        json!({
            "x": {"release": "1", "networks": {"y_n": {}}},
            "x_y": {"release": "1", "networks": {"n": {}}, "services": {"s": svc(json!({"networks": ["n"]}))}}
        }),
        "apps.x_y.networks.n",
        &["engine network \"x_y_n\""],
    );
}

#[test]
fn containers_two_apps_would_share_are_refused() {
    // The config hash does not cover the app's name: equal services of
    // a (service b_s) and a_b (service s) would be one container name.
    refused(
        json!({
            "a": {"release": "1", "services": {"b_s": svc(json!({}))}},
            "a_b": {"release": "1", "services": {"s": svc(json!({}))}}
        }),
        "apps.a_b.services.s",
        &[
            "app a_b's service \"s\" has containers named \"a_b_s_<config hash>\"",
            "app a's (\"b_s\")",
        ],
    );
}

#[test]
fn names_that_only_look_alike_pass() {
    // Different kinds, one app, or no `_` boundary shared: no clash.
    validate(&target(json!({
        "a": {"release": "1", "networks": {"b_x": {}}, "volumes": {"b_y": {}},
              "services": {"b_z": svc(json!({"networks": ["b_x"], "volumes": ["b_y:/d", "b_y:/e"]}))}},
        "a_b": {"release": "1", "networks": {"y": {}}, "volumes": {"xx": {}},
                "services": {"zz": svc(json!({"networks": ["y"], "volumes": ["xx:/d"]}))}},
        "ab": {"release": "1", "volumes": {"x_y": {}}},
        "c": {"release": "1", "services": {"s": svc(json!({"network_mode": "host"}))}},
        "c_default": {"release": "1"}
    })))
    .unwrap();
    // c's service on the host network makes no c_default: c's name
    // "default" is free for nothing to clash with; an app with network
    // mode host and one declaring the same network name apart.
    validate(&target(json!({
        "c": {"release": "1", "services": {"s": svc(json!({"network_mode": "host"}))}},
        "c_x": {"release": "1", "services": {"s": svc(json!({"network_mode": "none"}))}}
    })))
    .unwrap();
}

#[test]
fn a_volume_name_the_engine_cannot_make_a_directory_of_is_refused() {
    let app = "a".repeat(128);
    let long = "v".repeat(127);
    // 128 + 1 + 127 = 256 bytes: "file name too long" in the engine.
    refused(
        json!({app.clone(): {"release": "1", "services": {"s": svc(json!({"volumes": [format!("{long}:/d")]}))}}}),
        &format!("apps.{app}.services.s.volumes[0]"),
        &["(256 bytes)", "at most 255 bytes"],
    );
    refused(
        json!({app.clone(): {"release": "1", "volumes": {long.clone(): {}}}}),
        &format!("apps.{app}.volumes.{long}"),
        &["at most 255 bytes"],
    );
    // 255 bytes is fine.
    validate(&target(
        json!({app: {"release": "1", "volumes": {"v".repeat(126): {}}}}),
    ))
    .unwrap();
}
