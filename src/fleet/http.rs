//! One HTTP/1.1 POST over a fresh TCP connection, bounded in time and
//! size: all the fleet backends need (requests are rare: a reboot, a
//! keepalive every few seconds). hyper is in the tree already for the API.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::url::HttpUrl;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1 << 20;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// `POST {url.prefix}{path}` with a JSON body. `Err`: the server could
/// not be reached or did not answer in time (try another endpoint).
pub async fn post_json(
    url: &HttpUrl,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, post(url, path, headers, body))
        .await
        .map_err(|_| {
            format!(
                "{}: no answer within {} s",
                url.authority,
                REQUEST_TIMEOUT.as_secs()
            )
        })?
}

async fn post(
    url: &HttpUrl,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response, String> {
    let at = &url.authority;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at.as_str()))
        .await
        .map_err(|_| format!("{at}: connect timed out"))?
        .map_err(|e| format!("{at}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    let driver = tokio::spawn(conn);
    let mut req = Request::post(format!("{}{path}", url.prefix))
        .header("host", at.as_str())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{at}: {e}"))?;
    let result = async {
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("{at}: {e}"))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("{at}: reading the answer: {e}"))?
            .to_bytes();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    result
}
