//! A hostile (or broken) hawkBit DDI server on loopback, spoken raw over
//! HTTP/1.1 (one request per connection, as holdfast's client makes
//! them) so that it can do what a well-behaved server never does: reset a
//! download half-way, answer 206 with a wrong Content-Range, redirect,
//! link `file://`, announce the wrong hash, offer a new action at every
//! poll. It records every request. Optionally over TLS; optionally with a
//! second, plain listener for "CDN" links on another port.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub const BASE: &str = "/DEFAULT/controller/v1/dev-hostile";

/// How the artifact is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dl {
    Full,
    /// 503 Service Unavailable, as a CDN under load.
    Unavailable,
    /// The headers and half of the body, then the connection reset.
    Reset,
    /// A request without Range is reset half-way; one with Range gets a
    /// 206 from byte 0 (a Content-Range that is not what was asked).
    BadRange,
    /// 302 to another URL.
    Redirect,
}

/// Where the deployment's download link points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The server itself (scheme, host and port of the DDI).
    Own,
    /// The plain second listener (another port; `http://`).
    Other,
    /// `file:///etc/passwd`.
    File,
}

#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub swu: Vec<u8>,
    /// The sha256 announced (the real one unless a test lies).
    pub sha256: String,
    pub window_closed: bool,
    pub update: &'static str,
    pub link: Link,
    pub dl: Dl,
}

impl Offer {
    pub fn new(id: &str, swu: Vec<u8>) -> Offer {
        Offer {
            id: id.into(),
            sha256: sha256(&swu),
            swu,
            window_closed: false,
            update: "forced",
            link: Link::Own,
            dl: Dl::Full,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    /// `main` or `other` (the listener).
    pub listener: &'static str,
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

#[derive(Default)]
pub struct State {
    pub sleep: String,
    pub offer: Option<Offer>,
    /// A new action at every poll (id counting up, content changing),
    /// made from this one.
    pub rotate: Option<Offer>,
    rotated: u32,
    pub requests: Vec<Request>,
    /// configData linked in every poll, however often it is sent.
    pub always_config: bool,
    /// The system bus: at the first request, whether logind lists
    /// holdfast's block inhibitor is recorded.
    pub bus: Option<String>,
    pub inhibited_at_first: Option<bool>,
}

pub type Shared = Arc<Mutex<State>>;

pub struct Fake {
    pub state: Shared,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub url: String,
}

pub fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl Fake {
    /// Serves on two loopback ports: the DDI (TLS with `tls` = (cert,
    /// key)) and a plain one for links elsewhere.
    pub async fn start(tls: Option<(&std::path::Path, &std::path::Path)>) -> Fake {
        let state: Shared = Arc::new(Mutex::new(State {
            sleep: "00:00:01".into(),
            ..Default::default()
        }));
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", main.local_addr().unwrap());
        let other_url = format!("http://{}", other.local_addr().unwrap());
        let acceptor = tls.map(|(cert, key)| acceptor(cert, key));
        let urls = (url.clone(), other_url.clone());
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = main.accept().await.unwrap();
                let (s, urls, acceptor) = (s.clone(), urls.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(t) = a.accept(tcp).await {
                                serve(t, "main", s, urls).await;
                            }
                        }
                        None => serve(tcp, "main", s, urls).await,
                    }
                });
            }
        });
        let (s, urls) = (state.clone(), (url.clone(), other_url.clone()));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = other.accept().await.unwrap();
                tokio::spawn(serve(tcp, "other", s.clone(), urls.clone()));
            }
        });
        Fake { state, url }
    }

    pub fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests whose path contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.contains(part))
            .count()
    }

    pub fn polls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == BASE)
            .count()
    }

    /// The feedback bodies for action `id`.
    pub fn feedback(&self, id: &str) -> Vec<serde_json::Value> {
        let route = format!("{BASE}/deploymentBase/{id}/feedback");
        self.requests()
            .iter()
            .filter(|r| r.path == route)
            .map(Request::json)
            .collect()
    }

    /// The `closed` feedback bodies for `id`.
    pub fn closed(&self, id: &str) -> Vec<serde_json::Value> {
        self.feedback(id)
            .into_iter()
            .filter(|v| v["status"]["execution"] == "closed")
            .collect()
    }

    /// Waits until `f` holds (up to `bound`); panics with `what` and the
    /// requests seen.
    pub async fn wait(&self, bound: Duration, what: &str, f: impl Fn(&Fake) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() > bound {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {}",
                            r.method,
                            r.path,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .collect();
                panic!(
                    "{what}: not within {bound:?}; requests:\n{}",
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Option<(String, String, BTreeMap<String, String>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        head.push(b[0]);
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((method, path, headers, body))
}

async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: &str, headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.flush().await;
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    listener: &'static str,
    state: Shared,
    (url, other_url): (String, String),
) {
    let Some((method, path, headers, body)) = read_request(&mut s).await else {
        return;
    };
    let first = {
        let mut st = state.lock().unwrap();
        st.requests.push(Request {
            listener,
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body,
        });
        (st.requests.len() == 1).then(|| st.bus.clone()).flatten()
    };
    if let Some(bus) = first {
        let listed = inhibited(&bus).await;
        state.lock().unwrap().inhibited_at_first = Some(listed);
    }
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    const JSON: &str = "content-type: application/json\r\n";
    if method == "GET" && path == BASE {
        let body = {
            let mut st = state.lock().unwrap();
            if let Some(r) = st.rotate.clone() {
                st.rotated += 1;
                let n = st.rotated;
                let mut swu = r.swu.clone();
                swu.extend_from_slice(format!("{n:08}").as_bytes());
                st.offer = Some(Offer {
                    id: format!("{}", 100 + n),
                    sha256: sha256(&swu),
                    swu,
                    ..r
                });
            }
            let mut links = serde_json::Map::new();
            if st.always_config {
                links.insert(
                    "configData".into(),
                    serde_json::json!({"href": format!("{url}{BASE}/configData")}),
                );
            }
            if let Some(o) = &st.offer {
                links.insert(
                    "deploymentBase".into(),
                    serde_json::json!({"href": format!("{url}{BASE}/deploymentBase/{}?c=1", o.id)}),
                );
            }
            json(serde_json::json!({"config": {"polling": {"sleep": st.sleep}}, "_links": links}))
        };
        return respond(&mut s, "200 OK", JSON, &body).await;
    }
    if method == "PUT" && path == format!("{BASE}/configData") {
        return respond(&mut s, "200 OK", JSON, b"{}").await;
    }
    if let Some(rest) = path.strip_prefix(&format!("{BASE}/deploymentBase/")) {
        if method == "POST" && rest.ends_with("/feedback") {
            return respond(&mut s, "200 OK", JSON, b"{}").await;
        }
        let id = rest.split('?').next().unwrap_or("");
        let offer = state.lock().unwrap().offer.clone().filter(|o| o.id == id);
        let Some(o) = offer else {
            return respond(&mut s, "404 Not Found", "", b"").await;
        };
        let href = match o.link {
            Link::Own => format!("{url}/dl/{}/r.swu", o.id),
            Link::Other => format!("{other_url}/dl/{}/r.swu", o.id),
            Link::File => "file:///etc/passwd".to_owned(),
        };
        let body = json(serde_json::json!({
            "id": o.id,
            "deployment": {"download": "forced", "update": o.update,
                "maintenanceWindow": if o.window_closed { "unavailable" } else { "available" },
                "chunks": [{"part": "bApp", "version": "1.0.0", "name": "release",
                    "artifacts": [{"filename": "r.swu", "size": o.swu.len(),
                        "hashes": {"sha256": o.sha256},
                        "_links": {"download": {"href": href}}}]}]},
        }));
        return respond(&mut s, "200 OK", JSON, &body).await;
    }
    if let Some(rest) = path.strip_prefix("/dl/") {
        let id = rest.split('/').next().unwrap_or("");
        let offer = state.lock().unwrap().offer.clone().filter(|o| o.id == id);
        let Some(o) = offer else {
            return respond(&mut s, "404 Not Found", "", b"").await;
        };
        let ranged = headers.contains_key("range");
        match o.dl {
            Dl::Full => respond(&mut s, "200 OK", "", &o.swu).await,
            Dl::Unavailable => respond(&mut s, "503 Service Unavailable", "", b"busy").await,
            Dl::Redirect => {
                let to = format!("location: {other_url}/elsewhere/r.swu\r\n");
                respond(&mut s, "302 Found", &to, b"").await
            }
            Dl::BadRange if ranged => {
                let cr = format!(
                    "content-range: bytes 0-{}/{}\r\n",
                    o.swu.len() - 1,
                    o.swu.len()
                );
                respond(&mut s, "206 Partial Content", &cr, &o.swu).await
            }
            Dl::Reset | Dl::BadRange => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    o.swu.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&o.swu[..o.swu.len() / 2]).await;
                let _ = s.flush().await;
                // Dropped without the rest: the client sees the body cut.
            }
        }
        return;
    }
    respond(&mut s, "404 Not Found", "", b"").await
}

/// Whether logind lists a block inhibitor of holdfast's.
pub async fn inhibited(bus: &str) -> bool {
    let Ok(b) = zbus::connection::Builder::address(bus) else {
        return false;
    };
    let Ok(conn) = b.build().await else {
        return false;
    };
    let Ok(login) = holdfast::system::logind::Login1ManagerProxy::new(&conn).await else {
        return false;
    };
    login
        .list_inhibitors()
        .await
        .map(|l| l.iter().any(|i| i.1 == "holdfast" && i.3 == "block"))
        .unwrap_or(false)
}
