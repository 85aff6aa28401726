//! The HTTP API's limits against a real holdfastd on TCP and its unix
//! socket: idle connections, big bodies, half-sent and idle requests.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{free_port, ok, wait_for, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// serve.rs MAX_CONNECTIONS.
const MAX_CONNECTIONS: usize = 64;
/// serve.rs HEADER_READ_TIMEOUT.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// serve.rs MAX_BODY_BYTES.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// holdfastd with the API on TCP too, both listening; the port.
async fn start(env: &mut Env) -> u16 {
    let port = free_port();
    env.write_config(&format!("api.tcp = \"127.0.0.1:{port}\"\n"));
    env.start_daemon().await;
    let sock = env.dir.join("api.sock");
    let up = wait_for(Duration::from_secs(10), || {
        let sock = sock.clone();
        async move { sock.exists() && TcpStream::connect(("127.0.0.1", port)).await.is_ok() }
    })
    .await;
    assert!(up.is_ok(), "API not listening:\n{}", env.log());
    port
}

fn key(env: &Env) -> String {
    std::fs::read_to_string(env.state().join("api-key"))
        .unwrap()
        .trim()
        .to_owned()
}

fn daemon_fds(env: &Env) -> usize {
    let pid = env.daemon.as_ref().unwrap().id();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sends `raw` on a new TCP connection; everything the server sends until
/// it closes.
async fn tcp_exchange(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(raw).await.unwrap();
    until_closed(&mut s, Duration::from_secs(10)).await
}

async fn until_closed(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => {}
        // A reset is a close too.
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Err(_) => panic!(
            "the server did not close within {within:?}; got {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

fn json_body(response: &str) -> serde_json::Value {
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

const PING: &[u8] = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn curl_unix(env: &Env, args: &[&str], path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(env.dir.join("api.sock"))
        .args(args)
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// Before: 1,030 silent TCP connections took all 1,024 descriptors; /ping
/// stopped answering and lock directories could not be opened.
#[tokio::test]
async fn idle_tcp_connections_do_not_starve_the_daemon() {
    let mut env = Env::new();
    let port = start(&mut env).await;
    let before = daemon_fds(&env);
    let idle: Vec<std::net::TcpStream> = (0..500)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let r = tcp_exchange(port, PING).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.ends_with("OK"), "{r}");
    assert_eq!(curl_unix(&env, &[], "/ping"), (200, "OK".into()));
    // Locks are still seen: the watcher can open the new directories.
    env.service_dir("app1/main");
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    let fds = daemon_fds(&env);
    assert!(
        fds <= before + MAX_CONNECTIONS + 16,
        "holdfastd has {fds} descriptors open ({before} before 500 idle connections)"
    );
    // The oldest silent connections were closed to make room: no more
    // than the cap of ours are still open.
    let still_open = || {
        idle.iter()
            .filter(|s| {
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                matches!((&**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    let settled = wait_for(Duration::from_secs(5), || {
        let n = still_open();
        async move { n <= MAX_CONNECTIONS }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} idle connections still open",
        still_open()
    );
    // The crowding is logged once, not once per connection.
    let log = env.log();
    let warned = format!("HTTP API on TCP: {MAX_CONNECTIONS} connections open");
    assert_eq!(log.matches(&warned).count(), 1, "{log}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_the_api_goes_on() {
    let mut env = Env::new();
    let port = start(&mut env).await;
    let k = key(&env);
    let too_big = MAX_BODY_BYTES + 1;
    // A declared length over the limit: refused before the body is sent.
    let head = format!(
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k}\r\n\
         Content-Type: application/json\r\nContent-Length: {too_big}\r\n\r\n"
    );
    let r = tcp_exchange(port, head.as_bytes()).await;
    assert_eq!(status(&r), 413, "{r}");
    let v = json_body(&r);
    assert_eq!(v["Data"], "");
    assert!(
        v["Error"].as_str().unwrap().contains("1048576 bytes"),
        "{r}"
    );
    // v2 routes answer in their own shape.
    let head = format!(
        "POST /v2/applications/app1/restart HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {k}\r\nContent-Length: {too_big}\r\n\r\n"
    );
    let r = tcp_exchange(port, head.as_bytes()).await;
    assert_eq!(status(&r), 413, "{r}");
    assert_eq!(json_body(&r)["status"], "failed");
    // No length given: found too big while reading it.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{too_big:x}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; too_big]).await.unwrap();
    let r = until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status(&r), 413, "{r}");
    assert!(json_body(&r)["Error"].is_string(), "{r}");
    // curl over the unix socket, as a client would send it.
    let file = env.dir.join("big.json");
    std::fs::write(&file, vec![b' '; 2 * MAX_BODY_BYTES]).unwrap();
    let auth = format!("Authorization: Bearer {k}");
    let data = format!("@{}", file.display());
    let args = ["-X", "POST", "-H", &auth, "--data-binary", &data];
    assert_eq!(curl_unix(&env, &args, "/v1/update").0, 413);
    // The next requests, on new connections, are answered.
    let r = tcp_exchange(port, PING).await;
    assert_eq!(status(&r), 200, "{r}");
    let auth_only = ["-X", "POST", "-H", &auth];
    // (no target in force: nothing triggered, 202)
    assert_eq!(curl_unix(&env, &auth_only, "/v1/update").0, 202);
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_by_the_header_timeout() {
    let mut env = Env::new();
    let port = start(&mut env).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let r = until_closed(&mut s, HEADER_READ_TIMEOUT + Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert!(
        took >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed after {took:?}"
    );
    // Whatever it said, it was not an answer to the half request.
    assert!(!r.contains("200 OK"), "{r}");
    // Meanwhile and after, others are answered.
    assert_eq!(status(&tcp_exchange(port, PING).await), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let mut env = Env::new();
    let port = start(&mut env).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Kept alive: two requests on one connection.
    for _ in 0..2 {
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\nOK") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("no answer")
                .unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
    }
    let idle_since = Instant::now();
    let r = until_closed(&mut s, HEADER_READ_TIMEOUT + Duration::from_secs(3)).await;
    let took = idle_since.elapsed();
    assert_eq!(r, "");
    assert!(
        took >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed after {took:?}"
    );
}
