//! What make-swu.py writes, then damaged, or met by something already on
//! disk, or over the limits: refused, and nothing left behind.

use super::*;

/// A byte changed in the second image: its sha256 does not match, and the
/// first image, already written, is removed again.
#[test]
fn a_tampered_byte_fails_the_sha256_and_leaves_nothing() {
    if !have("python3", "--version") {
        return;
    }
    for format in ["crc", "newc"] {
        let s = Scratch::new();
        let mut args = TWO_IMAGES.to_vec();
        args.extend(["--format", format]);
        let swu = s.swu(&args);
        let at = swu.windows(4).position(|w| w == b"APP2").unwrap() + 10;
        let mut bad = swu.clone();
        let mut app2 = s.app2.clone();
        // +1 and -1: the crc format's sum stays, so only sha256 can tell.
        for (buf, i) in [(&mut bad, at), (&mut app2, 10)] {
            buf[i] += 1;
            buf[i + 1] -= 1;
        }
        let e = s.extract(&bad, None, None).unwrap_err();
        let hex12 = |d: &[u8]| -> String {
            Sha256::digest(d)[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        match &e {
            PayloadError::Sha256 { name, got, want } => {
                assert_eq!(name, "app2.tar");
                assert_eq!(got, &hex12(&app2));
                assert_eq!(want, &hex12(&s.app2));
            }
            other => panic!("{format}: {other}"),
        }
        let msg = e.to_string();
        assert!(
            msg.starts_with("app2.tar is damaged or not the file listed: its sha256 is "),
            "{msg}"
        );
        assert!(msg.contains(&hex12(&s.app2)), "{msg}");
        assert!(s.left().is_empty(), "{format}: {:?}", s.left());
        if format == "crc" {
            // One byte changed: the archive's own checksum sees it first.
            let mut bad = swu.clone();
            bad[at] ^= 1;
            let e = s.extract(&bad, None, None).unwrap_err();
            assert!(
                matches!(e, PayloadError::Archive(SwuError::Checksum { ref name }) if name == "app2.tar"),
                "{e}"
            );
            assert!(s.left().is_empty());
        }
    }
}

/// Whatever is at `out/<filename>` (a symlink, dangling or not, or a
/// file) is neither followed nor replaced.
#[test]
fn what_is_at_an_image_path_is_left_alone() {
    if !have("python3", "--version") {
        return;
    }
    let s = Scratch::new();
    let swu = s.swu(TWO_IMAGES);
    let outside = s.tmp.path().join("outside");
    fs::write(&outside, b"keep").unwrap();
    let planted = s.out().join("app2.tar");
    std::os::unix::fs::symlink(&outside, &planted).unwrap();
    let e = s.extract(&swu, None, None).unwrap_err();
    assert!(
        matches!(e, PayloadError::Exists { ref path } if *path == planted),
        "{e}"
    );
    assert!(e.to_string().contains("is already there"), "{e}");
    assert_eq!(fs::read(&outside).unwrap(), b"keep");
    assert!(fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    // app1.tar, written before, is gone again; the link stays.
    assert_eq!(s.left(), ["app2.tar"]);
    fs::remove_file(&outside).unwrap();
    let e = s.extract(&swu, None, None).unwrap_err();
    assert!(matches!(e, PayloadError::Exists { .. }), "{e}");
    assert!(!outside.exists(), "created through a dangling link");
    fs::remove_file(&planted).unwrap();
    fs::write(&planted, b"mine").unwrap();
    let e = s.extract(&swu, None, None).unwrap_err();
    assert!(matches!(e, PayloadError::Exists { .. }), "{e}");
    assert_eq!(fs::read(&planted).unwrap(), b"mine");
    assert_eq!(s.left(), ["app2.tar"]);
}

#[test]
fn limits_bound_each_image_and_the_total() {
    if !have("python3", "--version") {
        return;
    }
    let s = Scratch::new();
    let swu = s.swu(TWO_IMAGES);
    let small = Limits {
        max_image: 1000,
        max_total: 1 << 30,
    };
    let e = extract(&swu[..], None, None, &s.out(), small).unwrap_err();
    assert_eq!(
        e.to_string(),
        "app1.tar is 200003 bytes, more than the 1000 allowed for it"
    );
    assert!(s.left().is_empty());
    // Room for the target and app1.tar but not app2.tar as well.
    let max_total = (TARGET.len() + s.app1.len() + 1) as u64;
    let tight = Limits {
        max_image: 1 << 30,
        max_total,
    };
    let e = extract(&swu[..], None, None, &s.out(), tight).unwrap_err();
    let total = max_total - 1 + s.app2.len() as u64;
    assert_eq!(
        e.to_string(),
        format!("app2.tar brings the listed files to {total} bytes, more than the {max_total} allowed in all")
    );
    assert!(s.left().is_empty());
}
