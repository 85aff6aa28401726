use super::*;

fn check(cases: &[(String, Option<&str>, &str)]) {
    for (src, board, want) in cases {
        let e = refused(src, *board);
        assert!(e.contains(want), "{src}\n got: {e}\nwant: {want}");
    }
}

/// Every way the shape around the entries can be wrong, each with where
/// and why.
#[test]
fn refusals_of_shape() {
    let t = target("t.json");
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("".into(), None, "sw-description has no software"),
        (
            format!("software = {{ version = \"1\"; images: ({t}); }}; other = 1;"),
            None,
            "holdfast does not handle other: holdfast reads only the software group",
        ),
        ("software = 1;".into(), None, "line 1, column 12: software is an integer; holdfast needs a group { }"),
        (format!("software = {{ images: ({t}); }};"), None, "sw-description has no software.version"),
        (
            format!("software = {{ version = 1; images: ({t}); }};"),
            None,
            "software.version is an integer; holdfast needs a string",
        ),
        (
            format!("software = {{ version = \"1\"; description = [\"a\"]; images: ({t}); }};"),
            None,
            "software.description is an array [ ]; holdfast needs a string",
        ),
        (
            format!("software = {{ version = \"1\"; images: ({t}); scripts: ({t}); }};"),
            None,
            "holdfast does not handle software.scripts: holdfast reads version",
        ),
        (
            format!("software = {{ version = \"1\"; b = {{ stable = {{ images: ({t}); }}; }}; }};"),
            Some("b"),
            "holdfast does not handle software.b.stable: SWUpdate's selections",
        ),
        (
            format!("software = {{ version = \"1\"; b = {{ images: ({t}); reboot = false; }}; }};"),
            Some("b"),
            "holdfast does not handle software.b.reboot",
        ),
        (
            format!("software = {{ version = \"1\"; b = 1; images: ({t}); }};"),
            Some("b"),
            "holdfast does not handle software.b",
        ),
        (
            format!("software = {{ version = \"1\"; hardware-compatibility = []; images: ({t}); }};"),
            None,
            "software.hardware-compatibility is empty; leave it out",
        ),
        (
            format!("software = {{ version = \"1\"; hardware-compatibility = [\"#RE:^1\\\\.[0-9]$\"]; images: ({t}); }};"),
            None,
            "holdfast does not handle software.hardware-compatibility[0]: SWUpdate's regular expressions",
        ),
        (
            format!("software = {{ version = \"1\"; hardware-compatibility = [1]; images: ({t}); }};"),
            None,
            "software.hardware-compatibility[0] is an integer; holdfast needs a string",
        ),
        (
            format!("software = {{ version = \"1\"; hardware-compatibility = \"1.0\"; images: ({t}); }};"),
            None,
            "software.hardware-compatibility is a string; holdfast needs an array",
        ),
        (
            format!("software = {{ version = \"1\"; hardware-compatibility = [\"\"]; images: ({t}); }};"),
            None,
            "software.hardware-compatibility[0] is empty",
        ),
    ];
    check(&cases);
}

/// Every way an entry of `images` can be wrong.
#[test]
fn refusals_of_entries() {
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            "software = { version = \"1\"; images: [ \"t\" ]; };".into(),
            None,
            "software.images is an array [ ]; holdfast needs a list ( ) of groups",
        ),
        (
            "software = { version = \"1\"; images: ( \"t\" ); };".into(),
            None,
            "software.images[0] is a string; holdfast needs a group { }",
        ),
        (with_images(&[]), None, "exactly one entry of type holdfast-target or holdfast-compose; it lists none"),
        (
            with_images(&[image("a.tar")]),
            None,
            "it lists none",
        ),
        (
            with_images(&[target("a"), target("b")]),
            None,
            "holdfast-compose; it lists a, b",
        ),
        (
            with_images(&[target("a"), image("x.tar"), image("x.tar")]),
            None,
            "software.images[2] lists x.tar again (also entry 1); file names must be unique",
        ),
        (
            with_entry(&format!("{{ filename = \"x\"; type = \"holdfast-image\"; sha256 = \"{B}\"; device = \"/dev/sda\"; }}")),
            None,
            "holdfast does not handle software.images[1].device: holdfast's entries have",
        ),
        (
            with_entry(&format!("{{ type = \"holdfast-image\"; sha256 = \"{B}\"; }}")),
            None,
            "software.images[1] has no filename",
        ),
        (
            with_entry(&format!("{{ filename = \"x\"; sha256 = \"{B}\"; }}")),
            None,
            "software.images[1] (x) has no type",
        ),
        (
            with_entry("{ filename = \"x\"; type = \"holdfast-image\"; }"),
            None,
            "software.images[1] (x) has no sha256; holdfast never applies a file it cannot check",
        ),
        (
            with_entry(&format!("{{ filename = \"x\"; type = \"holdfast-image\"; sha256 = \"{}\"; }}", &B[1..])),
            None,
            "software.images[1].sha256 is not 64 hex digits",
        ),
        (
            with_entry(&format!("{{ filename = \"x\"; type = \"holdfast-image\"; sha256 = \"{}g\"; }}", &B[1..])),
            None,
            "software.images[1].sha256 is not 64 hex digits",
        ),
        (
            with_entry(&format!("{{ filename = \"x\"; type = \"raw\"; sha256 = \"{B}\"; }}")),
            None,
            "software.images[1].type is \"raw\", not a type holdfast handles",
        ),
        (
            with_images(&[format!("{{ filename = \"c.yml\"; type = \"holdfast-compose\"; sha256 = \"{A}\"; }}")]),
            None,
            "software.images[0] (c.yml) is holdfast-compose and needs properties = { app = \"NAME\"; }",
        ),
        (
            with_images(&[format!("{{ filename = \"c.yml\"; type = \"holdfast-compose\"; sha256 = \"{A}\"; properties = {{ }}; }}")]),
            None,
            "software.images[0].properties has no app",
        ),
        (
            with_images(&[format!("{{ filename = \"c.yml\"; type = \"holdfast-compose\"; sha256 = \"{A}\"; properties = {{ app = \"w\"; mode = \"x\"; }}; }}")]),
            None,
            "holdfast does not handle software.images[0].properties.mode: holdfast-compose takes only app",
        ),
        (
            with_images(&[format!("{{ filename = \"c.yml\"; type = \"holdfast-compose\"; sha256 = \"{A}\"; properties = {{ app = \"../x\"; }}; }}")]),
            None,
            "software.images[0].properties.app name \"../x\" starts with '.'",
        ),
        (
            with_images(&[format!("{{ filename = \"t\"; type = \"holdfast-target\"; sha256 = \"{A}\"; properties = {{ app = \"w\"; }}; }}")]),
            None,
            "holdfast does not handle software.images[0].properties: only holdfast-compose entries take properties",
        ),
    ];
    check(&cases);
}

#[test]
fn file_names_are_plain() {
    let long = "x".repeat(256);
    for (name, want) in [
        ("", "is empty"),
        ("a/b", "\"a/b\" is not a plain file name"),
        ("/etc/passwd", "is not a plain file name"),
        ("..", "is not a plain file name"),
        (".", "is not a plain file name"),
        ("a\\nb", "holds a control character"),
        ("sw-description", "is the name of SWUpdate's own entry"),
        ("sw-description.sig", "is the name of SWUpdate's own entry"),
        (&long, "is longer than 255 bytes"),
    ] {
        let e = refused(&with_images(&[target(name)]), None);
        assert!(e.contains("software.images[0].filename"), "{name}: {e}");
        assert!(e.contains(want), "{name}: {e}");
    }
    let d = ok(
        &with_images(&[target(&"x".repeat(255)), image(".hidden")]),
        None,
    );
    assert_eq!(d.images[1].filename, ".hidden");
}
