//! `.swu` files as scripts/make-swu.py writes them (the ones the gooseBit
//! tests upload); damaged ones are in `guards`, crafted ones in `crafted`.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod crafted;
mod guards;

const MAKE_SWU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-swu.py");
const TARGET: &[u8] = br#"{"version":1,"apps":{}}"#;

fn limits() -> Limits {
    Limits {
        max_image: 1 << 30,
        max_total: 1 << 31,
    }
}

/// Whether `cmd` runs; the tests needing it are skipped, saying so, when
/// it does not.
fn have(cmd: &str, arg: &str) -> bool {
    let ok = Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: {cmd} is not installed");
    }
    ok
}

/// Bytes that differ from file to file, starting with `marker` so the
/// tests can find them in an archive.
fn data(marker: &str, len: usize) -> Vec<u8> {
    let mut v = marker.as_bytes().to_vec();
    let mut x: u32 = 0x9e37_79b9 ^ len as u32;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

/// A scratch directory with the inputs make-swu.py is given and `out/`,
/// where images go.
struct Scratch {
    tmp: tempfile::TempDir,
    app1: Vec<u8>,
    app2: Vec<u8>,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let app1 = data("APP1", 200_003);
        // Plain letters after the marker, so a test can change two bytes
        // and keep their sum (the crc format's checksum).
        let mut app2 = b"APP2".to_vec();
        app2.extend_from_slice(&[b'm'; 60]);
        fs::write(tmp.path().join("t.json"), TARGET).unwrap();
        fs::write(
            tmp.path().join("c.yml"),
            b"services:\n  web:\n    image: nginx\n",
        )
        .unwrap();
        fs::write(tmp.path().join("app1.tar"), &app1).unwrap();
        fs::write(tmp.path().join("app2.tar"), &app2).unwrap();
        fs::create_dir(tmp.path().join("out")).unwrap();
        Self { tmp, app1, app2 }
    }

    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    /// make-swu.py's `.swu` for these arguments.
    fn swu(&self, args: &[&str]) -> Vec<u8> {
        let path = self.tmp.path().join("x.swu");
        let out = Command::new("python3")
            .arg(MAKE_SWU)
            .arg(&path)
            .args(args)
            .current_dir(self.tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::read(path).unwrap()
    }

    fn extract(
        &self,
        swu: &[u8],
        board: Option<&str>,
        hw: Option<&str>,
    ) -> Result<Payload, PayloadError> {
        extract(swu, board, hw, &self.out(), limits())
    }

    /// What is left in `out/`.
    fn left(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.out())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

const TWO_IMAGES: &[&str] = &[
    "--version",
    "1.2.0",
    "--target",
    "t.json",
    "--image",
    "app1.tar",
    "--image",
    "app2.tar",
];

#[test]
fn target_and_images_in_both_formats() {
    if !have("python3", "--version") {
        return;
    }
    for format in ["crc", "newc"] {
        let s = Scratch::new();
        let mut args = TWO_IMAGES.to_vec();
        args.extend([
            "--hw-compat",
            "1.0",
            "--description",
            "first",
            "--format",
            format,
        ]);
        let p = s.extract(&s.swu(&args), None, Some("1.0")).unwrap();
        assert_eq!(p.version, "1.2.0");
        assert_eq!(p.description.as_deref(), Some("first"));
        assert_eq!(
            p.content,
            PayloadContent::Target(String::from_utf8(TARGET.to_vec()).unwrap())
        );
        assert_eq!(
            p.images,
            [s.out().join("app1.tar"), s.out().join("app2.tar")]
        );
        assert_eq!(fs::read(&p.images[0]).unwrap(), s.app1, "{format}");
        assert_eq!(fs::read(&p.images[1]).unwrap(), s.app2, "{format}");
        let mode = fs::metadata(&p.images[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(p.signature, None);
    }
}

#[test]
fn a_compose_file_for_its_app() {
    if !have("python3", "--version") {
        return;
    }
    let s = Scratch::new();
    let swu = s.swu(&[
        "--version",
        "2.0.0-rc.1",
        "--compose",
        "c.yml",
        "--app",
        "web",
        "--image",
        "app1.tar",
    ]);
    let p = s.extract(&swu, None, None).unwrap();
    assert_eq!(
        p.content,
        PayloadContent::Compose {
            app: AppName::new("web").unwrap(),
            yaml: "services:\n  web:\n    image: nginx\n".into(),
        }
    );
    assert_eq!(p.images, [s.out().join("app1.tar")]);
}

/// make-swu.py --board puts compatibility and images in the board's group.
#[test]
fn the_board_group() {
    if !have("python3", "--version") {
        return;
    }
    let s = Scratch::new();
    let swu = s.swu(&[
        "--version",
        "1.0",
        "--target",
        "t.json",
        "--image",
        "app1.tar",
        "--board",
        "rpi4",
        "--hw-compat",
        "1.0",
    ]);
    let e = s.extract(&swu, None, Some("1.0")).unwrap_err();
    assert!(
        matches!(
            e,
            PayloadError::Description(DescriptionError::NoImages { .. })
        ),
        "{e}"
    );
    let e = s.extract(&swu, Some("rpi4"), Some("2.0")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this update is built for hardware revisions [1.0], this device is 2.0"
    );
    assert!(s.left().is_empty());
    let p = s.extract(&swu, Some("rpi4"), Some("1.0")).unwrap();
    assert_eq!(p.images, [s.out().join("app1.tar")]);
}

#[test]
fn hardware_revisions() {
    if !have("python3", "--version") {
        return;
    }
    let s = Scratch::new();
    let swu = s.swu(&[
        "--version",
        "1.0",
        "--target",
        "t.json",
        "--hw-compat",
        "1.0",
        "--hw-compat",
        "1.2",
    ]);
    s.extract(&swu, None, Some("1.2")).unwrap();
    // A device that does not know its revision takes any.
    s.extract(&swu, None, None).unwrap();
    let e = s.extract(&swu, None, Some("2.0")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this update is built for hardware revisions [1.0, 1.2], this device is 2.0"
    );
    // A description without compatibility is for any revision.
    let any = s.swu(&["--version", "1.0", "--target", "t.json"]);
    s.extract(&any, None, Some("2.0")).unwrap();
}

/// Both kinds make-swu.py signs with are returned as they are, not checked.
#[test]
fn a_signature_is_kept_unverified() {
    if !have("python3", "--version") || !have("openssl", "version") {
        return;
    }
    let s = Scratch::new();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(s.tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&["genrsa", "-out", "key.pem", "2048"]);
    let mut args = TWO_IMAGES.to_vec();
    args.extend(["--sign", "key.pem"]);
    let p = s.extract(&s.swu(&args), None, None).unwrap();
    assert_eq!(p.signature.map(|sig| sig.len()), Some(256), "RSA-2048");
    assert_eq!(p.images.len(), 2);
    fs::remove_file(&p.images[0]).unwrap();
    fs::remove_file(&p.images[1]).unwrap();
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "key.pem",
        "-subj",
        "/CN=holdfast-test",
        "-days",
        "1",
        "-addext",
        "extendedKeyUsage=emailProtection",
        "-out",
        "cert.pem",
    ]);
    args.extend(["--sign-cert", "cert.pem", "--format", "newc"]);
    let p = s.extract(&s.swu(&args), None, None).unwrap();
    let sig = p.signature.unwrap();
    assert_eq!(sig[0], 0x30, "a DER CMS structure");
    assert!(sig.len() > 256);
}
