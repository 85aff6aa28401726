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
        e.starts_with("t.json: line 14 column 7: (top): more input after the end of the document"),
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
    let doc = include_str!("../../../docs/target-state.md");
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
