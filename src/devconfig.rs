//! balenaOS-style `config.json`: where the lock override is set, and the
//! device's identity and API port its containers are told. Pure: text in,
//! the effective override (and where it came from) and the device values
//! out.

use serde::Serialize;
use serde_json::Value;

/// Current name first, legacy names after (the order they win in).
pub const OVERRIDE_NAMES: [&str; 4] = [
    "BALENA_SUPERVISOR_OVERRIDE_LOCK",
    "RESIN_SUPERVISOR_OVERRIDE_LOCK",
    "BALENA_OVERRIDE_LOCK",
    "RESIN_OVERRIDE_LOCK",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line} column {column}: {reason}")]
pub struct JsonError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// The lock override in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Override {
    pub enabled: bool,
    /// e.g. `deviceConfig.BALENA_SUPERVISOR_OVERRIDE_LOCK`; empty when unset.
    pub source: String,
    /// A value that is neither on nor off (then it is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Override {
    pub fn describe(&self) -> String {
        match (self.enabled, self.source.is_empty()) {
            (true, _) => format!("on ({})", self.source),
            (false, true) => "off".into(),
            (false, false) => format!("off ({})", self.source),
        }
    }
}

/// Parses config.json; only its JSON validity matters here. A key given
/// twice anywhere rejects the whole file: which copy wins would decide
/// whether the override deletes the app locks.
pub fn parse(text: &str, file: &str) -> Result<Value, JsonError> {
    crate::target::check_strict_json(text).map_err(|e| JsonError {
        file: file.to_owned(),
        line: e.line,
        column: e.column,
        reason: e.located_reason(),
    })?;
    serde_json::from_str(text).map_err(|e| JsonError {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        reason: match e.to_string().rfind(" at line ") {
            Some(i) => e.to_string()[..i].to_owned(),
            None => e.to_string(),
        },
    })
}

/// The effective override: `deviceConfig`, then top-level keys, then
/// `fleetConfig`; the first place that sets any of the names wins, and
/// within a place the current name beats the legacy ones.
pub fn lock_override(config: &Value) -> Override {
    let places: [(&str, Option<&Value>); 3] = [
        ("deviceConfig", config.get("deviceConfig")),
        ("", Some(config)),
        ("fleetConfig", config.get("fleetConfig")),
    ];
    for (place, obj) in places {
        let Some(obj) = obj.and_then(Value::as_object) else {
            continue;
        };
        for name in OVERRIDE_NAMES {
            let Some(v) = obj.get(name) else { continue };
            let source = if place.is_empty() {
                name.to_owned()
            } else {
                format!("{place}.{name}")
            };
            return match truth(v) {
                Some(enabled) => Override {
                    enabled,
                    source,
                    error: None,
                },
                None => Override {
                    enabled: false,
                    error: Some(format!(
                        "{source} = {v} is not one of {ACCEPTED}; the override stays off"
                    )),
                    source,
                },
            };
        }
    }
    Override::default()
}

/// What config.json says about the device, for the containers'
/// environment and the API's port. Unset values are None.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `uuid`: `BALENA_DEVICE_UUID`.
    pub uuid: Option<String>,
    /// `deviceType`: `BALENA_DEVICE_TYPE`.
    pub device_type: Option<String>,
    /// `listenPort`: where containers reach the API (default 48484).
    pub listen_port: Option<u16>,
}

/// The device values of config.json (top-level keys, as balenaOS writes
/// them), and an error for each one set to something unusable. An unusable
/// value is treated like a file that does not parse: the `last` good value
/// stays (a bad uuid must not make every container again with an empty
/// `BALENA_DEVICE_UUID`); with nothing read before, the device's values
/// are not known (`None`) until it is fixed. A key that is absent (or
/// null) is unset.
pub fn device_info(config: &Value, last: Option<&DeviceInfo>) -> (Option<DeviceInfo>, Vec<String>) {
    let mut errors = Vec::new();
    let keep = match last {
        Some(_) => "the last good value stays in force",
        None => "the device's values are not known until it is fixed",
    };
    let mut text = |key: &str, old: Option<&Option<String>>| match config.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => {
            Some(Some(s.clone()))
        }
        Some(v) => {
            errors.push(format!(
                "{key} = {} is not a non-empty string without control characters; {keep}",
                crate::text::shown(&v.to_string())
            ));
            old.cloned()
        }
    };
    let uuid = text("uuid", last.map(|d| &d.uuid));
    let device_type = text("deviceType", last.map(|d| &d.device_type));
    let listen_port = match config.get("listenPort") {
        None | Some(Value::Null) => Some(None),
        Some(v) => {
            let port = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            match port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                Some(p) => Some(Some(p)),
                None => {
                    errors.push(format!(
                        "listenPort = {} is not a port (1 to 65535); {keep}",
                        crate::text::shown(&v.to_string())
                    ));
                    last.map(|d| d.listen_port)
                }
            }
        }
    };
    let info = (|| {
        Some(DeviceInfo {
            uuid: uuid?,
            device_type: device_type?,
            listen_port: listen_port?,
        })
    })();
    (info, errors)
}

/// The values `truth` accepts, for the error message.
const ACCEPTED: &str = "\"1\", \"true\", \"on\", true, 1 (on) or \"0\", \"false\", \"off\", \"\", false, 0, null (off), strings in any case";

/// On or off as balena's supervisor reads it (its checkTruthy); anything
/// else is `None`, and the caller keeps locks respected.
fn truth(v: &Value) -> Option<bool> {
    let word = |s: &str, words: [&str; 3]| words.iter().any(|w| s.eq_ignore_ascii_case(w));
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if word(s, ["1", "true", "on"]) => Some(true),
        Value::String(s) if s.is_empty() || word(s, ["0", "false", "off"]) => Some(false),
        Value::Number(n) if n.as_u64() == Some(1) => Some(true),
        Value::Number(n) if n.as_u64() == Some(0) => Some(false),
        Value::Null => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
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
}
