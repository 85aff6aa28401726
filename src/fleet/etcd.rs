//! etcd through its v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/*`; keys and values base64, 64-bit numbers as strings), with
//! failover across the endpoints, and airlock's semaphore on top of it.
//!
//! The gateway is part of every etcd v3 server; speaking it over the hyper
//! client that is in the tree anyway costs far less binary than a gRPC
//! client, and needs no `protoc` in the Yocto build.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::http::{Client, SendError, TlsFiles};
use super::semaphore::{self, Semaphore, Take};
use super::url::HttpUrl;
use crate::text::shown;

/// Compare-and-swap rounds before a take or release gives up for now
/// (each lost round means another writer won; the caller retries later).
const CAS_ROUNDS: usize = 16;

pub struct Etcd {
    client: Client,
    endpoints: Vec<HttpUrl>,
    /// The endpoint that answered last; tried first.
    current: usize,
    auth: Option<(String, PathBuf)>,
    token: Option<String>,
}

/// One key as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a take came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Granted(Semaphore),
    Full(Semaphore),
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// The key just past every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn kvs(v: &Value) -> Result<Vec<Kv>, String> {
    let Some(list) = v.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let dec = |f: &str| {
                B64.decode(kv.get(f).and_then(Value::as_str).unwrap_or(""))
                    .map_err(|e| format!("etcd answered a {f} that is not base64: {e}"))
            };
            Ok(Kv {
                key: String::from_utf8_lossy(&dec("key")?).into_owned(),
                value: dec("value")?,
                mod_revision: num(kv.get("mod_revision").unwrap_or(&Value::Null)),
            })
        })
        .collect()
}

impl Etcd {
    pub fn new(
        endpoints: &[String],
        user: Option<String>,
        password_file: Option<PathBuf>,
        tls: &TlsFiles,
    ) -> Result<Etcd, String> {
        let endpoints = endpoints
            .iter()
            .map(|e| HttpUrl::parse(e).map_err(|r| format!("{e}: {r}")))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoint".into());
        }
        Ok(Etcd {
            client: Client::new(tls)?,
            endpoints,
            current: 0,
            auth: user.zip(password_file),
            token: None,
        })
    }

    /// One gateway call, on the endpoint that answered last, else the next
    /// ones in turn.
    async fn call(&mut self, path: &str, body: &Value) -> Result<Value, String> {
        let mut errors = Vec::new();
        let mut reauthed = false;
        let n = self.endpoints.len();
        let mut i = 0;
        while i < n {
            let at = (self.current + i) % n;
            if self.auth.is_some() && self.token.is_none() {
                if let Err(e) = self.authenticate(at).await {
                    errors.push(e);
                    i += 1;
                    continue;
                }
            }
            let token = self.token.clone();
            let mut headers = Vec::new();
            if let Some(t) = &token {
                headers.push(("authorization", t.as_str()));
            }
            let url = &self.endpoints[at];
            match self
                .client
                .post_json(url, path, &headers, body.to_string().into_bytes())
                .await
            {
                // Another member holds the same data: too large there too.
                Err(SendError::TooLarge { at, max }) => {
                    return Err(format!(
                        "etcd {path}: the answer from {at} is too large: more than the {} KiB \
                         holdfast reads (that many keys or holders is not a fleet's)",
                        max >> 10
                    ))
                }
                Err(SendError::Failed(e)) => errors.push(e),
                Ok(r) => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    if r.status == 200 && v.get("error").is_none() {
                        self.current = at;
                        return Ok(v);
                    }
                    let msg = v
                        .get("message")
                        .or_else(|| v.get("error"))
                        .and_then(Value::as_str)
                        .map(shown)
                        .unwrap_or_else(|| format!("HTTP {}", r.status));
                    let code = num(v.get("code").unwrap_or(&Value::Null));
                    // Unauthenticated: the token expired; once more with a new one.
                    if code == 16 && self.auth.is_some() && !reauthed {
                        self.token = None;
                        reauthed = true;
                        continue;
                    }
                    // Unavailable (no leader, stopping): another member may do.
                    if code == 14 || r.status == 503 {
                        errors.push(format!("{}: {msg}", url.authority));
                    } else {
                        return Err(format!("etcd {path}: {msg}"));
                    }
                }
            }
            i += 1;
        }
        Err(format!("no etcd endpoint answered: {}", errors.join("; ")))
    }

    async fn authenticate(&mut self, at: usize) -> Result<(), String> {
        let Some((user, file)) = &self.auth else {
            return Ok(());
        };
        let password =
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let body = json!({"name": user, "password": password.trim_end_matches('\n')});
        let url = &self.endpoints[at];
        let r = self
            .client
            .post_json(
                url,
                "/v3/auth/authenticate",
                &[],
                body.to_string().into_bytes(),
            )
            .await?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        match v.get("token").and_then(Value::as_str) {
            Some(t) if r.status == 200 => {
                self.token = Some(t.to_owned());
                Ok(())
            }
            _ => Err(format!(
                "{}: etcd refused user {user}: {}",
                url.authority,
                shown(
                    v.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("no token")
                )
            )),
        }
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<Kv>, String> {
        let v = self
            .call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))
            .await?;
        Ok(kvs(&v)?.into_iter().next())
    }

    /// The keys under `prefix`, the prefix cut off.
    pub async fn names_under(&mut self, prefix: &str) -> Result<Vec<String>, String> {
        let v = self
            .call(
                "/v3/kv/range",
                &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)), "keys_only": true}),
            )
            .await?;
        Ok(kvs(&v)?
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(prefix).map(str::to_owned))
            .collect())
    }

    /// Puts `value` only if the key is at `mod_revision` (0: does not
    /// exist; etcd's `Version(key) = 0`).
    pub async fn put_if(
        &mut self,
        key: &str,
        mod_revision: i64,
        value: &[u8],
    ) -> Result<bool, String> {
        let k = b64(key.as_bytes());
        let compare = if mod_revision == 0 {
            json!({"key": k, "result": "EQUAL", "target": "VERSION", "version": "0"})
        } else {
            json!({"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": mod_revision.to_string()})
        };
        let v = self
            .call(
                "/v3/kv/txn",
                &json!({"compare": [compare], "success": [{"request_put": {"key": k, "value": b64(value)}}]}),
            )
            .await?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    pub async fn put(&mut self, key: &str, value: &[u8], lease: i64) -> Result<(), String> {
        self.call(
            "/v3/kv/put",
            &json!({"key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string()}),
        )
        .await
        .map(drop)
    }

    pub async fn lease_grant(&mut self, ttl_s: u64) -> Result<i64, String> {
        let v = self
            .call("/v3/lease/grant", &json!({"TTL": ttl_s.to_string()}))
            .await?;
        match num(v.get("ID").unwrap_or(&Value::Null)) {
            0 => Err("etcd granted no lease".into()),
            id => Ok(id),
        }
    }

    /// The lease's remaining TTL in seconds; 0: it is gone.
    pub async fn lease_keepalive(&mut self, id: i64) -> Result<i64, String> {
        let v = self
            .call("/v3/lease/keepalive", &json!({"ID": id.to_string()}))
            .await?;
        Ok(num(v.pointer("/result/TTL").unwrap_or(&Value::Null)))
    }

    pub async fn lease_revoke(&mut self, id: i64) -> Result<(), String> {
        self.call("/v3/lease/revoke", &json!({"ID": id.to_string()}))
            .await
            .map(drop)
    }

    /// The group's semaphore and the revision it was read at; created as
    /// airlock creates it (one slot) when absent.
    pub async fn semaphore(&mut self, group: &str) -> Result<(Semaphore, i64), String> {
        let key = semaphore::semaphore_key(group);
        for _ in 0..CAS_ROUNDS {
            if let Some(kv) = self.get(&key).await? {
                return Ok((Semaphore::decode(&kv.value)?, kv.mod_revision));
            }
            // Only if nobody created it meanwhile.
            self.put_if(&key, 0, &Semaphore::initial().encode()).await?;
        }
        Err(format!("{key} keeps disappearing"))
    }

    /// Takes a slot for `id`: compare-and-swap on the revision read.
    pub async fn take(&mut self, group: &str, id: &str) -> Result<Taken, String> {
        let key = semaphore::semaphore_key(group);
        for _ in 0..CAS_ROUNDS {
            let (sem, rev) = self.semaphore(group).await?;
            match semaphore::take(&sem, id) {
                Take::Held => return Ok(Taken::Granted(sem)),
                Take::Full => return Ok(Taken::Full(sem)),
                Take::Write(new) => {
                    if self.put_if(&key, rev, &new.encode()).await? {
                        return Ok(Taken::Granted(new));
                    }
                }
            }
        }
        Err("the semaphore changed under every attempt; trying again later".into())
    }

    /// Removes `ids` from the holders; `Ok(false)`: none of them held one.
    pub async fn release(&mut self, group: &str, ids: &[&str]) -> Result<bool, String> {
        let key = semaphore::semaphore_key(group);
        for _ in 0..CAS_ROUNDS {
            let (sem, rev) = self.semaphore(group).await?;
            let Some(new) = semaphore::without(&sem, ids) else {
                return Ok(false);
            };
            if self.put_if(&key, rev, &new.encode()).await? {
                return Ok(true);
            }
        }
        Err("the semaphore changed under every attempt; trying again later".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end("a/"), b"a0");
        assert_eq!(prefix_end("a\u{7f}"), [b'a', 0x80]);
    }

    #[test]
    fn reads_the_gateway_shapes() {
        let v: Value = serde_json::from_str(
            r#"{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"7","version":"1","value":"YmFy"}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(
            kvs(&v).unwrap(),
            [Kv {
                key: "foo".into(),
                value: b"bar".to_vec(),
                mod_revision: 7
            }]
        );
        assert!(kvs(&serde_json::json!({"header": {}})).unwrap().is_empty());
    }

    /// An answer over the client's bound is said to be too large, not
    /// taken for an endpoint that did not answer.
    #[tokio::test]
    async fn an_answer_too_large_says_so() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.read(&mut [0u8; 4096]).await;
            let body = vec![b' '; 2 << 20];
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        });
        let mut e = Etcd::new(&[url], None, None, &TlsFiles::default()).unwrap();
        let err = e.get("k").await.unwrap_err();
        assert!(
            err.contains("is too large: more than the 1024 KiB holdfast reads"),
            "{err}"
        );
        assert!(!err.contains("no etcd endpoint answered"), "{err}");
    }
}
