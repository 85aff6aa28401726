use super::*;

/// A cpio archive as `cpio -o -H crc` (or `-H newc`) writes one.
pub(super) fn archive(crc: bool, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, data: &[u8], ino: u32| {
        let sum = data.iter().fold(0u32, |s, b| s.wrapping_add(u32::from(*b)));
        let fields = [
            ino,
            0o100644,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            if crc { sum } else { 0 },
        ];
        out.extend_from_slice(if crc { b"070702" } else { b"070701" });
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, data)) in files.iter().enumerate() {
        entry(name, data, i as u32 + 1);
    }
    entry(TRAILER, b"", 0);
    out
}

fn all(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, SwuError> {
    let mut r = SwuReader::new(bytes);
    let mut v = Vec::new();
    while let Some(e) = r.next_entry()? {
        let data = r.read_small(&e, 1 << 20)?;
        v.push((e.name, data));
    }
    Ok(v)
}

#[test]
fn entries_come_in_order_in_both_formats() {
    for crc in [true, false] {
        let a = archive(
            crc,
            &[
                ("sw-description", b"software = { version = \"1\"; };"),
                ("holdfast-target.json", b"{\"version\":1,\"apps\":{}}"),
                ("odd", b"abc"),
            ],
        );
        let got = all(&a).unwrap();
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sw-description", "holdfast-target.json", "odd"]);
        assert_eq!(got[2].1, b"abc");
    }
}

#[test]
fn unread_entries_are_skipped() {
    let a = archive(
        true,
        &[
            ("sw-description", b"x"),
            ("big", &[7u8; 5000]),
            ("t", b"yz"),
        ],
    );
    let mut r = SwuReader::new(&a[..]);
    let mut names = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        names.push(e.name.clone());
        if e.name == "t" {
            assert_eq!(r.read_small(&e, 10).unwrap(), b"yz");
        }
    }
    assert_eq!(names, ["sw-description", "big", "t"]);
}

#[test]
fn sw_description_must_come_first() {
    let a = archive(true, &[("image.tar", b"x"), ("sw-description", b"y")]);
    assert!(matches!(all(&a), Err(SwuError::DescriptionNotFirst { name }) if name == "image.tar"));
}

#[test]
fn a_damaged_content_fails_its_checksum() {
    let mut a = archive(true, &[("sw-description", b"hello")]);
    let at = a.windows(5).position(|w| w == b"hello").unwrap();
    a[at] = b'j';
    assert!(matches!(all(&a), Err(SwuError::Checksum { name }) if name == "sw-description"));
}

#[test]
fn a_cut_archive_says_where() {
    let a = archive(true, &[("sw-description", &[1u8; 300])]);
    assert!(
        matches!(all(&a[..200]), Err(SwuError::Truncated { name }) if name == "sw-description")
    );
    assert!(matches!(all(&a[..50]), Err(SwuError::Truncated { .. })));
}

#[test]
fn not_an_archive_and_bad_headers_are_named() {
    let zip = [b"PK\x03\x04".as_slice(), &[b'.'; 200]].concat();
    assert!(matches!(all(&zip), Err(SwuError::BadMagic { offset: 0 })));
    let mut a = archive(true, &[("sw-description", b"x")]);
    a[6 + 8 * 6] = b'z';
    assert!(matches!(
        all(&a),
        Err(SwuError::BadHeader {
            field: "filesize",
            ..
        })
    ));
}

#[test]
fn paths_and_oversized_entries_are_refused() {
    let a = archive(true, &[("sw-description", b"x"), ("../etc/passwd", b"y")]);
    assert!(matches!(all(&a), Err(SwuError::BadName { .. })));
    let a = archive(true, &[("sw-description", &[0u8; 100])]);
    let mut r = SwuReader::new(&a[..]);
    let e = r.next_entry().unwrap().unwrap();
    let mut sink = Vec::new();
    assert!(matches!(
        r.copy_to(&e, &mut sink, 99),
        Err(SwuError::TooLarge {
            size: 100,
            max: 99,
            ..
        })
    ));
    assert!(
        sink.is_empty(),
        "nothing is written before the size is checked"
    );
}

/// What SWUpdate's documentation tells users to run (`cpio -ov -H crc`)
/// makes an archive this reader takes.
#[test]
fn reads_what_the_cpio_tool_writes() {
    let Ok(out) = std::process::Command::new("cpio").arg("--version").output() else {
        panic!("cpio is not installed (scripts/setup.sh installs it)");
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sw-description"),
        b"software = { version = \"2\"; };",
    )
    .unwrap();
    std::fs::write(dir.path().join("holdfast-target.json"), vec![b'{'; 4099]).unwrap();
    for format in ["crc", "newc"] {
        let mut child = std::process::Command::new("cpio")
            .args(["-o", "--quiet", "-H", format])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            b"sw-description\nholdfast-target.json\n",
        )
        .unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let got = all(&out.stdout).unwrap();
        assert_eq!(got.len(), 2, "{format}");
        assert_eq!(got[1].1.len(), 4099, "{format}");
    }
}

/// What the test fixture's `.swu` maker writes (the archives the gooseBit
/// tests upload, which Debian's SWUpdate also accepts) reads back whole.
#[test]
fn reads_what_make_swu_writes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t.json");
    std::fs::write(&target, br#"{"version":1,"apps":{}}"#).unwrap();
    let swu = dir.path().join("x.swu");
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-swu.py"))
        .arg(&swu)
        .args(["--version", "1.0", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = all(&std::fs::read(&swu).unwrap()).unwrap();
    assert_eq!(got[0].0, DESCRIPTION);
    let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
    let t = names
        .iter()
        .position(|n| *n != DESCRIPTION)
        .expect("a second entry");
    assert_eq!(got[t].1, br#"{"version":1,"apps":{}}"#, "{names:?}");
}
