//! Strict target parsing: JSON syntax and shape errors carry line, column
//! and the JSON path; semantic checks carry the path of the bad value.
//! Nothing raw from the input reaches a message: keys and values are
//! escaped, since errors go to journald and D-Bus replies.

use super::spec::{Strategy, Target, FORMAT_VERSION, HANDOVER_TIMEOUT_LABEL, STRATEGY_LABEL};
use super::strict::{self, no_controls, path_string, strip_position};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{source_name}: line {line} column {column}: {path}: {reason}")]
    Shape {
        source_name: String,
        line: usize,
        column: usize,
        path: String,
        reason: String,
    },
    #[error("{source_name}: {path}: {reason}")]
    Invalid {
        source_name: String,
        path: String,
        reason: String,
    },
}

/// Parses and validates a target. `source_name` names the origin in errors
/// (a file path, `D-Bus SetTarget`).
pub fn parse(text: &str, source_name: &str) -> Result<Target, TargetError> {
    let source_name = no_controls(source_name);
    // First pass: one document, no duplicate keys (serde keeps the last).
    strict::check(text).map_err(|e| TargetError::Shape {
        source_name: source_name.clone(),
        line: e.line,
        column: e.column,
        path: e.path,
        reason: e.reason,
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    let target: Target = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_string(e.path());
        let inner = e.into_inner();
        TargetError::Shape {
            source_name: source_name.clone(),
            line: inner.line(),
            column: inner.column(),
            path,
            reason: no_controls(&strip_position(&inner.to_string())),
        }
    })?;
    validate(&target).map_err(|(path, reason)| TargetError::Invalid {
        source_name,
        path: no_controls(&path),
        reason: no_controls(&reason),
    })?;
    Ok(target)
}

fn validate(t: &Target) -> Result<(), (String, String)> {
    if t.version != FORMAT_VERSION {
        return Err((
            "version".into(),
            format!(
                "unsupported version {} (this holdfast reads {FORMAT_VERSION})",
                t.version
            ),
        ));
    }
    for (key, value) in &t.config {
        let at = format!("config.{key}");
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((at, "keys are letters, digits and '_'".into()));
        }
        if key == crate::bootcfg::PREFIX {
            return Err((at, "names no config.txt key".into()));
        }
        if value.contains(['\n', '\r']) {
            return Err((at, "values are one line".into()));
        }
    }
    for (app, a) in &t.apps {
        if a.release.trim().is_empty() {
            return Err((format!("apps.{app}.release"), "must not be empty".into()));
        }
        for (name, s) in &a.services {
            let at = |field: &str| format!("apps.{app}.services.{name}.{field}");
            if s.image.trim().is_empty() || s.image.contains(char::is_whitespace) {
                return Err((
                    at("image"),
                    format!("{:?} is not an image reference", s.image),
                ));
            }
            for dep in &s.depends_on {
                if !a.services.contains_key(dep) {
                    return Err((
                        at("depends_on"),
                        format!("{dep} is not a service of app {app}"),
                    ));
                }
                if dep == name {
                    return Err((at("depends_on"), "a service cannot depend on itself".into()));
                }
            }
            if let Some(v) = s.labels.get(STRATEGY_LABEL) {
                if Strategy::parse(v).is_none() {
                    return Err((at(&format!("labels.{STRATEGY_LABEL}")), format!(
                        "{v:?} is not one of download-then-kill, kill-then-download, delete-then-download, hand-over")));
                }
            }
            if let Some(v) = s.labels.get(HANDOVER_TIMEOUT_LABEL) {
                if v.parse::<u64>().is_err() {
                    return Err((
                        at(&format!("labels.{HANDOVER_TIMEOUT_LABEL}")),
                        format!("{v:?} is not a number of milliseconds"),
                    ));
                }
            }
            for (i, v) in s.volumes.iter().enumerate() {
                check_volume(v).map_err(|r| (at(&format!("volumes[{i}]")), r))?;
            }
            for (i, p) in s.ports.iter().enumerate() {
                parse_port(p).map_err(|r| (at(&format!("ports[{i}]")), r))?;
            }
            for (i, v) in s.tmpfs.iter().enumerate() {
                if !v.starts_with('/') {
                    return Err((
                        at(&format!("tmpfs[{i}]")),
                        format!("{v:?} is not an absolute container path"),
                    ));
                }
            }
            for (i, v) in s.devices.iter().enumerate() {
                if !v.starts_with('/') {
                    return Err((
                        at(&format!("devices[{i}]")),
                        format!("{v:?} is not a device path"),
                    ));
                }
            }
            for key in s.environment.keys() {
                if key.is_empty() || key.contains('=') {
                    return Err((at("environment"), format!("{key:?} is not a variable name")));
                }
            }
        }
        a.dependency_order().map(drop).map_err(|(_, n)| {
            (
                format!("apps.{app}.services.{n}.depends_on"),
                "dependency cycle".to_owned(),
            )
        })?;
    }
    Ok(())
}

fn check_volume(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let ok = match parts.as_slice() {
        [src, dst] => !src.is_empty() && dst.starts_with('/'),
        [src, dst, mode] => !src.is_empty() && dst.starts_with('/') && matches!(*mode, "ro" | "rw"),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{v:?} is not source:/container/path[:ro|rw]"))
    }
}

/// A port mapping: (host ip, host port, container port, protocol).
pub(crate) fn parse_port(p: &str) -> Result<(Option<String>, u16, u16, String), String> {
    let bad = || format!("{p:?} is not [host-ip:]host-port:container-port[/tcp|udp]");
    let (spec, proto) = match p.split_once('/') {
        Some((s, proto @ ("tcp" | "udp"))) => (s, proto.to_owned()),
        Some(_) => return Err(bad()),
        None => (p, "tcp".to_owned()),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let port = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(bad);
    match parts.as_slice() {
        [c, h] => Ok((None, port(h)?, port(c)?, proto)),
        [c, h, ip] => Ok((Some((*ip).to_owned()), port(h)?, port(c)?, proto)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServiceSpec;
    use super::*;

    const GOOD: &str = r#"{
      "version": 1,
      "apps": {
        "app1": {
          "release": "r42",
          "services": {
            "main": { "image": "registry.local/app1-main:3", "command": ["/bin/app"],
                      "environment": {"K": "V"}, "labels": {"io.balena.update.strategy": "hand-over"},
                      "depends_on": ["db"], "ports": ["127.0.0.1:8080:80/tcp"], "volumes": ["data:/data"] },
            "db": { "image": "db:1", "restart": "unless-stopped" }
          }
        }
      }
    }"#;

    #[test]
    fn parses_the_documented_shape() {
        let t = parse(GOOD, "t.json").unwrap();
        let app = &t.apps[&crate::names::AppName::new("app1").unwrap()];
        let order: Vec<_> = app.start_order().iter().map(|s| s.to_string()).collect();
        assert_eq!(order, ["db", "main"]);
        let main = &app.services[&crate::names::ServiceName::new("main").unwrap()];
        assert_eq!(main.strategy(), Strategy::HandOver);
        assert_eq!(main.handover_timeout_ms(), 60_000);
    }

    #[test]
    fn unknown_field_names_path_line_and_column() {
        let text = GOOD.replace("\"restart\"", "\"restrat\"");
        let e = parse(&text, "t.json").unwrap_err().to_string();
        assert!(e.starts_with("t.json: line 10 column"), "{e}");
        assert!(
            e.contains("apps.app1.services.db.restrat: unknown field `restrat`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_their_path() {
        let cases = [
            (
                GOOD.replace("\"r42\"", "\"\""),
                "apps.app1.release: must not be empty",
            ),
            (
                GOOD.replace("\"hand-over\"", "\"yolo\""),
                "labels.io.balena.update.strategy",
            ),
            (
                GOOD.replace("[\"db\"]", "[\"nope\"]"),
                "nope is not a service of app app1",
            ),
            (GOOD.replace("8080:80", "80800:80"), "ports[0]"),
            (GOOD.replace("data:/data", "data"), "volumes[0]"),
            (
                GOOD.replace("\"version\": 1", "\"version\": 2"),
                "unsupported version 2",
            ),
            (
                GOOD.replace("\"app1\"", "\"../x\""),
                "name \"../x\" starts with",
            ),
            (
                GOOD.replace("\"unless-stopped\"", "\"sometimes\""),
                "restart: unknown variant",
            ),
            (
                GOOD.replace(
                    "\"image\": \"db:1\"",
                    "\"image\": \"db:1\", \"depends_on\": [\"main\"]",
                ),
                "dependency cycle",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text, "t.json").unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let e = parse("{\"version\": 1,", "t.json").unwrap_err().to_string();
        assert!(e.contains("line 1 column 14"), "{e}");
    }

    fn rejected(text: &str) -> String {
        let e = parse(text, "t.json").unwrap_err().to_string();
        assert!(
            !e.contains(|c: char| c.is_control()),
            "raw control in {e:?}"
        );
        e
    }

    #[test]
    fn trailing_input_and_a_second_document_are_rejected() {
        let e = rejected(&format!("{GOOD} x"));
        assert!(
            e.starts_with(
                "t.json: line 14 column 7: (top): more input after the end of the document"
            ),
            "{e}"
        );
        let e = rejected(&format!("{GOOD}\n{GOOD}"));
        assert!(e.contains("(top): more input after the end"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let e = rejected(&GOOD.replace("\"version\": 1,", "\"version\": 1, \"version\": 1,"));
        assert!(
            e.starts_with("t.json: line 2 column 31: version: duplicate key \"version\""),
            "{e}"
        );
        // The second copy would have removed app1's containers.
        let e = rejected(&GOOD.replace(
            "\"apps\": {",
            "\"apps\": {\n\"app1\": {\"release\": \"r1\", \"services\": {}},",
        ));
        assert!(e.contains("apps.app1: duplicate key \"app1\""), "{e}");
        let e = rejected(&GOOD.replace("{\"K\": \"V\"}", "{\"K\": \"V\", \"K\": \"W\"}"));
        assert!(
            e.contains(": apps.app1.services.main.environment.K: duplicate key \"K\""),
            "{e}"
        );
        let e = rejected(&GOOD.replace(
            "\"release\": \"r42\",",
            "\"release\": \"r42\", \"release\": \"r43\",",
        ));
        assert!(e.contains("apps.app1.release: duplicate key"), "{e}");
    }

    #[test]
    fn control_characters_never_reach_a_message() {
        let e = rejected(&GOOD.replace("\"app1\"", "\"app\\u0000x\""));
        assert!(e.contains("app\\0x"), "{e}");
        let e = rejected(&GOOD.replace("\"restart\"", "\"res\\u0001tart\\n\""));
        assert!(e.contains("unknown field `res\\u{1}tart\\n`"), "{e}");
        let e = rejected(&GOOD.replace("\"main\":", "\"ma\\u001bin\":"));
        assert!(e.contains("\\u{1b}"), "{e}");
        let e = parse("{", "bad\nname").unwrap_err().to_string();
        assert!(e.starts_with("bad\\nname: line 1"), "{e}");
    }

    /// The example in the format's documentation is a valid target.
    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../docs/target-state.md");
        let start = doc.find("```json\n").unwrap() + "```json\n".len();
        let end = start + doc[start..].find("```").unwrap();
        parse(&doc[start..end], "docs/target-state.md").unwrap();
    }

    #[test]
    fn config_hash_is_stable_and_sensitive() {
        let t = parse(GOOD, "t.json").unwrap();
        let app = t.apps.values().next().unwrap();
        let main = app.services.values().nth(1).unwrap();
        let h = main.config_hash();
        assert_eq!(h.len(), 16);
        assert_eq!(h, main.clone().config_hash());
        let mut changed = main.clone();
        changed.environment.insert("K".into(), "W".into());
        assert_ne!(h, changed.config_hash());
    }

    /// Containers are named and matched by this hash: a parser change that
    /// alters it would replace every running container on upgrade.
    #[test]
    fn config_hash_is_pinned() {
        let t = parse(GOOD, "t.json").unwrap();
        let app = t.apps.values().next().unwrap();
        let hashes: Vec<String> = app.services.values().map(|s| s.config_hash()).collect();
        assert_eq!(hashes, ["0a6b3e54b7642c8c", "ab3c615794f43f4c"]);
        // Every field set: pins the serialized field set and order too.
        let full: ServiceSpec = serde_json::from_value(serde_json::json!({
            "image": "i:1", "command": ["c"], "entrypoint": ["e"], "environment": {"K": "V"},
            "labels": {"l": "v"}, "volumes": ["vol:/b:ro"], "tmpfs": ["/t:size=1m"],
            "restart": "on-failure", "network_mode": "host", "ports": ["1:2/udp"],
            "privileged": true, "devices": ["/dev/x:/dev/y:rw"], "working_dir": "/w",
            "user": "1000:1000", "stop_signal": "SIGINT", "stop_timeout": 3,
            "depends_on": ["x"]
        }))
        .unwrap();
        assert_eq!(full.config_hash(), "406a51c36db76d05");
    }
}

#[cfg(test)]
mod schema_tests {
    /// docs/target-state.schema.json lists exactly the fields we parse.
    #[test]
    fn schema_matches_the_parser() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/target-state.schema.json")).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let full: super::super::ServiceSpec = serde_json::from_value(serde_json::json!({
            "image": "i", "command": ["c"], "entrypoint": ["e"], "environment": {"K": "V"},
            "labels": {"l": "v"}, "volumes": ["a:/b"], "tmpfs": ["/t"], "restart": "no",
            "network_mode": "none", "ports": ["1:2"], "privileged": true, "devices": ["/dev/x"],
            "working_dir": "/", "user": "1", "stop_signal": "TERM", "stop_timeout": 1,
            "depends_on": ["x"]
        }))
        .unwrap();
        let parsed = serde_json::to_value(&full).unwrap();
        assert_eq!(
            keys(&schema["$defs"]["service"]["properties"]),
            keys(&parsed)
        );
        assert_eq!(
            keys(&schema["$defs"]["app"]["properties"]),
            ["release", "services"]
        );
        assert_eq!(keys(&schema["properties"]), ["apps", "config", "version"]);
    }
}
