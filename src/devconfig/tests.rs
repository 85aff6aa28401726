use super::*;
use serde_json::json;

#[test]
fn device_beats_top_level_beats_fleet() {
    let c = json!({
        "deviceConfig": {"RESIN_OVERRIDE_LOCK": "0"},
        "BALENA_SUPERVISOR_OVERRIDE_LOCK": "1",
        "fleetConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"}
    });
    assert_eq!(
        lock_override(&c).describe(),
        "off (deviceConfig.RESIN_OVERRIDE_LOCK)"
    );
    let c = json!({"BALENA_SUPERVISOR_OVERRIDE_LOCK": true, "fleetConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "0"}});
    assert_eq!(
        lock_override(&c).describe(),
        "on (BALENA_SUPERVISOR_OVERRIDE_LOCK)"
    );
    let c = json!({"fleetConfig": {"RESIN_SUPERVISOR_OVERRIDE_LOCK": "1"}});
    assert_eq!(
        lock_override(&c).describe(),
        "on (fleetConfig.RESIN_SUPERVISOR_OVERRIDE_LOCK)"
    );
    assert_eq!(lock_override(&json!({"uuid": "x"})).describe(), "off");
}

#[test]
fn current_name_beats_legacy_within_a_place() {
    let c = json!({"deviceConfig": {"RESIN_OVERRIDE_LOCK": "1", "BALENA_SUPERVISOR_OVERRIDE_LOCK": "0",
                                     "BALENA_OVERRIDE_LOCK": "1"}});
    assert_eq!(
        lock_override(&c).describe(),
        "off (deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK)"
    );
    let c = json!({"deviceConfig": {"RESIN_OVERRIDE_LOCK": "1", "BALENA_OVERRIDE_LOCK": "0"}});
    assert_eq!(
        lock_override(&c).describe(),
        "off (deviceConfig.BALENA_OVERRIDE_LOCK)"
    );
}

fn device(v: Value) -> Override {
    lock_override(&json!({"deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": v}}))
}

#[test]
fn accepts_what_balena_accepts() {
    for on in [
        json!("1"),
        json!("true"),
        json!("on"),
        json!("TRUE"),
        json!("On"),
        json!(true),
        json!(1),
    ] {
        let o = device(on.clone());
        assert!(o.enabled && o.error.is_none(), "{on}: {o:?}");
    }
    for off in [
        json!("0"),
        json!("false"),
        json!("off"),
        json!("False"),
        json!("OFF"),
        json!(""),
        json!(false),
        json!(0),
        Value::Null,
    ] {
        let o = device(off.clone());
        assert!(!o.enabled && o.error.is_none(), "{off}: {o:?}");
        assert_eq!(o.source, "deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK");
    }
}

#[test]
fn other_values_are_errors_and_off() {
    for bad in [
        json!("yes"),
        json!("no"),
        json!("2"),
        json!(" 1"),
        json!("truee"),
        json!(2),
        json!(-1),
        json!(1.0),
        json!([]),
        json!({}),
    ] {
        let o = device(bad.clone());
        assert!(!o.enabled, "{bad}");
        assert_eq!(
            o.error.unwrap(),
            format!(
                "deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK = {bad} is not one of \
                 \"1\", \"true\", \"on\", true, 1 (on) or \"0\", \"false\", \"off\", \"\", false, 0, \
                 null (off), strings in any case; the override stays off"
            )
        );
    }
    // A bad value in the first place that sets a name is not skipped.
    let o = lock_override(&json!({"deviceConfig": {"RESIN_OVERRIDE_LOCK": "yes"},
                                  "BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"}));
    assert!(!o.enabled && o.error.is_some());
    let o = device(json!("a\u{0}b"));
    assert!(!o.error.unwrap().contains('\0'));
}

#[test]
fn duplicate_keys_reject_the_whole_file() {
    let cases = [
        (
            "{\"deviceConfig\": {\"BALENA_SUPERVISOR_OVERRIDE_LOCK\": \"0\",\n  \"BALENA_SUPERVISOR_OVERRIDE_LOCK\": \"1\"}}",
            "c.json: line 2 column 37: deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK: duplicate key \"BALENA_SUPERVISOR_OVERRIDE_LOCK\"",
        ),
        (
            "{\"deviceConfig\": {}, \"deviceConfig\": {\"RESIN_OVERRIDE_LOCK\": \"1\"}}",
            "c.json: line 1 column 37: deviceConfig: duplicate key \"deviceConfig\"",
        ),
        (
            "{\"uuid\": \"a\", \"uuid\": \"b\"}",
            "c.json: line 1 column 22: uuid: duplicate key \"uuid\"",
        ),
        (
            "{\"os\": {\"network\": [{\"a\": 1, \"a\": 2}]}}",
            "c.json: line 1 column 34: os.network[0].a: duplicate key \"a\"",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text, "c.json").unwrap_err().to_string();
        assert!(e.starts_with(want), "{want:?} not at the start of {e:?}");
    }
    // Equal keys in different objects are fine.
    parse("{\"a\": {\"x\": 1}, \"b\": {\"x\": 1}, \"x\": 1}", "c.json").unwrap();
}

#[test]
fn device_values_and_their_errors() {
    let (d, e) = device_info(
        &json!({"uuid": "abc", "deviceType": "raspberrypi4-64",
        "listenPort": 48485, "deviceConfig": {"uuid": "no"}}),
        None,
    );
    let good = DeviceInfo {
        uuid: Some("abc".into()),
        device_type: Some("raspberrypi4-64".into()),
        listen_port: Some(48485),
    };
    assert_eq!(d.as_ref(), Some(&good));
    assert!(e.is_empty());
    let (d, _) = device_info(&json!({"listenPort": "8080"}), None);
    assert_eq!(d.unwrap().listen_port, Some(8080));
    assert_eq!(device_info(&json!({}), None).0, Some(DeviceInfo::default()));
    // Absent or null is unset, also after good values.
    let (d, e) = device_info(&json!({"uuid": null}), Some(&good));
    assert_eq!((d, e.len()), (Some(DeviceInfo::default()), 0));
    for bad in [json!(0), json!(65536), json!("x"), json!(-1), json!(true)] {
        let (d, e) = device_info(&json!({"listenPort": bad}), None);
        assert_eq!(d, None, "nothing good read yet: not known");
        assert!(e[0].starts_with("listenPort = "), "{e:?}");
        assert!(e[0].ends_with("not known until it is fixed"), "{e:?}");
        let (d, e) = device_info(&json!({"uuid": "abc", "listenPort": bad}), Some(&good));
        assert_eq!(
            d.unwrap().listen_port,
            Some(48485),
            "the last good port stays"
        );
        assert!(
            e[0].ends_with("the last good value stays in force"),
            "{e:?}"
        );
    }
}

#[test]
fn a_bad_uuid_keeps_the_last_good_one() {
    let good = DeviceInfo {
        uuid: Some("abc".into()),
        device_type: Some("rpi".into()),
        listen_port: None,
    };
    for bad in [
        json!("ab\u{1}c"),
        json!("a\nb"),
        json!(""),
        json!(5),
        json!(["x"]),
    ] {
        let (d, e) = device_info(&json!({"uuid": bad, "deviceType": "new"}), Some(&good));
        let d = d.unwrap();
        assert_eq!(d.uuid.as_deref(), Some("abc"), "{bad}");
        assert_eq!(
            d.device_type.as_deref(),
            Some("new"),
            "the good values apply"
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("uuid = "), "{e:?}");
        assert!(!e[0].contains('\u{1}') && !e[0].contains('\n'), "{e:?}");
    }
    let (d, e) = device_info(&json!({"uuid": 5, "deviceType": "a\nb"}), None);
    assert_eq!((d, e.len()), (None, 2));
}

#[test]
fn trailing_input_rejects_the_file() {
    let e = parse("{\"uuid\": \"a\"}\n{\"uuid\": \"b\"}", "c.json").unwrap_err();
    assert_eq!((e.line, e.column), (2, 1));
    assert!(e.reason.starts_with("more input after the end"), "{e}");
}

#[test]
fn bad_json_has_line_and_column() {
    let e = parse("{\n  \"uuid\": \"a\",\n  oops\n}", "/mnt/boot/config.json").unwrap_err();
    assert_eq!((e.line, e.column), (3, 3));
    assert!(
        e.to_string()
            .starts_with("/mnt/boot/config.json: line 3 column 3: key must be a string"),
        "{e}"
    );
}
