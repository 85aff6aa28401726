//! balenaOS-style `config.json`: where the lock override is set. Pure:
//! text in, the effective override (and where it came from) out.

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

/// Parses config.json; only its JSON validity matters here.
pub fn parse(text: &str, file: &str) -> Result<Value, JsonError> {
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
                        "{source} = {v} is not one of \"1\", \"0\", true, false; the override stays off"
                    )),
                    source,
                },
            };
        }
    }
    Override::default()
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "1" || s == "true" => Some(true),
        Value::String(s) if s == "0" || s == "false" || s.is_empty() => Some(false),
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

    #[test]
    fn other_values_are_errors_and_off() {
        let o = lock_override(&json!({"deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "yes"}}));
        assert!(!o.enabled);
        assert!(o.error.unwrap().contains("\"yes\" is not one of"));
        assert!(lock_override(&json!({"BALENA_SUPERVISOR_OVERRIDE_LOCK": 1})).enabled);
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
