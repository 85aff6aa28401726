//! Strict target parsing: JSON syntax and shape errors carry line, column
//! and the JSON path; semantic checks (validate.rs) carry the path of the
//! bad value. Nothing raw from the input reaches a message: keys and values
//! are escaped, since errors go to journald and D-Bus replies.

use super::spec::{AppTarget, Target};
use super::strict::{self, no_controls, path_string, strip_position};
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
            reason: no_controls(&strip_position(&inner.to_string())),
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
            reason: no_controls(&strip_position(&inner.to_string())),
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
        reason: no_controls(&e.into_inner().to_string()),
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
mod tests {
    use super::super::{AppTarget, Strategy};
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

    /// GOOD with `extra` fields added to service db.
    fn db_with(extra: &str) -> String {
        GOOD.replace(
            "\"image\": \"db:1\"",
            &format!("\"image\": \"db:1\", {extra}"),
        )
    }

    fn rejected(text: &str) -> String {
        let e = parse(text, "t.json").unwrap_err().to_string();
        assert!(
            !e.contains(|c: char| c.is_control()),
            "raw control in {e:?}"
        );
        e
    }

    /// Each of these was accepted, and the engine then refused the create
    /// after the old containers were stopped.
    #[test]
    fn what_the_engine_refuses_is_rejected_before_anything_is_touched() {
        let db = "t.json: apps.app1.services.db.";
        let cases = [
            (
                r#""volumes": ["relative/path:/data"]"#,
                "volumes[0]: \"relative/path:/data\": source \"relative/path\" is neither an absolute host path nor a volume name",
            ),
            (
                r#""volumes": ["../../etc:/data"]"#,
                "volumes[0]: \"../../etc:/data\": source \"../../etc\" is neither",
            ),
            (
                r#""devices": ["/etc/shadow"]"#,
                "devices[0]: \"/etc/shadow\": host path \"/etc/shadow\" is not a device under /dev/",
            ),
            (
                r#""stop_signal": "SIGFOO""#,
                "stop_signal: \"SIGFOO\" is not a Linux signal",
            ),
            (
                r#""network_mode": "service:nope""#,
                "network_mode: nope is not a service of app app1",
            ),
            (
                r#""mem_limit": "1m""#,
                "mem_limit: 1048576 bytes is below the engine's minimum of 6 MiB",
            ),
            (
                r#""cap_add": ["CAP_FOO"]"#,
                "cap_add[0]: \"CAP_FOO\" is not a Linux capability",
            ),
            (
                r#""sysctls": {"vm.swappiness": "1"}"#,
                "sysctls.vm.swappiness: \"vm.swappiness\" is not in a namespace of the container's own",
            ),
            (
                r#""network_mode": "host", "sysctls": {"net.ipv4.ip_forward": "1"}"#,
                "sysctls.net.ipv4.ip_forward: \"net.ipv4.ip_forward\" is in the network namespace",
            ),
            (
                r#""security_opt": ["seccomp=/etc/profile.json"]"#,
                "security_opt[0]: \"seccomp=/etc/profile.json\" is not a security option",
            ),
            (
                r#""logging": {"driver": "json-file", "options": {"max-size": "lots"}}"#,
                "logging.options.max-size: \"lots\" is not a size",
            ),
            (
                r#""ipc": "foo""#,
                "ipc: \"foo\" is not one of private, shareable, host, none",
            ),
            (
                r#""cpu_shares": 1"#,
                "cpu_shares: 1 is not a CPU weight from 2 to 262144",
            ),
            (
                r#""ulimits": {"nofile": {"soft": 2000, "hard": 1000}}"#,
                "ulimits.nofile: the soft limit 2000 is above the hard limit 1000",
            ),
            (
                r#""hostname": "a-very-long-host-name-that-goes-on-and-on-and-on-past-the-kernel-limit""#,
                "hostname: \"a-very-long",
            ),
            (
                r#""network_mode": "none", "networks": ["default"]"#,
                "networks: a service with network_mode \"none\" joins no app networks",
            ),
            (
                r#""user": "0:0;rm -rf /""#,
                "user: \"0:0;rm -rf /\" is not user[:group]",
            ),
        ];
        for (extra, want) in cases {
            let e = rejected(&db_with(extra));
            assert!(
                e.starts_with(&format!("{db}{want}")),
                "{want:?} not in {e:?}"
            );
        }
    }

    #[test]
    fn nul_is_rejected_where_the_engine_refuses_it() {
        let cases = [
            (
                r#""command": ["a", "b\u0000"]"#,
                "db.command[1]: \"b\\0\" contains a NUL",
            ),
            (
                r#""entrypoint": ["\u0000"]"#,
                "db.entrypoint[0]: \"\\0\" contains a NUL",
            ),
            (
                r#""environment": {"K": "v\u0000"}"#,
                "db.environment.K: \"v\\0\" contains a NUL",
            ),
            (
                r#""environment": {"K\u0000": "v"}"#,
                "db.environment.K\\0: the name: \"K\\0\" contains a NUL",
            ),
            (
                r#""labels": {"l": "\u0000"}"#,
                "db.labels.l: \"\\0\" contains a NUL",
            ),
            (r#""labels": {"l\u0000": "x"}"#, "db.labels.l\\0: the name"),
        ];
        for (extra, want) in cases {
            let e = rejected(&db_with(extra));
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        let e = rejected(&GOOD.replace("db:1", "db:1\\u0000"));
        assert!(
            e.contains("db.image: \"db:1\\0\" is not an image reference"),
            "{e}"
        );
        let e = rejected(&GOOD.replace("\"r42\"", "\"r42\\u0000\""));
        assert!(
            e.contains("apps.app1.release: \"r42\\0\" contains a control character"),
            "{e}"
        );
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

    #[test]
    fn one_app_parses_alone_with_paths_under_the_app() {
        let app = crate::names::AppName::new("web").unwrap();
        let a = parse_app(
            r#"{"release": "r", "services": {"s": {"image": "i:1"}}}"#,
            &app,
            "x",
        )
        .unwrap();
        assert_eq!(a.services.len(), 1);
        let e = parse_app(
            r#"{"release": "r", "services": {"s": {"imag": "i"}}}"#,
            &app,
            "x",
        );
        let e = e.unwrap_err().to_string();
        assert!(
            e.starts_with("x: line 1 column 42: apps.web.services.s.imag: unknown field"),
            "{e}"
        );
        let e = parse_app(r#"{"release": "r", "release": "r"}"#, &app, "x").unwrap_err();
        assert!(
            e.to_string().contains("apps.web.release: duplicate key"),
            "{e}"
        );
        let e = parse_app("3", &app, "x").unwrap_err().to_string();
        assert!(e.contains(": apps.web: invalid type"), "{e}");
        let v = serde_json::json!({"release": "r", "services": {"s": {"image": 3}}});
        let e = app_from_value(v, "y").unwrap_err().to_string();
        assert!(e.starts_with("y: services.s.image: invalid type"), "{e}");
    }

    /// The examples in the format's documentation are valid targets.
    #[test]
    fn the_documented_examples_parse() {
        let doc = include_str!("../../docs/target-state.md");
        let examples: Vec<&str> = doc
            .split("```json\n")
            .skip(1)
            .map(|block| &block[..block.find("```").unwrap()])
            .filter(|text| text.starts_with("{\n  \"version\""))
            .collect();
        assert_eq!(
            examples.len(),
            2,
            "the simple one and the one with networks"
        );
        for text in examples {
            parse(text, "docs/target-state.md").unwrap();
        }
    }

    #[test]
    fn config_hash_is_stable_and_sensitive() {
        let t = parse(GOOD, "t.json").unwrap();
        let app = t.apps.values().next().unwrap();
        let main = crate::names::ServiceName::new("main").unwrap();
        let h = app.config_hash(&main);
        assert_eq!(h.len(), 16);
        assert_eq!(h, app.clone().config_hash(&main));
        let mut changed = app.clone();
        let spec = changed.services.get_mut(&main).unwrap();
        spec.environment.insert("K".into(), "W".into());
        assert_ne!(h, changed.config_hash(&main));
        // The order of starts is no reason to replace a container.
        let mut reordered = app.clone();
        reordered
            .services
            .get_mut(&main)
            .unwrap()
            .depends_on
            .clear();
        assert_eq!(h, reordered.config_hash(&main));
        // A changed definition of a network it joins is.
        let mut renet = app.clone();
        renet.networks.insert(
            "default".into(),
            crate::target::NetworkSpec {
                internal: true,
                ..Default::default()
            },
        );
        assert_ne!(h, renet.config_hash(&main));
    }

    /// A service in another's namespace joins that service's container by
    /// name: a new container there means a new one here.
    #[test]
    fn config_hash_follows_a_shared_namespace() {
        let t = parse(
            &GOOD
                .replace(
                    "\"restart\": \"unless-stopped\"",
                    "\"restart\": \"unless-stopped\", \"network_mode\": \"service:side\"",
                )
                .replace(
                    "\"db\": {",
                    "\"side\": {\"image\": \"s:1\", \"network_mode\": \"none\"}, \"db\": {",
                ),
            "t.json",
        )
        .unwrap();
        let app = t.apps.values().next().unwrap();
        let n = |s: &str| crate::names::ServiceName::new(s).unwrap();
        let (db, main) = (app.config_hash(&n("db")), app.config_hash(&n("main")));
        let mut changed = app.clone();
        changed.services.get_mut(&n("side")).unwrap().image = "s:2".into();
        assert_ne!(
            db,
            changed.config_hash(&n("db")),
            "db shares side's network"
        );
        assert_eq!(main, changed.config_hash(&n("main")), "main shares nothing");
    }

    /// Containers are named and matched by this hash: a parser change that
    /// alters it would replace every running container on upgrade. (It
    /// changed once, deliberately, when services moved onto app networks:
    /// each container is replaced once, lock-gated, to join its network.)
    #[test]
    fn config_hash_is_pinned() {
        let t = parse(GOOD, "t.json").unwrap();
        let app = t.apps.values().next().unwrap();
        let hashes: Vec<String> = app.services.keys().map(|s| app.config_hash(s)).collect();
        assert_eq!(hashes, ["9c8f2e90dc9ee5f8", "fb2c1a6682fc9597"]);
        // Every field set: pins the serialized field set and order too.
        let full: AppTarget =
            serde_json::from_value(serde_json::json!({"release": "r", "services": {"s": {
                "image": "i:1", "command": ["c"], "entrypoint": ["e"], "environment": {"K": "V"},
                "labels": {"l": "v"}, "volumes": ["vol:/b:ro"], "tmpfs": ["/t:size=1m"],
                "restart": "on-failure", "network_mode": "host", "ports": ["1:2/udp"],
                "privileged": true, "devices": ["/dev/x:/dev/y:rw"], "working_dir": "/w",
                "user": "1000:1000", "stop_signal": "SIGINT", "stop_timeout": 3,
                "depends_on": ["x"]
            }}}))
            .unwrap();
        let s = crate::names::ServiceName::new("s").unwrap();
        assert_eq!(full.config_hash(&s), "099e248d2cf42505");
    }
}

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
