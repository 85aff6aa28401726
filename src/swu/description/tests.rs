use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "0123456789ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef";

fn parse(src: &str, board: Option<&str>) -> Result<Description, DescriptionError> {
    Description::parse(src.as_bytes(), board)
}

fn ok(src: &str, board: Option<&str>) -> Description {
    parse(src, board).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// The message of the refusal.
fn refused(src: &str, board: Option<&str>) -> String {
    match parse(src, board) {
        Ok(d) => panic!("accepted {d:?}\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn target(name: &str) -> String {
    format!("{{ filename = \"{name}\"; type = \"holdfast-target\"; sha256 = \"{A}\"; }}")
}

fn image(name: &str) -> String {
    format!("{{ filename = \"{name}\"; type = \"holdfast-image\"; sha256 = \"{B}\"; }}")
}

/// A description with these images, the rest as usual.
fn with_images(entries: &[String]) -> String {
    format!(
        "software = {{ version = \"1.0\"; images: ( {} ); }};",
        entries.join(", ")
    )
}

/// A description with one target and this image entry.
fn with_entry(entry: &str) -> String {
    with_images(&[target("t.json"), entry.to_owned()])
}

fn names(d: &Description) -> Vec<&str> {
    d.images.iter().map(|e| e.filename.as_str()).collect()
}

/// docs/hawkbit.md's example, as make-swu.py writes it.
#[test]
fn the_documented_description() {
    let src = format!(
        r#"software = {{
  version = "1.0.1";
  description = "...";                         # optional
  hardware-compatibility = [ "1.0" ];          # optional
  images: (
      {{ filename = "holdfast-target.json"; type = "holdfast-target"; sha256 = "{A}"; }},
      {{ filename = "app1.tar"; type = "holdfast-image"; sha256 = "{B}"; }}
  );
}};
"#
    );
    let d = ok(&src, None);
    assert_eq!(d.version, "1.0.1");
    assert_eq!(d.description.as_deref(), Some("..."));
    assert_eq!(d.hardware_compatibility, ["1.0"]);
    assert_eq!(names(&d), ["holdfast-target.json", "app1.tar"]);
    assert_eq!(d.images[0].kind, ImageKind::Target);
    assert_eq!(d.images[0].sha256, [0xaa; 32]);
    assert_eq!(d.images[1].kind, ImageKind::Image);
    assert_eq!(d.images[1].sha256[..4], [0x01, 0x23, 0x45, 0x67]);
    assert_eq!(d.content().unwrap().filename, "holdfast-target.json");
    assert_eq!(d.entry("app1.tar").unwrap().kind, ImageKind::Image);
    // A board name without a group of its own takes the top-level images.
    assert_eq!(ok(&src, Some("rpi4")), d);
}

/// SWUpdate's own examples put settings with `:` and `=` alike, groups
/// with or without `;`, and a compose entry takes its app from properties.
#[test]
fn colons_equals_and_a_compose_entry() {
    let src = format!(
        r#"software :
{{
	version : "2.0.0-rc.1"
	hardware-compatibility : ( "1.0", "1.2" )
	images = (
		{{
			filename : "docker-compose.yml";
			type : "holdfast-compose";
			sha256 : "{A}",
			properties : {{ app : "web"; }}
		}},
	)
}}"#
    );
    let d = ok(&src, None);
    assert_eq!(d.version, "2.0.0-rc.1");
    assert_eq!(d.description, None);
    assert_eq!(d.hardware_compatibility, ["1.0", "1.2"]);
    let app = AppName::new("web").unwrap();
    assert_eq!(d.images[0].kind, ImageKind::Compose { app });
}

/// SWUpdate's board-specific form (make-swu.py --board): the device's
/// board group wins, setting by setting; other boards' groups are left.
#[test]
fn board_groups() {
    let src = format!(
        r#"software = {{
	version = "0.1.0";
	hardware-compatibility: [ "9.9" ];
	target-1 = {{
		hardware-compatibility: [ "1.0", "1.2", "1.3"];
		images: ( {} );
	}};
	target-2 = {{
		images: ( {}, {} );
	}};
}};"#,
        target("t1.json"),
        target("t2.json"),
        image("app.tar"),
    );
    let one = ok(&src, Some("target-1"));
    assert_eq!(one.hardware_compatibility, ["1.0", "1.2", "1.3"]);
    assert_eq!(names(&one), ["t1.json"]);
    // target-2 has no compatibility of its own: the top-level one holds.
    let two = ok(&src, Some("target-2"));
    assert_eq!(two.hardware_compatibility, ["9.9"]);
    assert_eq!(names(&two), ["t2.json", "app.tar"]);
    // No images for a board without a group, nor without a board name.
    let e = refused(&src, Some("target-3"));
    assert!(
        e.contains("neither software.images nor a group software.target-3 (there are software.target-1, software.target-2)"),
        "{e}"
    );
    let e = refused(&src, None);
    assert!(e.contains("no board name was given"), "{e}");
    // Top-level images serve boards without a group.
    let both = src.replacen(
        "version = \"0.1.0\";",
        &format!("version = \"0.1.0\"; images: ( {} );", target("top.json")),
        1,
    );
    assert_eq!(names(&ok(&both, Some("other"))), ["top.json"]);
    assert_eq!(names(&ok(&both, None)), ["top.json"]);
    assert_eq!(names(&ok(&both, Some("target-1"))), ["t1.json"]);
}

#[test]
fn versions_in_swupdate_forms() {
    for v in [
        "1",
        "1.2",
        "1.2.3",
        "1.2.3.4",
        "65535.0.0.65535",
        "01.2.3",
        "65536",
        "1.2.3-rc.1",
        "1.0.0+build.7",
        "1.2-beta",
        "1.0.0-alpha-1+sha.5114f85",
    ] {
        let src = format!(
            "software = {{ version = \"{v}\"; images: ( {} ); }};",
            target("t")
        );
        assert_eq!(ok(&src, None).version, v);
    }
    for v in [
        "",
        "v1.2",
        "1..2",
        "1.2.3.4.5",
        "65536.1.2.3",
        "1.2.3-",
        "1.2.3-01",
        "1.2.3.4-rc1",
        "1.2.3+",
        "1.2 ",
        "abc",
        &"1".repeat(200),
    ] {
        let src = format!(
            "software = {{ version = \"{v}\"; images: ( {} ); }};",
            target("t")
        );
        let e = refused(&src, None);
        assert!(e.contains("is not a SWUpdate version"), "{v}: {e}");
        assert!(
            e.starts_with("sw-description line 1, column 24: software.version"),
            "{e}"
        );
    }
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = refused("software = {\n  version = 1.0.0;\n};", None);
    assert_eq!(
        e,
        "sw-description: line 2, column 13: 1.0.0 is not a number (a string needs double quotes)"
    );
    let e = refused("software = { version = \"1\"; };\n@include \"x\"\n", None);
    assert!(
        e.contains("line 2, column 1: @include is not allowed"),
        "{e}"
    );
    let big = format!("# {}\n", "x".repeat(libconfig::MAX_LEN));
    let e = refused(&big, None);
    assert!(e.contains("more than the 65536 holdfast reads"), "{e}");
}

#[test]
fn errors_are_typed() {
    let e = parse(&with_images(&[]), None).unwrap_err();
    assert!(matches!(e, DescriptionError::ContentCount { ref found } if found.is_empty()));
    let e = parse("software = { version = \"1\"; };", Some("b")).unwrap_err();
    assert!(matches!(
        e,
        DescriptionError::NoImages { board: Some(ref b), ref groups } if b == "b" && groups.is_empty()
    ));
    let e = parse("a = ", None).unwrap_err();
    assert!(matches!(
        e,
        DescriptionError::Syntax(SyntaxError::At { .. })
    ));
}

mod refusals;
