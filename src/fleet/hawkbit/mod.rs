//! Releases from a hawkBit server (DDI): the task polls, fetches each
//! deployment's `.swu`, puts its apps in force through the target store
//! and tells the server how it went. docs/hawkbit.md has the protocol as
//! gooseBit and hawkBit speak it.

mod cancel;
pub mod ddi;
mod deploy;
mod download;
mod ended;
mod journal;
mod offer;
mod task;
mod verdict;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use task::HawkbitTask;

use crate::config::{HawkbitAuth, HawkbitSettings};
use crate::fleet::http::{Client, Response, TlsFiles};
use crate::fleet::url::{HttpUrl, Scheme};
use crate::text::shown;
use ddi::{Execution, Finished};

/// The server as this device speaks to it: one controller's base URL, the
/// token to send, where downloads go.
#[derive(Clone)]
pub struct Server {
    pub client: Client,
    /// `{url}/{tenant}/controller/v1/{controllerId}`.
    pub base: HttpUrl,
    auth: Option<(String, String)>,
    pub dir: PathBuf,
    pub max_download: u64,
}

impl Server {
    pub fn new(s: &HawkbitSettings, controller_id: &str, dir: &Path) -> Result<Server, String> {
        let client = Client::new(&TlsFiles {
            ca_file: s.ca_file.clone(),
            cert_file: None,
            key_file: None,
        })?;
        let base = HttpUrl::parse(&format!(
            "{}/{}/controller/v1/{}",
            s.url,
            s.tenant,
            encode(controller_id)
        ))?;
        Ok(Server {
            client,
            base,
            auth: None,
            dir: dir.to_owned(),
            max_download: s.max_download,
        })
    }

    /// Reads the token file again (so a rotated token is used at once).
    /// A token readable by group or others is refused: it is a credential.
    pub fn load_token(&mut self, auth: &HawkbitAuth) -> Result<(), String> {
        let (scheme, file) = match auth {
            HawkbitAuth::None => {
                self.auth = None;
                return Ok(());
            }
            HawkbitAuth::TargetToken(f) => ("TargetToken", f),
            HawkbitAuth::GatewayToken(f) => ("GatewayToken", f),
        };
        let bytes = crate::fsutil::read_regular(file, 4096)
            .map_err(|e| format!("{}: {}", file.display(), e.reason()))?
            .ok_or_else(|| format!("{}: no such file", file.display()))?;
        let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{}: readable by group or others (mode {:o}); chmod 600 it",
                file.display(),
                meta.mode() & 0o777
            ));
        }
        let token = String::from_utf8(bytes)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                format!(
                    "{}: not a token (one line of printable characters)",
                    file.display()
                )
            })?;
        self.auth = Some(("authorization".into(), format!("{scheme} {token}")));
        Ok(())
    }

    /// Where a link the server gave leads, and whether the token goes
    /// with it. The token goes only to the configured server (its scheme,
    /// host and port), as hawkBit's own clients do; a link elsewhere (a
    /// CDN) is fetched without it, and only over https when the server is
    /// https: a plain http link from an https server is refused.
    pub fn resolve(&self, target: &str) -> Result<Link<'_>, String> {
        // Ours: a path under the controller's base ("" is the base).
        if target.is_empty() || target.starts_with('/') {
            return Ok(Link {
                url: self.base.clone(),
                path: target.to_owned(),
                auth: self.auth.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
            });
        }
        let (url, path) = HttpUrl::split(target).map_err(|e| {
            format!(
                "the link {} {e}; holdfast follows only http and https links",
                shown(target)
            )
        })?;
        let ours = url.scheme == self.base.scheme
            && url.host.eq_ignore_ascii_case(&self.base.host)
            && url.port == self.base.port;
        if !ours && self.base.scheme == Scheme::Https && url.scheme == Scheme::Http {
            return Err(format!(
                "the link {} is plain http from an https server; holdfast fetches it only over https",
                shown(target)
            ));
        }
        Ok(Link {
            url,
            path,
            auth: ours
                .then_some(self.auth.as_ref())
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        })
    }

    /// A request to `path` under the controller's base, or to an absolute
    /// link the server gave.
    pub async fn call(
        &self,
        method: &str,
        target: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, String> {
        let Link { url, path, auth } = self.resolve(target)?;
        let mut headers: Vec<(&str, &str)> = auth.into_iter().collect();
        headers.push(("accept", "application/json"));
        let r = self
            .client
            .send(
                method,
                &url,
                &path,
                &headers,
                body.map(|b| ("application/json", b)),
            )
            .await?;
        if !(200..300).contains(&r.status) {
            // The path may be the server's link: up to 64 KiB.
            return Err(format!(
                "{method} {}: HTTP {}{}",
                shown(&format!("{}{path}", url.prefix)),
                r.status,
                excerpt(&r.body)
            ));
        }
        Ok(r)
    }

    pub async fn feedback(
        &self,
        id: &str,
        execution: Execution,
        finished: Finished,
        progress: Option<(u32, u32)>,
        details: &[String],
    ) -> Result<(), String> {
        let body = ddi::feedback(execution, finished, progress, details);
        let path = format!("/deploymentBase/{}/feedback", encode(id));
        let r = self.call("POST", &path, Some(body)).await.map(|_| ());
        if let Err(e) = &r {
            tracing::warn!(action = id, error = %e, "feedback to hawkBit not delivered: {e}");
        }
        r
    }
}

/// A link as [`Server::resolve`] resolved it.
#[derive(Debug)]
pub struct Link<'a> {
    pub url: HttpUrl,
    /// The path and query to request.
    pub path: String,
    /// `("authorization", "TargetToken ...")`, for the server's own links.
    pub auth: Option<(&'a str, &'a str)>,
}

/// The first line of an error answer, for the log (servers answer errors
/// in JSON or HTML; a line of it says enough).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    match text.lines().next().map(str::trim) {
        Some(l) if !l.is_empty() => format!(": {}", shown(l)),
        _ => String::new(),
    }
}

/// A path segment: what is not unreserved is percent-encoded.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode("dev-1.a_b~"), "dev-1.a_b~");
        assert_eq!(encode("a b?#%"), "a%20b%3F%23%25");
    }

    #[test]
    fn a_token_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let settings = HawkbitSettings {
            url: "http://127.0.0.1:1".into(),
            tenant: "DEFAULT".into(),
            controller_id: None,
            auth: HawkbitAuth::TargetToken(f.clone()),
            ca_file: None,
            local_target: crate::config::LocalTarget::Refuse,
            max_download: 1 << 20,
        };
        let mut s = Server::new(&settings, "dev 1", dir.path()).unwrap();
        assert_eq!(s.base.prefix, "/DEFAULT/controller/v1/dev%201");
        let e = s.load_token(&settings.auth).unwrap_err();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        s.load_token(&settings.auth).unwrap();
        assert_eq!(
            s.resolve("/deploymentBase/1").unwrap().auth,
            Some(("authorization", "TargetToken s3cret"))
        );
    }

    fn server(url: &str) -> Server {
        let dir = std::env::temp_dir();
        let settings = HawkbitSettings {
            url: url.into(),
            tenant: "DEFAULT".into(),
            controller_id: None,
            auth: HawkbitAuth::None,
            ca_file: None,
            local_target: crate::config::LocalTarget::Refuse,
            max_download: 1 << 20,
        };
        let mut s = Server::new(&settings, "d", &dir).unwrap();
        s.auth = Some(("authorization".into(), "TargetToken t".into()));
        s
    }

    /// A refused link of the server's own (up to 64 KiB of path) is
    /// quoted cut in the error the log and status show.
    #[tokio::test]
    async fn an_error_quotes_a_long_link_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 4096];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&b[..n]);
            }
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let s = server(&url);
        let href = format!("{url}/{}", "a".repeat(60_000));
        let e = s.call("GET", &href, None).await.unwrap_err();
        assert!(
            e.contains("HTTP 404") && e.len() < 400,
            "{} bytes: {e}",
            e.len()
        );
    }

    #[test]
    fn the_token_goes_only_to_the_configured_server() {
        let s = server("https://127.0.0.1:18583");
        let token = Some(("authorization", "TargetToken t"));
        for own in [
            "https://127.0.0.1:18583/DEFAULT/controller/v1/d/softwaremodules/3/artifacts/r.swu",
            "HTTPS://127.0.0.1:18583/x",
            "/deploymentBase/1",
        ] {
            assert_eq!(s.resolve(own).unwrap().auth, token, "{own}");
        }
        // Another port, host or scheme: fetched without the token.
        for other in [
            "https://127.0.0.1:18584/dl/31/r.swu",
            "https://cdn.example/dl/31/r.swu",
            "https://127.0.0.1/dl",
        ] {
            let l = s.resolve(other).unwrap();
            assert_eq!(l.auth, None, "{other}");
        }
        // Plain http from an https server: refused, with the reason.
        let e = s.resolve("http://127.0.0.1:18582/dl/31/r.swu").unwrap_err();
        assert!(e.contains("plain http from an https server"), "{e}");
        let e = s.resolve("http://127.0.0.1:18583/dl/31/r.swu").unwrap_err();
        assert!(e.contains("plain http"), "{e}");
        let e = s.resolve("file:///etc/passwd").unwrap_err();
        assert!(e.contains("only http and https links"), "{e}");
        // An http server: an https CDN link is fine, an http one too, both
        // without the token.
        let s = server("http://127.0.0.1:18582");
        assert_eq!(s.resolve("https://cdn.example/r.swu").unwrap().auth, None);
        assert_eq!(s.resolve("http://127.0.0.1:9/r.swu").unwrap().auth, None);
        assert_eq!(
            s.resolve("http://127.0.0.1:18582/r.swu").unwrap().auth,
            token
        );
    }
}
