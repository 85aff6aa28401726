//! The FleetLock protocol (airlock, poseidon/fleetlock): `POST
//! {url}/v1/pre-reboot` takes a slot, `POST {url}/v1/steady-state` gives it
//! back; header `fleet-lock-protocol: true`, body
//! `{"client_params":{"id":...,"group":...}}`. Only 200 grants; servers
//! disagree on the rest (airlock answers 500 `failed_lock` when full,
//! poseidon 423), so any other answer is "not granted, retry", its `kind`
//! kept for the logs.

use serde_json::{json, Value};

use super::http::{Client, TlsFiles};
use super::url::HttpUrl;

pub struct FleetLock {
    client: Client,
    url: HttpUrl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Granted,
    /// Not granted: what the server said, for the logs and the status.
    Refused(String),
}

/// Maps a server's answer; pure.
pub fn answer(status: u16, body: &[u8]) -> Answer {
    if status == 200 {
        return Answer::Granted;
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Server text goes into logs and D-Bus.
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(crate::text::shown);
    Answer::Refused(match (text("kind"), text("value")) {
        (Some(k), Some(m)) => format!("HTTP {status} {k}: {m}"),
        (Some(k), None) => format!("HTTP {status} {k}"),
        _ => format!("HTTP {status}"),
    })
}

impl FleetLock {
    pub fn new(url: &str, tls: &TlsFiles) -> Result<FleetLock, String> {
        Ok(FleetLock {
            client: Client::new(tls)?,
            url: HttpUrl::parse(url).map_err(|r| format!("{url}: {r}"))?,
        })
    }

    async fn post(&self, path: &str, id: &str, group: &str) -> Result<Answer, String> {
        let body = json!({"client_params": {"id": id, "group": group}});
        let r = self
            .client
            .post_json(
                &self.url,
                path,
                &[("fleet-lock-protocol", "true")],
                body.to_string().into_bytes(),
            )
            .await?;
        Ok(answer(r.status, &r.body))
    }

    pub async fn pre_reboot(&self, id: &str, group: &str) -> Result<Answer, String> {
        self.post("/v1/pre-reboot", id, group).await
    }

    pub async fn steady_state(&self, id: &str, group: &str) -> Result<Answer, String> {
        self.post("/v1/steady-state", id, group).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Answers as airlock (internal/server) and poseidon/fleetlock write
    // them; taken from their sources, not captured from running servers
    // (neither installs on the machines the tests run on).
    const AIRLOCK_OK: (&str, &str) = ("200 OK", "");
    const AIRLOCK_FULL: (&str, &str) = (
        "500 Internal Server Error",
        "{\"kind\":\"failed_lock\",\"value\":\"semaphore currently full\"}\n",
    );
    const AIRLOCK_NO_HEADER: (&str, &str) = (
        "400 Bad Request",
        "{\"kind\":\"missing_header\",\"value\":\"missing fleet-lock-protocol header\"}\n",
    );
    const POSEIDON_LOCKED: (&str, &str) = (
        "423 Locked",
        "{\"kind\":\"locked\",\"value\":\"lock is held by another node\"}",
    );
    const POSEIDON_OK: (&str, &str) = ("200 OK", "{}");

    fn response((status, body): (&str, &str)) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn only_200_grants() {
        assert_eq!(answer(200, b""), Answer::Granted);
        assert_eq!(
            answer(
                500,
                br#"{"kind":"failed_lock","value":"semaphore currently full"}"#
            ),
            Answer::Refused("HTTP 500 failed_lock: semaphore currently full".into())
        );
        assert_eq!(answer(423, b"not json"), Answer::Refused("HTTP 423".into()));
        assert_eq!(answer(204, b""), Answer::Refused("HTTP 204".into()));
        assert_eq!(
            answer(409, br#"{"kind":"x\ny"}"#),
            Answer::Refused("HTTP 409 x\\ny".into())
        );
    }

    /// A server that answers each connection with the next recorded
    /// response and hands the raw requests back.
    async fn replay(
        answers: Vec<(&'static str, &'static str)>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/prefix", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let mut seen = Vec::new();
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then the Content-Length body.
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                seen.push(String::from_utf8_lossy(&buf).into_owned());
                s.write_all(response(a).as_bytes()).await.unwrap();
                let _ = s.shutdown().await;
            }
            seen
        });
        (url, h)
    }

    #[tokio::test]
    async fn against_recorded_airlock_and_poseidon_answers() {
        let (url, server) = replay(vec![
            AIRLOCK_FULL,
            AIRLOCK_OK,
            AIRLOCK_OK,
            AIRLOCK_NO_HEADER,
            POSEIDON_LOCKED,
            POSEIDON_OK,
        ])
        .await;
        let c = FleetLock::new(&url, &TlsFiles::default()).unwrap();
        let full = c.pre_reboot("dev1", "default").await.unwrap();
        assert_eq!(
            full,
            Answer::Refused("HTTP 500 failed_lock: semaphore currently full".into())
        );
        assert_eq!(
            c.pre_reboot("dev1", "default").await.unwrap(),
            Answer::Granted
        );
        assert_eq!(
            c.steady_state("dev1", "default").await.unwrap(),
            Answer::Granted
        );
        assert!(
            matches!(c.pre_reboot("dev1", "g").await.unwrap(), Answer::Refused(m) if m.contains("missing_header"))
        );
        assert!(
            matches!(c.pre_reboot("dev1", "g").await.unwrap(), Answer::Refused(m) if m == "HTTP 423 locked: lock is held by another node")
        );
        assert_eq!(c.steady_state("dev1", "g").await.unwrap(), Answer::Granted);
        let seen = server.await.unwrap();
        let first = &seen[0];
        assert!(
            first.starts_with("POST /prefix/v1/pre-reboot HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(
            first
                .to_ascii_lowercase()
                .contains("\r\nfleet-lock-protocol: true\r\n"),
            "{first}"
        );
        assert!(
            first.ends_with(r#"{"client_params":{"group":"default","id":"dev1"}}"#),
            "{first}"
        );
        assert!(
            seen[2].starts_with("POST /prefix/v1/steady-state "),
            "{}",
            seen[2]
        );
        // Nobody listening: an error, never a grant.
        drop(c);
        let dead = FleetLock::new("http://127.0.0.1:9", &TlsFiles::default()).unwrap();
        assert!(dead.pre_reboot("a", "b").await.is_err());
    }
}
