//! The fleet clients' HTTP/1.1: one fresh connection per request (they
//! are rare: a reboot, a keepalive every few seconds, a poll), plain TCP
//! for `http://`, rustls for `https://` ([`super::tls`]). hyper is in the
//! tree already for the API.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub use super::tls::TlsFiles;
use super::tls::{describe, Tls};
use super::url::{HttpUrl, Scheme};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1 << 20;
const USER_AGENT: &str = concat!("holdfast/", env!("CARGO_PKG_VERSION"));

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server answered, with more than holdfast reads: trying it (or
    /// another member holding the same data) again gives the same.
    #[error("{at}: the answer is larger than {} KiB", max >> 10)]
    TooLarge { at: String, max: usize },
    /// Not reached, no answer in time, a broken answer.
    #[error("{0}")]
    Failed(String),
}

impl From<SendError> for String {
    fn from(e: SendError) -> String {
        e.to_string()
    }
}

impl From<String> for SendError {
    fn from(e: String) -> SendError {
        SendError::Failed(e)
    }
}

/// Made once (it reads the TLS files); cheap to clone.
#[derive(Clone)]
pub struct Client {
    tls: Arc<Tls>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A GET whose body is read chunk by chunk ([`Download::chunk`]).
pub struct Download {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    body: Incoming,
    idle: Duration,
    authority: String,
    _conn: Conn,
}

impl Download {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next piece of the body; `None` at its end. `Err` when nothing
    /// came for the idle time, or the connection broke.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let frame = tokio::time::timeout(self.idle, self.body.frame())
                .await
                .map_err(|_| {
                    format!(
                        "{}: no data for {}",
                        self.authority,
                        humantime::format_duration(self.idle)
                    )
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("{}: {}", self.authority, describe(&e))),
                // Trailers and empty frames are no data.
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) if !d.is_empty() => return Ok(Some(d)),
                    _ => continue,
                },
            }
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The task that drives a connection, ended with its request.
struct Conn(JoinHandle<Result<(), hyper::Error>>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn headers_of(h: &hyper::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl Client {
    /// Reads `ca_file` and the client certificate and key now; errors
    /// name the file. The system bundle is read at the first https request.
    pub fn new(tls: &TlsFiles) -> Result<Client, String> {
        Ok(Client {
            tls: Arc::new(Tls::new(tls)?),
        })
    }

    #[cfg(test)]
    fn with_bundles(tls: &TlsFiles, bundles: Vec<std::path::PathBuf>) -> Result<Client, String> {
        Ok(Client {
            tls: Arc::new(Tls::with_bundles(tls, bundles)?),
        })
    }

    /// `method {url.prefix}{path}`: an answer bounded to 1 MiB, within
    /// 10 s overall (3 s to connect). `Err`: the server could not be
    /// reached, or did not answer in time (try another endpoint).
    pub async fn send(
        &self,
        method: &str,
        url: &HttpUrl,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response, SendError> {
        let at = &url.authority;
        let exchange = async {
            let req = request(method, url, path, headers, body)?;
            let (mut send, _conn) = self.connect(url).await?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("{at}: {}", describe(&e)))?;
            let status = resp.status().as_u16();
            let headers = headers_of(resp.headers());
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(
                    |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                        Some(_) => SendError::TooLarge {
                            at: at.clone(),
                            max: MAX_BODY,
                        },
                        None => SendError::Failed(format!(
                            "{at}: reading the answer: {}",
                            describe(&*e)
                        )),
                    },
                )?
                .to_bytes();
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                SendError::Failed(format!(
                    "{at}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
    }

    /// A JSON POST (the etcd gateway, FleetLock).
    pub async fn post_json(
        &self,
        url: &HttpUrl,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, SendError> {
        self.send("POST", url, path, headers, Some(("application/json", body)))
            .await
    }

    /// `GET {url.prefix}{path}` for a download: the status and headers
    /// within 10 s, then the body as it comes ([`Download::chunk`], each
    /// within `idle`), never held whole; its size is the caller's to bound.
    pub async fn open(
        &self,
        url: &HttpUrl,
        path: &str,
        headers: &[(&str, &str)],
        idle: Duration,
    ) -> Result<Download, String> {
        let at = &url.authority;
        let head = async {
            let req = request("GET", url, path, headers, None)?;
            let (mut send, conn) = self.connect(url).await?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("{at}: {}", describe(&e)))?;
            Ok::<_, String>((resp, conn))
        };
        let (resp, conn) = tokio::time::timeout(REQUEST_TIMEOUT, head)
            .await
            .map_err(|_| format!("{at}: no answer within {} s", REQUEST_TIMEOUT.as_secs()))??;
        Ok(Download {
            status: resp.status().as_u16(),
            headers: headers_of(resp.headers()),
            body: resp.into_body(),
            idle,
            authority: at.clone(),
            _conn: conn,
        })
    }

    /// A connection to `url`'s server, TLS when it says `https`.
    async fn connect(&self, url: &HttpUrl) -> Result<(SendRequest<Full<Bytes>>, Conn), String> {
        let at = &url.authority;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at.as_str()))
            .await
            .map_err(|_| format!("{at}: connect timed out"))?
            .map_err(|e| format!("{at}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let hs = |e: hyper::Error| format!("{at}: {}", describe(&e));
        Ok(match url.scheme {
            Scheme::Http => {
                let (send, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(hs)?;
                (send, Conn(tokio::spawn(conn)))
            }
            Scheme::Https => {
                let tls = self
                    .tls
                    .connect(stream, &url.host)
                    .await
                    .map_err(|e| format!("{at}: {e}"))?;
                let (send, conn) = http1::handshake(TokioIo::new(tls)).await.map_err(hs)?;
                (send, Conn(tokio::spawn(conn)))
            }
        })
    }
}

/// The request as sent: `host`, `user-agent`, the content type of a body,
/// then the caller's headers. Errors name a bad header, never its value
/// (it may be a token).
fn request(
    method: &str,
    url: &HttpUrl,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Result<Request<Full<Bytes>>, String> {
    let at = &url.authority;
    let method = hyper::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let mut target = format!("{}{path}", url.prefix);
    if target.is_empty() {
        target.push('/');
    }
    // The path may be a server's link (a hawkBit href): quoted cut.
    let uri: hyper::Uri = target.parse().map_err(|_| {
        format!(
            "{at}: \"{}\" is not a path to request",
            crate::text::shown(&target)
        )
    })?;
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", url.host_header())
        .header("user-agent", USER_AGENT);
    let (content, body) = match body {
        Some((t, b)) => (Some(("content-type", t)), Bytes::from(b)),
        None => (None, Bytes::new()),
    };
    for (k, v) in content.iter().chain(headers) {
        let name = hyper::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("{at}: {k:?} is not a header name"))?;
        let value = hyper::header::HeaderValue::from_str(v)
            .map_err(|_| format!("{at}: the value of header {name} is not valid HTTP"))?;
        req = req.header(name, value);
    }
    req.body(Full::new(body))
        .map_err(|e| format!("{at}: bad request: {e}"))
}

#[cfg(test)]
mod tests;
