use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// `openssl` (Debian's) in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl; scripts/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate and its EC key, `<name>.pem` and `<name>.key`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &crt,
        ],
    );
    (dir.join(crt), dir.join(key))
}

fn files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> TlsFiles {
    TlsFiles {
        ca_file: ca.map(Path::to_owned),
        cert_file: cert.map(Path::to_owned),
        key_file: key.map(Path::to_owned),
    }
}

fn new_err(f: &TlsFiles) -> String {
    match Client::new(f) {
        Ok(_) => panic!("{f:?} accepted"),
        Err(e) => e,
    }
}

#[test]
fn new_reads_the_files_and_names_the_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (ca, ca_key) = self_signed(d, "ca");
    let (other, _) = self_signed(d, "other");
    assert!(Client::new(&TlsFiles::default()).is_ok());
    assert!(Client::new(&files(Some(&ca), None, None)).is_ok());
    assert!(Client::new(&files(Some(&ca), Some(&ca), Some(&ca_key))).is_ok());

    let missing = d.join("missing.pem");
    let e = new_err(&files(Some(&missing), None, None));
    assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
    assert!(e.contains("No such file"), "{e}");

    let garbled = d.join("garbled.pem");
    std::fs::write(&garbled, "not a certificate\n").unwrap();
    let e = new_err(&files(Some(&garbled), None, None));
    assert_eq!(
        e,
        format!(
            "{}: no certificate in it (PEM \"BEGIN CERTIFICATE\")",
            garbled.display()
        )
    );
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = new_err(&files(Some(&garbled), None, None));
    assert_eq!(e, format!("{}: not a valid PEM file", garbled.display()));
    // Good base64, not a certificate.
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = new_err(&files(Some(&garbled), None, None));
    assert!(
        e.starts_with(&format!("{}: certificate 1: ", garbled.display())),
        "{e}"
    );

    // Client certificates: both files, a key, the right key.
    let e = new_err(&files(None, Some(&ca), None));
    assert!(e.contains("needs both cert_file and key_file"), "{e}");
    let e = new_err(&files(None, Some(&ca), Some(&ca)));
    assert!(
        e.starts_with(&format!("{}: no private key in it", ca.display())),
        "{e}"
    );
    let e = new_err(&files(None, Some(&other), Some(&ca_key)));
    assert_eq!(
        e,
        format!(
            "{} is not the key of the certificate in {}",
            ca_key.display(),
            other.display()
        )
    );
    // Nothing of a key file's contents in its error.
    let secret = d.join("secret.key");
    std::fs::write(
        &secret,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl%%\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = new_err(&files(None, Some(&ca), Some(&secret)));
    assert_eq!(e, format!("{}: not a valid PEM file", secret.display()));
}

/// A server that reads one request's head, answers `answer` as it
/// comes (a pause between its parts), and hands the head back.
async fn serve_once(
    answer: Vec<Vec<u8>>,
    pause: Duration,
) -> (HttpUrl, tokio::task::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = HttpUrl::parse(&format!("http://{}/base", l.local_addr().unwrap())).unwrap();
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let head = read_head(&mut s).await;
        for part in answer {
            if s.write_all(&part).await.is_err() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let _ = s.shutdown().await;
        head
    });
    (url, h)
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn ok_head(len: usize) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nX-Thing: a b\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn send_bounds_the_answer_to_1_mib() {
    let client = Client::new(&TlsFiles::default()).unwrap();
    let (url, server) = serve_once(
        vec![ok_head(MAX_BODY), vec![b'x'; MAX_BODY]],
        Duration::ZERO,
    )
    .await;
    let r = client
        .send(
            "PUT",
            &url,
            "/v1/x?y=1",
            &[("authorization", "t0k")],
            Some(("text/plain", b"hi".to_vec())),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.body.len()), (200, MAX_BODY));
    assert_eq!(r.header("x-THING"), Some("a b"));
    assert_eq!(r.header("content-length"), Some("1048576"));
    let head = server.await.unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("put /base/v1/x?y=1 http/1.1\r\n"),
        "{head}"
    );
    for h in [
        format!("\r\nhost: {}\r\n", url.authority),
        format!("\r\nuser-agent: holdfast/{}\r\n", env!("CARGO_PKG_VERSION")),
        "\r\ncontent-type: text/plain\r\n".into(),
        "\r\nauthorization: t0k\r\n".into(),
    ] {
        assert!(head.contains(&h), "{h:?} not in {head}");
    }

    let (url, _server) = serve_once(
        vec![ok_head(MAX_BODY + 1), vec![b'x'; MAX_BODY + 1]],
        Duration::ZERO,
    )
    .await;
    let e = client.send("GET", &url, "", &[], None).await.unwrap_err();
    assert_eq!(
        e,
        SendError::TooLarge {
            at: url.authority.clone(),
            max: MAX_BODY
        }
    );
    assert_eq!(
        e.to_string(),
        format!("{}: the answer is larger than 1024 KiB", url.authority)
    );

    // A header value that is not HTTP: named, its value not shown.
    let e = client
        .send(
            "GET",
            &url,
            "/",
            &[("authorization", "secret\nvalue")],
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("the value of header authorization is not valid HTTP"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
}

#[tokio::test]
async fn open_streams_a_large_body_chunk_by_chunk() {
    const SIZE: usize = 6 << 20;
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut parts = vec![ok_head(SIZE)];
    parts.extend(body.chunks(256 << 10).map(<[u8]>::to_vec));
    let (url, server) = serve_once(parts, Duration::from_millis(5)).await;
    let client = Client::new(&TlsFiles::default()).unwrap();
    let mut d = client
        .open(
            &url,
            "/file.swu",
            &[("range", "bytes=0-")],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(d.status, 200);
    assert_eq!(d.header("Content-Length"), Some(SIZE.to_string().as_str()));
    let (mut got, mut chunks, mut largest) = (0usize, 0usize, 0usize);
    while let Some(c) = d.chunk().await.unwrap() {
        assert!(
            c.iter()
                .enumerate()
                .all(|(i, b)| *b == ((got + i) % 251) as u8),
            "wrong bytes at {got}"
        );
        got += c.len();
        chunks += 1;
        largest = largest.max(c.len());
    }
    assert_eq!(got, SIZE);
    // Pieces as they came, never the whole body at once.
    assert!(
        chunks >= 24 && largest <= 1 << 20,
        "{chunks} chunks, largest {largest}"
    );
    let head = server.await.unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("get /base/file.swu http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nrange: bytes=0-\r\n"), "{head}");
}

#[tokio::test]
async fn a_download_that_stalls_fails_after_the_idle_time() {
    let (url, _server) = serve_once(
        vec![[ok_head(1000), vec![b'a'; 100]].concat(), vec![]],
        Duration::from_secs(5),
    )
    .await;
    let client = Client::new(&TlsFiles::default()).unwrap();
    let mut d = client
        .open(&url, "/", &[], Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(d.chunk().await.unwrap().map(|c| c.len()), Some(100));
    let e = d.chunk().await.unwrap_err();
    assert_eq!(e, format!("{}: no data for 300ms", url.authority));
}

#[tokio::test]
async fn https_without_any_trusted_ca_says_so() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = HttpUrl::parse(&format!("https://{}", l.local_addr().unwrap())).unwrap();
    let client =
        Client::with_bundles(&TlsFiles::default(), vec!["/nonexistent/bundle.pem".into()]).unwrap();
    let e = client
        .send("GET", &url, "/", &[], None)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: no trusted CA: no system bundle (/nonexistent/bundle.pem) and no ca_file",
            url.authority
        )
    );
    // A plain http server behind an https URL: a TLS error, not a hang.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = HttpUrl::parse(&format!("https://{}", l.local_addr().unwrap())).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = s.read(&mut [0u8; 1024]).await;
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = self_signed(tmp.path(), "ca");
    let client = Client::with_bundles(&files(Some(&ca), None, None), Vec::new()).unwrap();
    let e = client
        .send("GET", &url, "/", &[], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{}: TLS: ", url.authority)), "{e}");
    server.await.unwrap();
}

/// A link that is no path to request (a hawkBit server's href of 1 MiB,
/// or with characters HTTP does not carry) is quoted cut and escaped.
#[test]
fn a_path_that_cannot_be_requested_is_quoted_cut() {
    let url = HttpUrl::parse("http://127.0.0.1:1").unwrap();
    for path in [
        format!("/{}", "a".repeat(1 << 20)),
        "/a\u{202e}b\u{1b}[31m".to_owned(),
    ] {
        let e = request("GET", &url, &path, &[], None).unwrap_err();
        assert!(e.contains("is not a path to request"), "{e}");
        assert!(e.len() < 400, "{} bytes", e.len());
        assert!(!e.contains('\u{202e}') && !e.contains('\u{1b}'), "{e}");
    }
}
