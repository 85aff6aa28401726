//! Archives no tool writes: entries missing, unlisted, twice, misplaced.

use super::*;
use crate::swu::tests::archive;

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A sw-description listing `t.json` as the target and `images`.
fn description(target: &[u8], images: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries = vec![format!(
        "{{ filename = \"t.json\"; type = \"holdfast-target\"; sha256 = \"{}\"; }}",
        sha_hex(target)
    )];
    for (name, data) in images {
        entries.push(format!(
            "{{ filename = \"{name}\"; type = \"holdfast-image\"; sha256 = \"{}\"; }}",
            sha_hex(data)
        ));
    }
    format!(
        "software = {{ version = \"1.0\"; images: ( {} ); }};",
        entries.join(", ")
    )
    .into_bytes()
}

fn run(files: &[(&str, &[u8])]) -> (Result<Payload, PayloadError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let got = extract(&archive(true, files)[..], None, None, dir.path(), limits());
    (got, dir)
}

fn refused(files: &[(&str, &[u8])]) -> PayloadError {
    let (got, dir) = run(files);
    let e = got.unwrap_err();
    let left = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(left, 0, "{e}: files left behind");
    e
}

#[test]
fn an_unlisted_entry_is_refused() {
    let d = description(TARGET, &[("a.tar", b"aa")]);
    let e = refused(&[
        ("sw-description", &d),
        ("t.json", TARGET),
        ("a.tar", b"aa"),
        ("extra.bin", b"x"),
    ]);
    assert!(matches!(e, PayloadError::Unlisted { ref name } if name == "extra.bin"));
    assert_eq!(
        e.to_string(),
        "the archive holds extra.bin, which sw-description does not list; holdfast takes \
         only listed files, each checked against its sha256"
    );
}

#[test]
fn a_missing_listed_entry_is_refused() {
    let d = description(TARGET, &[("a.tar", b"aa"), ("b.tar", b"bb")]);
    let e = refused(&[("sw-description", &d), ("t.json", TARGET), ("a.tar", b"aa")]);
    assert_eq!(
        e.to_string(),
        "sw-description lists b.tar, which the archive does not hold"
    );
    let e = refused(&[("sw-description", &d), ("b.tar", b"bb"), ("a.tar", b"aa")]);
    assert!(
        matches!(e, PayloadError::Missing { ref name } if name == "t.json"),
        "{e}"
    );
}

#[test]
fn an_entry_twice_is_refused() {
    let d = description(TARGET, &[("a.tar", b"aa")]);
    let e = refused(&[
        ("sw-description", &d),
        ("a.tar", b"aa"),
        ("t.json", TARGET),
        ("a.tar", b"aa"),
    ]);
    assert_eq!(e.to_string(), "the archive holds a.tar twice");
}

#[test]
fn the_signature_comes_right_after_the_description() {
    let d = description(TARGET, &[]);
    let (got, _dir) = run(&[
        ("sw-description", &d),
        ("sw-description.sig", b"not checked"),
        ("t.json", TARGET),
    ]);
    assert_eq!(got.unwrap().signature.as_deref(), Some(&b"not checked"[..]));
    let e = refused(&[
        ("sw-description", &d),
        ("t.json", TARGET),
        ("sw-description.sig", b"late"),
    ]);
    assert!(matches!(e, PayloadError::MisplacedSignature), "{e}");
}

#[test]
fn files_listed_in_any_order() {
    let d = description(TARGET, &[("a.tar", b"aa"), ("b.tar", b"bb")]);
    let (got, dir) = run(&[
        ("sw-description", &d),
        ("b.tar", b"bb"),
        ("t.json", TARGET),
        ("a.tar", b"aa"),
    ]);
    // In the order listed, whatever the archive's.
    let p = got.unwrap();
    assert_eq!(
        p.images,
        [dir.path().join("a.tar"), dir.path().join("b.tar")]
    );
}

#[test]
fn the_content_is_utf8_and_bounded() {
    let latin1 = b"{\"caf\xe9\":1}";
    let d = description(latin1, &[]);
    let e = refused(&[("sw-description", &d), ("t.json", latin1)]);
    assert_eq!(e.to_string(), "t.json is not UTF-8 text");
    let big = vec![b' '; MAX_CONTENT as usize + 1];
    let d = description(&big, &[]);
    let e = refused(&[("sw-description", &d), ("t.json", &big)]);
    assert!(
        matches!(e, PayloadError::Archive(SwuError::TooLarge { .. })),
        "{e}"
    );
}

#[test]
fn the_archive_and_its_description_are_checked() {
    let e = refused(&[]);
    assert!(matches!(e, PayloadError::Empty), "{e}");
    let e = refused(&[("t.json", TARGET)]);
    assert!(
        matches!(
            e,
            PayloadError::Archive(SwuError::DescriptionNotFirst { .. })
        ),
        "{e}"
    );
    let e = refused(&[("sw-description", b"software = { version = \"1\"; };")]);
    assert!(
        matches!(
            e,
            PayloadError::Description(DescriptionError::NoImages { .. })
        ),
        "{e}"
    );
    let big = vec![b'#'; MAX_DESCRIPTION as usize + 1];
    let e = refused(&[("sw-description", &big)]);
    assert!(
        matches!(e, PayloadError::Archive(SwuError::TooLarge { .. })),
        "{e}"
    );
    let junk = [b'x'; 512];
    let e = extract(&junk[..], None, None, Path::new("/nonexistent"), limits()).unwrap_err();
    assert!(
        matches!(e, PayloadError::Archive(SwuError::BadMagic { offset: 0 })),
        "{e}"
    );
}

#[test]
fn a_missing_directory_is_named() {
    let d = description(TARGET, &[("a.tar", b"aa")]);
    let files: &[(&str, &[u8])] = &[("sw-description", &d), ("t.json", TARGET), ("a.tar", b"aa")];
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("gone");
    let e = extract(&archive(false, files)[..], None, None, &gone, limits()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PayloadError::Create { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("cannot create {}/a.tar: ", gone.display())),
        "{msg}"
    );
}

#[test]
fn an_entry_name_that_forges_a_log_line_is_shown_escaped() {
    let forged = "a\nERROR holdfastd: FORGED LOG LINE\x1b[31mred";
    let d = description(TARGET, &[]);
    let e = refused(&[("sw-description", &d), ("t.json", TARGET), (forged, b"x")]);
    let s = e.to_string();
    assert!(!s.contains('\n') && !s.contains('\x1b'), "{s}");
    assert!(
        s.contains("the archive holds a\\nERROR holdfastd: FORGED LOG LINE\\u{1b}[31mred,"),
        "{s}"
    );
    // First, and long: cut to what a message quotes.
    let long = format!("\u{202E}{}", "x".repeat(250));
    let e = refused(&[(long.as_str(), b"x")]);
    let s = e.to_string();
    assert!(
        s.starts_with("the first entry is \\u{202e}xxx") && s.contains("… (253 bytes in all)"),
        "{s}"
    );
}
