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
mod tests;
