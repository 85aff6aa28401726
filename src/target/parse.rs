//! Strict target parsing: JSON syntax and shape errors carry line, column
//! and the JSON path; semantic checks (validate.rs) carry the path of the
//! bad value. Nothing raw from the input reaches a message: keys and values
//! are escaped, since errors go to journald and D-Bus replies.

use super::spec::{AppTarget, Target};
use super::strict::{self, no_controls, path_string, serde_reason};
use super::validate::validate;
use crate::names::AppName;

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
            reason: serde_reason(&inner.to_string()),
        }
    })?;
    check(&target, &source_name)?;
    Ok(target)
}

/// Parses one app's target (the value of `apps.<app>` in a target) from
/// JSON, as strictly as `parse`; paths in errors start at `apps.<app>`.
/// The semantic checks run on the whole target it joins (`check`).
pub fn parse_app(text: &str, app: &AppName, source_name: &str) -> Result<AppTarget, TargetError> {
    let source_name = no_controls(source_name);
    let prefix = |path: String| match path.as_str() {
        "(top)" => format!("apps.{app}"),
        _ => format!("apps.{app}.{path}"),
    };
    strict::check(text).map_err(|e| TargetError::Shape {
        source_name: source_name.clone(),
        line: e.line,
        column: e.column,
        path: prefix(e.path),
        reason: e.reason,
    })?;
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = prefix(path_string(e.path()));
        let inner = e.into_inner();
        TargetError::Shape {
            source_name,
            line: inner.line(),
            column: inner.column(),
            path,
            reason: serde_reason(&inner.to_string()),
        }
    })
}

/// An app's target from a JSON value built in memory (a converted compose
/// file): shape errors are `Invalid`, with the path below the app.
pub fn app_from_value(
    value: serde_json::Value,
    source_name: &str,
) -> Result<AppTarget, TargetError> {
    serde_path_to_error::deserialize(value).map_err(|e| TargetError::Invalid {
        source_name: no_controls(source_name),
        path: path_string(e.path()),
        reason: serde_reason(&e.into_inner().to_string()),
    })
}

/// The semantic checks `parse` runs, on a target built in memory (one app
/// merged into the target in force).
pub fn check(target: &Target, source_name: &str) -> Result<(), TargetError> {
    validate(target).map_err(|(path, reason)| TargetError::Invalid {
        source_name: no_controls(source_name),
        path: no_controls(&path),
        reason: no_controls(&reason),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod schema_tests {
    use serde_json::{json, Value};

    use super::super::{
        AppTarget, Dependency, Healthcheck, Ipam, IpamPool, Logging, NetworkSpec, ServiceNetwork,
        ServiceSpec, Ulimit, VolumeSpec,
    };

    fn schema() -> Value {
        serde_json::from_str(include_str!("../../docs/target-state.schema.json")).unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    /// `value` read as `T` and written back: every field the parser has,
    /// when `value` sets every field.
    fn parsed<T: serde::de::DeserializeOwned + serde::Serialize>(value: Value) -> Value {
        serde_json::to_value(serde_json::from_value::<T>(value).unwrap()).unwrap()
    }

    /// A service with every field set.
    fn full_service() -> Value {
        serde_json::from_str(
            r#"{
            "image": "i", "command": ["c"], "entrypoint": ["e"], "environment": {"K": "V"},
            "labels": {"l": "v"}, "volumes": ["a:/b"], "tmpfs": ["/t"], "restart": "no",
            "network_mode": "none", "networks": ["n"], "ports": ["1:2"], "expose": ["3"],
            "privileged": true, "devices": ["/dev/x"], "working_dir": "/", "user": "1",
            "stop_signal": "TERM", "stop_timeout": 1, "stop_grace_period": "1s",
            "depends_on": ["x"], "healthcheck": {"test": "true"}, "cap_add": ["ALL"],
            "cap_drop": ["ALL"], "sysctls": {"net.x": "1"}, "extra_hosts": ["a:1.2.3.4"],
            "dns": "1.1.1.1", "dns_search": ".", "hostname": "h", "domainname": "d",
            "mem_limit": "8m", "memswap_limit": "16m", "cpus": 0.5, "cpu_shares": 2,
            "cpuset": "0", "pids_limit": 1, "ulimits": {"nofile": 1}, "shm_size": "1m",
            "read_only": true, "init": true, "security_opt": ["no-new-privileges"],
            "group_add": ["1"], "ipc": "host", "pid": "host", "logging": {"driver": "local"},
            "oom_score_adj": 1
        }"#,
        )
        .unwrap()
    }

    /// docs/target-state.schema.json lists exactly the fields we parse,
    /// in every object.
    #[test]
    fn schema_matches_the_parser() {
        let schema = schema();
        let defs = &schema["$defs"];
        let props = |def: &str| keys(&defs[def]["properties"]);
        assert_eq!(
            props("service"),
            keys(&parsed::<ServiceSpec>(full_service()))
        );
        let app = json!({
            "release": "r", "services": {"s": {"image": "i"}},
            "networks": {"n": {}}, "volumes": {"v1": {}}
        });
        assert_eq!(props("app"), keys(&parsed::<AppTarget>(app)));
        let network = json!({
            "driver": "d", "driver_opts": {"k": "v"}, "internal": true, "enable_ipv6": true,
            "ipam": {}, "labels": {"k": "v"}
        });
        assert_eq!(props("network"), keys(&parsed::<NetworkSpec>(network)));
        let ipam = json!({"driver": "d", "config": [{"subnet": "10.0.0.0/8"}]});
        assert_eq!(props("ipam"), keys(&parsed::<Ipam>(ipam)));
        let pool = json!({"subnet": "10.0.0.0/8", "gateway": "10.0.0.1", "ip_range": "10.0.0.0/9"});
        assert_eq!(props("ipamPool"), keys(&parsed::<IpamPool>(pool)));
        assert_eq!(defs["ipamPool"]["required"], json!(["subnet"]));
        let volume = json!({"driver": "d", "driver_opts": {"k": "v"}, "labels": {"k": "v"}});
        assert_eq!(props("volume"), keys(&parsed::<VolumeSpec>(volume)));
        let net = json!({"aliases": ["a"], "ipv4_address": "10.0.0.2"});
        assert_eq!(
            props("serviceNetwork"),
            keys(&parsed::<ServiceNetwork>(net))
        );
        let health = json!({
            "test": ["CMD", "x"], "interval": "1s", "timeout": "1s", "retries": 1,
            "start_period": "1s", "disable": true
        });
        assert_eq!(props("healthcheck"), keys(&parsed::<Healthcheck>(health)));
        let logging = json!({"driver": "d", "options": {"k": "v"}});
        assert_eq!(props("logging"), keys(&parsed::<Logging>(logging)));
        let dep = json!({"condition": "service_healthy"});
        assert_eq!(props("dependency"), keys(&parsed::<Dependency>(dep)));
        let ulimit = parsed::<Ulimit>(json!({"soft": 1, "hard": 2}));
        assert_eq!(
            keys(&defs["ulimit"]["oneOf"][1]["properties"]),
            keys(&ulimit)
        );
        assert_eq!(keys(&schema["properties"]), ["apps", "config", "version"]);
    }

    /// The schema's enums are the parser's: each value parses, and the
    /// validator takes exactly the ulimit names the schema lists.
    #[test]
    fn schema_enums_match_the_parser() {
        let schema = schema();
        let defs = &schema["$defs"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        for c in strings(&defs["dependency"]["properties"]["condition"]["enum"]) {
            parsed::<Dependency>(json!({ "condition": c }));
        }
        for r in strings(&defs["service"]["properties"]["restart"]["enum"]) {
            parsed::<ServiceSpec>(json!({"image": "i", "restart": r}));
        }
        let names = strings(&defs["service"]["properties"]["ulimits"]["propertyNames"]["enum"]);
        let with_ulimit = |name: &str| {
            let t = json!({"version": 1, "apps": {"a": {"release": "r", "services": {
                "s": {"image": "i", "ulimits": {name: 1}}}}}});
            super::parse(&t.to_string(), "t.json")
        };
        for n in &names {
            with_ulimit(n).unwrap();
        }
        for n in ["as", "NOFILE", "files"] {
            assert!(!names.contains(&n.to_owned()));
            with_ulimit(n).unwrap_err();
        }
    }
}
