use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn content_ranges() {
    assert_eq!(content_range_start(Some("bytes 100-199/200")), Some(100));
    assert_eq!(content_range_start(Some("bytes */200")), None);
    assert_eq!(content_range_start(None), None);
}

#[test]
fn a_partial_file_is_hashed_as_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("x.part");
    std::fs::write(&part, b"abc").unwrap();
    let (h, n) = hash_existing(&part, &Hash::Sha1(String::new())).unwrap();
    assert_eq!(n, 3);
    assert_eq!(h.hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    // A link planted in its place is not followed.
    std::fs::remove_file(&part).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &part).unwrap();
    assert!(hash_existing(&part, &Hash::Sha1(String::new())).is_err());
    assert!(open_part(&part, true).is_err());
}

/// A one-file HTTP/1.1 server on loopback: `Range: bytes=N-` answered 206
/// unless `ranges` is off; answers each connection once.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(body: Vec<u8>, ranges: bool) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!(
        "http://{}/DEFAULT/controller/v1/d/download",
        listener.local_addr().unwrap()
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).await.unwrap() == 0 {
                    break;
                }
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            seen.lock().unwrap().push(head.clone());
            let from = head
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
                .filter(|_| ranges);
            let reply = match from {
                Some(n) => format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {n}-{}/{}\r\nconnection: close\r\n\r\n",
                    body.len() - n,
                    body.len() - 1,
                    body.len()
                ),
                None => format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                ),
            };
            s.write_all(reply.as_bytes()).await.unwrap();
            s.write_all(&body[from.unwrap_or(0)..]).await.unwrap();
            let _ = s.shutdown().await;
        }
    });
    Server { url, requests }
}

fn artifact(url: &str, hash: Hash, size: u64) -> Artifact {
    Artifact {
        filename: "r.swu".into(),
        size,
        hash,
        href: url.to_owned(),
    }
}

fn content() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn sha1(b: &[u8]) -> String {
    Sha1::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn client() -> Client {
    Client::new(&Default::default()).unwrap()
}

fn link(a: &Artifact, auth: Option<(&'static str, &'static str)>) -> Link<'static> {
    let (url, path) = crate::fleet::url::HttpUrl::split(&a.href).unwrap();
    Link { url, path, auth }
}

#[tokio::test]
async fn a_download_checked_by_sha256_lands_under_its_hash() {
    let body = content();
    let srv = serve(body.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&srv.url, Hash::Sha256(sha256(&body)), body.len() as u64);
    let mut seen = Vec::new();
    let path = fetch(
        &client(),
        &a,
        &link(&a, Some(("authorization", "TargetToken t"))),
        dir.path(),
        1 << 20,
        |p| seen.push(p),
    )
    .await
    .unwrap();
    assert_eq!(path, verified_path(dir.path(), &a));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(seen.last(), Some(&100));
    assert!(srv.requests.lock().unwrap()[0].contains("authorization: targettoken t"));
    // Fetched again: the verified file is used, no request.
    fetch(&client(), &a, &link(&a, None), dir.path(), 1 << 20, |_| {})
        .await
        .unwrap();
    assert_eq!(srv.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_partial_download_resumes_with_a_range_or_starts_over() {
    let body = content();
    for ranges in [true, false] {
        let srv = serve(body.clone(), ranges);
        let dir = tempfile::tempdir().unwrap();
        let a = artifact(&srv.url, Hash::Sha1(sha1(&body)), body.len() as u64);
        std::fs::write(
            dir.path().join(format!("{}.part", sha1(&body))),
            &body[..100_000],
        )
        .unwrap();
        let path = fetch(&client(), &a, &link(&a, None), dir.path(), 1 << 20, |_| {})
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body, "ranges {ranges}");
        assert!(srv.requests.lock().unwrap()[0].contains("range: bytes=100000-"));
    }
}

#[tokio::test]
async fn a_wrong_hash_or_too_much_leaves_nothing() {
    let body = content();
    let srv = serve(body.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&srv.url, Hash::Sha256("0".repeat(64)), 0);
    let e = fetch(&client(), &a, &link(&a, None), dir.path(), 1 << 20, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, DownloadError::Mismatch { algo: "sha256", .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&sha256(&body)), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Announced bigger than allowed: refused before a request.
    let a = artifact(&srv.url, Hash::Sha256(sha256(&body)), 10 << 20);
    let e = fetch(&client(), &a, &link(&a, None), dir.path(), 1 << 20, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::TooLarge { .. }), "{e}");
    // No size announced, more than allowed comes: stopped and removed.
    let a = artifact(&srv.url, Hash::Sha256(sha256(&body)), 0);
    let e = fetch(&client(), &a, &link(&a, None), dir.path(), 100_000, |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("max_download (100000)"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // More than the size announced: said so, not named max_download.
    let a = artifact(&srv.url, Hash::Sha256(sha256(&body)), 2000);
    let e = fetch(&client(), &a, &link(&a, None), dir.path(), 1 << 30, |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "download of r.swu: more than the 2000 bytes the server announced"
    );
    assert!(e.permanent());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_206_that_is_not_the_rest_says_what_is_wrong() {
    assert_eq!(check_range(100, Some("bytes 100-199/200")), Ok(()));
    let e = check_range(100, Some("bytes 0-199/200")).unwrap_err();
    assert!(
        e.contains("from byte 0 (Content-Range: bytes 0-199/200), asked from byte 100"),
        "{e}"
    );
    let e = check_range(100, None).unwrap_err();
    assert!(e.contains("without a Content-Range"), "{e}");
    let e = check_range(100, Some("bytes \x1b[31m/1")).unwrap_err();
    assert!(
        e.contains("not bytes START-END/TOTAL") && !e.contains('\x1b'),
        "{e}"
    );
    let e = check_range(0, Some("bytes 0-1/2")).unwrap_err();
    assert!(e.contains("to a request for the whole file"), "{e}");
}
