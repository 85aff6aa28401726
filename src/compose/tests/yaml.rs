//! The YAML layer: types, anchors, merge keys, positions, refusals.

use serde_json::json;

use super::super::yaml::{parse, Kind, Node, Pos, Type};
use super::{err, json, service};

fn root(text: &str) -> Node {
    parse(text).unwrap().unwrap()
}

fn scalar_type(text: &str) -> Type {
    match root(&format!("k: {text}\n")).kind {
        Kind::Map(e) => match &e[0].value.kind {
            Kind::Scalar(_, t) => *t,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_scalars_resolve_by_the_core_schema() {
    for (text, want) in [
        ("", Type::Null),
        ("~", Type::Null),
        ("null", Type::Null),
        ("true", Type::Bool(true)),
        ("False", Type::Bool(false)),
        ("12", Type::Int(12)),
        ("-3", Type::Int(-3)),
        ("0x1f", Type::Int(31)),
        ("0o17", Type::Int(15)),
        ("1.5", Type::Float(1.5)),
        ("1e3", Type::Float(1000.0)),
        (".5", Type::Float(0.5)),
        // YAML 1.1's booleans and sexagesimals are strings in 1.2.
        ("yes", Type::Str),
        ("no", Type::Str),
        ("on", Type::Str),
        ("80:80", Type::Str),
        ("1.2.3", Type::Str),
        ("'12'", Type::Str),
        ("\"true\"", Type::Str),
        ("!!str 12", Type::Str),
        ("!!float 2", Type::Float(2.0)),
        ("99999999999999999999", Type::Str),
    ] {
        assert_eq!(scalar_type(text), want, "{text}");
    }
}

#[test]
fn positions_are_line_and_column_from_one() {
    let r = root("a:\n  b: [1, x]\n");
    let Kind::Map(e) = r.kind else { panic!() };
    assert_eq!(e[0].key_pos, Pos { line: 1, column: 1 });
    let Kind::Map(inner) = &e[0].value.kind else {
        panic!()
    };
    assert_eq!(inner[0].key_pos, Pos { line: 2, column: 3 });
    let Kind::Seq(items) = &inner[0].value.kind else {
        panic!()
    };
    assert_eq!(
        items[1].pos,
        Pos {
            line: 2,
            column: 10
        }
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let v = json(
        "x-common: &common\n  image: busybox:1\n  restart: unless-stopped\n  environment: &env\n    A: a\n\
         x-more: &more\n  restart: always\n  user: \"1000\"\n\
         services:\n  one:\n    <<: *common\n  two:\n    <<: [*more, *common]\n    environment: *env\n    user: \"7\"\n",
    );
    let s = &v["services"];
    assert_eq!(s["one"]["image"], "busybox:1");
    assert_eq!(s["one"]["restart"], "unless-stopped");
    assert_eq!(s["one"]["environment"], json!({"A": "a"}));
    // The first merged mapping wins over the second; own keys over both.
    assert_eq!(s["two"]["restart"], "always");
    assert_eq!(s["two"]["user"], "7");
    assert_eq!(s["two"]["image"], "busybox:1");
}

#[test]
fn a_quoted_merge_key_is_a_plain_key() {
    let e = err("services:\n  s:\n    image: i\n    \"<<\": {a: 1}\n");
    assert!(
        e.starts_with("compose.yml:4:5: services.s.<<: unknown key"),
        "{e}"
    );
}

#[test]
fn duplicate_keys_are_refused_where_they_are() {
    let e = err("services:\n  s:\n    image: a\n    image: b\n");
    assert_eq!(
        e,
        "compose.yml:4:5: services.s.image: duplicate key \"image\"; give each key once"
    );
    let e = err("services:\n  s:\n    image: a\n  s:\n    image: b\n");
    assert!(
        e.starts_with("compose.yml:4:3: services.s: duplicate key \"s\""),
        "{e}"
    );
    let e = err(
        "services:\n  s:\n    image: a\n    environment:\n      - A=1\n    labels: {a: 1, a: 2}\n",
    );
    assert!(
        e.starts_with("compose.yml:6:20: services.s.labels.a: duplicate key"),
        "{e}"
    );
}

#[test]
fn refusals_of_the_yaml_layer() {
    let cases = [
        ("services: [\n", "compose.yml:2:1: (top): YAML syntax:"),
        ("a: b\n---\nc: d\n", "compose.yml:2:1: (top): a second YAML document"),
        ("services:\n  s: !custom {image: i}\n", "compose.yml:2:6: services.s: YAML tag !custom is not supported by holdfast"),
        ("services:\n  s:\n    image: !!int x\n", "compose.yml:3:12: services.s.image: \"x\" is not a valid !!int"),
        ("services:\n  s:\n    image: *nope\n", "compose.yml:3:12: (top): YAML syntax: while parsing node, found unknown anchor"),
        ("services:\n  s:\n    <<: 3\n", "compose.yml:3:9: services.s.<<: a merge key (<<) takes a mapping or a list of mappings, not a number"),
        ("? [a]\n: b\n", "compose.yml:1:3: (top): a mapping key must be a string"),
        ("- a\n", "compose.yml:1:1: (top): a compose file is a mapping, not a list"),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.starts_with(want), "{want:?} not in {e:?}");
    }
    assert!(parse("").unwrap().is_none());
    assert!(parse("# only a comment\n").unwrap().is_none());
}

#[test]
fn depth_and_alias_expansion_are_bounded() {
    let deep = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
    let e = parse(&deep).unwrap_err();
    assert!(e.reason.contains("nested more than 64 levels"), "{e:?}");
    // Each level doubles: 2^20 values from a few lines.
    let mut laughs = String::from("a0: &a0 [x, x]\n");
    for i in 1..=20 {
        let p = i - 1;
        laughs.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n"));
    }
    let e = parse(&laughs).unwrap_err();
    assert!(e.reason.contains("aliases expand to more than"), "{e:?}");
}

#[test]
fn block_and_flow_styles_read_alike() {
    let flow = service("command: [sh, -c, 'echo hi']\nenvironment: {A: \"1\"}");
    let block = service("command:\n  - sh\n  - -c\n  - |-\n    echo hi\nenvironment:\n  A: 1");
    assert_eq!(flow, block);
}
