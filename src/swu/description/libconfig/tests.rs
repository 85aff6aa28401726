use super::*;

fn ok(src: &str) -> Vec<Setting> {
    parse(src.as_bytes()).unwrap_or_else(|e| panic!("{src:?}: {e}"))
}

/// The one setting's value.
fn one(src: &str) -> Value {
    let mut s = ok(src);
    assert_eq!(s.len(), 1, "{src:?}");
    s.remove(0).value.value
}

/// Line, column and message of the error.
fn err(src: &str) -> (u32, u32, String) {
    match parse(src.as_bytes()) {
        Err(SyntaxError::At { at, why }) => (at.line, at.col, why),
        other => panic!("{src:?}: {other:?}"),
    }
}

fn strs(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(items) | Value::List(items) => items
            .iter()
            .map(|n| match &n.value {
                Value::Str(s) => s.as_str(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn equals_and_colon_with_or_without_terminators() {
    let s = ok("a = 1; b : 2, c = 3\nd: 4");
    let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert_eq!(s[3].value.value, Value::Int(4));
    assert_eq!(s[3].pos, Pos { line: 2, col: 1 });
    assert_eq!(s[3].value.pos, Pos { line: 2, col: 4 });
    assert!(ok("").is_empty());
    assert!(ok("  # nothing\n").is_empty());
}

#[test]
fn names_take_libconfig_characters() {
    let s = ok("hardware-compatibility = 1; a_b*2 = 2; *x = 3;");
    assert_eq!(s[0].name, "hardware-compatibility");
    assert_eq!(s[1].name, "a_b*2");
    assert_eq!(s[2].name, "*x");
}

#[test]
fn strings_escapes_and_concatenation() {
    assert_eq!(
        one(r#"s = "a\"b\\c\nd\te\x41\r\f";"#),
        Value::Str("a\"b\\c\nd\teA\r\x0c".into())
    );
    assert_eq!(
        one("s = \"ab\" /* c */ \"cd\"\n  # x\n  \"ef\";"),
        Value::Str("abcdef".into())
    );
    assert_eq!(one("s = \"h\\xC3\\xA9\";"), Value::Str("h\u{e9}".into()));
    assert_eq!(
        one("s = \"line\nbreak\";"),
        Value::Str("line\nbreak".into())
    );
    assert_eq!(one("s = \"\u{e9}\";"), Value::Str("\u{e9}".into()));
}

#[test]
fn integers_and_floats() {
    for (src, want) in [
        ("0", 0),
        ("-12", -12),
        ("+7", 7),
        ("0x1F", 31),
        ("0XffL", 255),
        ("5000000000L", 5_000_000_000),
        ("5000000000LL", 5_000_000_000),
        ("5000000000", 5_000_000_000),
    ] {
        assert_eq!(one(&format!("n = {src};")), Value::Int(want), "{src}");
    }
    for (src, want) in [
        ("1.5", 1.5),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1.e3", 1000.0),
        ("2.5E-1", 0.25),
        ("+3.0e+2", 300.0),
    ] {
        assert_eq!(one(&format!("n = {src};")), Value::Float(want), "{src}");
    }
}

#[test]
fn booleans_in_any_case() {
    assert_eq!(one("b = true;"), Value::Bool(true));
    assert_eq!(one("b = FALSE;"), Value::Bool(false));
    assert_eq!(one("b = TrUe;"), Value::Bool(true));
}

#[test]
fn groups_arrays_and_lists_nest() {
    let v = one(
        "g = { a = [ \"x\", \"y\", ]; l = ( 1, \"two\", { k = 3; }, [ true ], ( ) ); e = [ ]; }",
    );
    let Value::Group(g) = v else { panic!() };
    assert_eq!(strs(&g[0].value.value), ["x", "y"]);
    let Value::List(l) = &g[1].value.value else {
        panic!()
    };
    assert_eq!(l.len(), 5);
    assert!(matches!(&l[2].value, Value::Group(k) if k[0].name == "k"));
    assert_eq!(
        l[3].value,
        Value::Array(vec![Node {
            pos: Pos { line: 1, col: 56 },
            value: Value::Bool(true)
        }])
    );
    assert_eq!(g[2].value.value, Value::Array(vec![]));
}

#[test]
fn comments_of_three_kinds() {
    let s = ok("# hash\na = 1; // slashes\n/* block\n over lines */ b = 2; /**/ c = 3;");
    assert_eq!(s.len(), 3);
    assert_eq!(s[1].pos, Pos { line: 4, col: 16 });
    // A `#` inside a string is not a comment.
    assert_eq!(one("s = \"a # b // c\";"), Value::Str("a # b // c".into()));
}

#[test]
fn errors_say_line_and_column() {
    let cases: &[(&str, (u32, u32), &str)] = &[
        ("a = 1;\nb 2;", (2, 3), "expected = or : after b"),
        ("a = ;", (1, 5), "expected a value"),
        ("a = foo;", (1, 5), "a string needs double quotes"),
        ("a = 1.2.3;", (1, 5), "1.2.3 is not a number"),
        ("a = 12abc;", (1, 5), "12abc is not a number"),
        ("a = 99999999999999999999;", (1, 5), "out of range"),
        (
            "a = 1;\n  a = 2;",
            (2, 3),
            "a is set twice (first on line 1)",
        ),
        ("true = 1;", (1, 1), "boolean, not a setting name"),
        ("g = {\n  a = 1;\n", (1, 5), "this { is never closed"),
        ("l = ( 1, 2", (1, 5), "this ( is never closed"),
        ("l = [ 1 2 ]", (1, 9), "expected , or ]"),
        ("l = ( 1,, 2 )", (1, 9), "expected a value, found ','"),
        ("a = [ 1, \"x\" ];", (1, 10), "of one type"),
        ("a = [ 1, 2.0 ];", (1, 10), "of one type"),
        ("a = [ { b = 1; } ];", (1, 7), "holds only strings"),
        ("s = \"abc", (1, 5), "never ends"),
        ("s = \"a\\qb\";", (1, 7), "unknown escape \\q"),
        ("s = \"a\\x4\";", (1, 7), "two hex digits"),
        ("s = \"a\\x00\";", (1, 7), "NUL"),
        ("s = \"\\xff\";", (1, 5), "not UTF-8"),
        ("a = 1;\n/* open", (2, 1), "comment never ends"),
        (
            "a = 1;\n  @include \"other.cfg\"\n",
            (2, 3),
            "@include is not allowed",
        ),
        ("}", (1, 1), "expected a setting name, found '}'"),
        ("a = 1; 7 = 2;", (1, 8), "expected a setting name"),
        ("a = 1; = 2;", (1, 8), "expected a setting name"),
    ];
    for (src, (line, col), want) in cases {
        let (l, c, why) = err(src);
        assert!(why.contains(want), "{src:?}: {why}");
        assert_eq!((l, c), (*line, *col), "{src:?}: {why}");
    }
}

#[test]
fn the_message_carries_the_position() {
    let e = parse(b"a = 1;\nb = ?;").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column 5: expected a value, found '?'"
    );
}

#[test]
fn invalid_utf8_is_placed() {
    match parse(b"a = 1;\n# caf\xe9\n") {
        Err(SyntaxError::At { at, why }) => {
            assert_eq!((at.line, at.col), (2, 6));
            assert_eq!(why, "not UTF-8 text");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn input_and_nesting_are_bounded() {
    let big = format!("a = \"{}\";", "x".repeat(MAX_LEN));
    assert!(matches!(
        parse(big.as_bytes()),
        Err(SyntaxError::TooLong { max: MAX_LEN, .. })
    ));
    let at_limit = format!("a = {}{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    ok(&at_limit);
    let deep = format!(
        "a = {}{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let (l, c, why) = err(&deep);
    assert_eq!((l, c), (1, 5 + MAX_DEPTH as u32));
    assert!(why.contains("nested more than"), "{why}");
    // Deep enough to overflow the stack without the bound.
    let huge = "a = ".to_owned() + &"(".repeat(60_000);
    assert!(parse(huge.as_bytes()).is_err());
}
