//! Interpolation and .env files.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::super::envfile::{parse_env_file, EnvError, EnvVars};
use super::super::interpolate::{interpolate, Budget, MAX_PASTED_BYTES};
use super::{err_with, service_with, FakeHost};

fn vars() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("SET", "value"), ("EMPTY", ""), ("B", "bee")])
}

fn i(s: &str) -> Result<String, String> {
    let v = vars();
    let budget = Budget::new(MAX_PASTED_BYTES);
    interpolate(s, &|k| v.get(k).map(|s| Rc::from(*s)), &budget)
        .map_err(|e| format!("{}: {}", e.offset, e.reason))
}

/// An env file with `env` as the variables around it.
pub fn env_file(text: &str, env: &[(&str, &str)]) -> Result<EnvVars, EnvError> {
    let budget = Budget::new(MAX_PASTED_BYTES);
    let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| Rc::from(*v));
    parse_env_file(text, &lookup, &budget)
}

#[test]
fn every_form() {
    let cases = [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a${SET}b", "avalueb"),
        ("$SET.x", "value.x"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${SET:-d}", "value"),
        ("${UNSET-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${SET:?must}", "value"),
        ("${EMPTY?must}", ""),
        ("$$", "$"),
        ("$${SET}", "${SET}"),
        ("a $$ b", "a $ b"),
        ("${UNSET:-${B}}", "bee"),
        ("${UNSET:-x${UNSET2:-y}z}", "xyz"),
        ("${UNSET:-a b}", "a b"),
        ("no vars", "no vars"),
        ("ümlaut ${B}", "ümlaut bee"),
    ];
    for (s, want) in cases {
        assert_eq!(i(s).as_deref(), Ok(want), "{s}");
    }
}

#[test]
fn errors_say_where_and_why() {
    let cases = [
        (
            "${UNSET:?set it}",
            "0: required variable UNSET is unset or empty: set it",
        ),
        (
            "ab${EMPTY:?}",
            "2: required variable EMPTY is unset or empty",
        ),
        ("${UNSET?}", "0: required variable UNSET is unset"),
        (
            "x ${UNSET:-${NOPE:?inner}}",
            "11: required variable NOPE is unset or empty: inner",
        ),
        ("a $ b", "2: a \"$\" that starts no variable"),
        ("cost: 5$", "7: a \"$\" that starts no variable"),
        ("$1", "0: a \"$\" that starts no variable"),
        ("${SET", "0: \"${\" without its closing \"}\""),
        ("${}", "0: \"${}\": a variable name is"),
        ("${1A}", "0: \"${1A}\": a variable name is"),
        ("${A B}", "0: \"${A B}\": after the name comes"),
        ("${A:x}", "0: \"${A:x}\": after the name comes"),
    ];
    for (s, want) in cases {
        let e = i(s).unwrap_err();
        assert!(e.starts_with(want), "{s}: {want:?} not in {e:?}");
    }
}

#[test]
fn env_files() {
    let text = "# comment\n\nA=1\nexport B = two words \nC='single $x # kept'\nD=\"dq \\\"q\\\" \\n ${A}\"\nE=val # comment\nF=${A}-${Z:-z}\nG\nH\n";
    let got = env_file(text, &[("G", "from env")]).unwrap();
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), &**v)).collect();
    assert_eq!(
        got,
        [
            ("A", "1"),
            ("B", "two words"),
            ("C", "single $x # kept"),
            ("D", "dq \"q\" \n 1"),
            ("E", "val"),
            ("F", "1-z"),
            ("G", "from env"),
        ]
    );
    // Where and what, never what the line holds.
    for (text, want) in [
        ("A='x\n", (1, 3, "a ' without its closing '")),
        ("  B=\"x\n", (1, 5, "a \" without its closing \"")),
        (
            "bad key=1\n",
            (1, 1, "not KEY=VALUE, a comment (#) or a blank line"),
        ),
        (
            "A=$\n",
            (
                1,
                3,
                "a \"$\" that starts no variable; write \"$$\" for a literal \"$\"",
            ),
        ),
        (
            "A=ok\nB=x $ y\n",
            (
                2,
                5,
                "a \"$\" that starts no variable; write \"$$\" for a literal \"$\"",
            ),
        ),
        (
            "export  C = ${Z:?secret words}\n",
            (1, 13, "a required variable is unset or empty"),
        ),
        (
            "D=${1x}\n",
            (
                1,
                3,
                "a variable name is a letter or '_', then letters, digits or '_'",
            ),
        ),
    ] {
        let e = env_file(text, &[]).unwrap_err();
        assert_eq!((e.line, e.column, e.reason.as_str()), want, "{text}");
    }
}

#[test]
fn the_shell_environment_wins_over_dotenv() {
    let host = FakeHost::default()
        .env("TAG", "from-shell")
        .file("/srv/app/.env", "TAG=from-dotenv\nONLY=dotenv\n");
    let s = service_with(
        "environment:\n  T: $TAG\n  O: ${ONLY}\n  N: ${NONE:-default}",
        &host,
    );
    assert_eq!(s["environment"]["T"], "from-shell");
    assert_eq!(s["environment"]["O"], "dotenv");
    assert_eq!(s["environment"]["N"], "default");
}

#[test]
fn values_are_interpolated_keys_are_not() {
    let host = FakeHost::default()
        .env("V", "1.5")
        .env("P", "true")
        .env("IMG", "busybox");
    let yaml = "services:\n  s:\n    image: ${IMG}:1\n    cpus: $V\n    privileged: ${P}\n    labels:\n      $V: x\n";
    let t = super::convert_with(yaml, &host).unwrap();
    let s = serde_json::to_value(&t).unwrap()["services"]["s"].clone();
    assert_eq!(s["image"], "busybox:1");
    assert_eq!(s["cpus"], 1.5);
    assert_eq!(s["privileged"], true);
    assert_eq!(s["labels"]["$V"], "x");
}

#[test]
fn bad_interpolation_names_file_line_and_column() {
    let host = FakeHost::default();
    let e = err_with("services:\n  s:\n    image: \"${TAG:?give TAG}\"\n", &host);
    assert_eq!(
        e,
        "compose.yml:3:12: services.s.image: interpolation: required variable TAG is unset or empty: give TAG"
    );
    let e = err_with(
        "services:\n  s:\n    image: i\n    command: echo $ x\n",
        &host,
    );
    assert!(
        e.starts_with("compose.yml:4:14: services.s.command: interpolation: a \"$\""),
        "{e}"
    );
    let host = FakeHost::default().file("/srv/app/.env", "OK=1\nBAD='x\n");
    let e = err_with("services:\n  s:\n    image: i\n", &host);
    assert_eq!(e, "/srv/app/.env:2:5: a ' without its closing '");
}
