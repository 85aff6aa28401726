//! Nothing of a target may make a file or directory inside a service's
//! lock directory on the host: a mount point, a device node, a working
//! directory there would be a lock that outlives the container.

use serde_json::{json, Value};

use super::service::validate_service;
use crate::target::ServiceSpec;

fn check(v: Value) -> Result<(), (String, String)> {
    let mut s = json!({"image": "i"});
    for (k, val) in v.as_object().unwrap() {
        s[k] = val.clone();
    }
    validate_service(&serde_json::from_value::<ServiceSpec>(s).unwrap())
}

/// Refused at `path`, the reason naming the lock directory.
fn refused(v: Value, path: &str) {
    let (p, r) = check(v.clone()).expect_err(&v.to_string());
    assert_eq!(p, path, "{v}: {r}");
    assert!(
        r.contains("where holdfast mounts the service's lock directory"),
        "{v}: {r}"
    );
}

#[test]
fn mounts_on_or_under_the_lock_directory_are_refused_in_every_spelling() {
    let under = [
        "/tmp/balena",
        "/tmp/balena/",
        "/tmp/balena/updates.lock",
        "/tmp/balena//updates.lock/",
        "//tmp/balena/updates.lock",
        "/tmp//balena",
        "/tmp/./balena/./x",
        "/./tmp/balena",
        "/tmp/resin",
        "/tmp/resin/resin-updates.lock",
        "/tmp/balena/handover-complete",
        "/tmp/balena/a/b/c",
    ];
    for p in under {
        refused(json!({"tmpfs": [p]}), "tmpfs[0]");
        refused(json!({"tmpfs": [format!("{p}:size=1m")]}), "tmpfs[0]");
        refused(json!({"volumes": [format!("data:{p}")]}), "volumes[0]");
        refused(json!({"volumes": [format!("/srv/x:{p}:ro")]}), "volumes[0]");
        refused(json!({"devices": [format!("/dev/null:{p}")]}), "devices[0]");
        refused(
            json!({"devices": [format!("/dev/null:{p}:rw")]}),
            "devices[0]",
        );
        // The lock directory itself exists: a working directory there
        // makes nothing (below).
        let the_dir = [
            "/tmp/balena",
            "/tmp/balena/",
            "/tmp//balena",
            "/./tmp/balena",
            "/tmp/resin",
        ];
        if !the_dir.contains(&p) {
            refused(json!({"working_dir": p}), "working_dir");
        }
    }
    // `..` and relative paths never get this far.
    for p in [
        "/tmp/x/../balena/updates.lock",
        "tmp/balena/updates.lock",
        "../tmp/balena",
    ] {
        let (path, r) = check(json!({"tmpfs": [p]})).unwrap_err();
        assert_eq!(path, "tmpfs[0]");
        assert!(
            r.contains("'..'") || r.contains("not an absolute path"),
            "{p}: {r}"
        );
    }
}

#[test]
fn neighbours_of_the_lock_directory_are_fine() {
    for p in [
        "/tmp",
        "/tmp/",
        "/tmp/balena2",
        "/tmp/balena.d/x",
        "/tmp/resinx",
        "/data/tmp/balena",
        "/tmp/BALENA",
    ] {
        check(json!({"tmpfs": [p]})).unwrap();
        check(json!({"volumes": [format!("data:{p}")]})).unwrap();
        check(json!({"devices": [format!("/dev/null:{p}")]})).unwrap();
        check(json!({"working_dir": p})).unwrap();
    }
    // The lock directory exists: working in it makes nothing.
    check(json!({"working_dir": "/tmp/balena"})).unwrap();
    // A device given without a container path lands at its host path.
    check(json!({"devices": ["/dev/ttyS0"]})).unwrap();
}
