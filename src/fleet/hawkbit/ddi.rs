//! hawkBit's Direct Device Integration API, the parts a device speaks, as
//! pure functions: answers parsed into what the task acts on, feedback
//! bodies built. docs/hawkbit.md says what gooseBit and hawkBit send.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the hawkBit server's answer to {what} is not what DDI specifies: {reason}")]
pub struct DdiError {
    pub what: &'static str,
    pub reason: String,
}

/// The reason quotes the server's text (an artifact's name; serde's
/// "unknown variant" quotes a value raw): shown escaped and cut.
fn bad(what: &'static str, reason: impl ToString) -> DdiError {
    DdiError {
        what,
        reason: crate::text::shown(&reason.to_string()),
    }
}

/// The controller base resource: when to poll next and what to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub sleep: Duration,
    pub config_data: Option<String>,
    pub deployment: Option<String>,
    pub cancel: Option<String>,
}

/// Poll interval when the server names none or a silly one.
pub const DEFAULT_SLEEP: Duration = Duration::from_secs(300);
/// A server's interval is kept within these.
pub const MIN_SLEEP: Duration = Duration::from_secs(1);
pub const MAX_SLEEP: Duration = Duration::from_secs(24 * 3600);

pub fn parse_poll(body: &[u8]) -> Result<Poll, DdiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad("the poll", e))?;
    if !v.is_object() {
        return Err(bad("the poll", "not a JSON object"));
    }
    let sleep = v
        .pointer("/config/polling/sleep")
        .and_then(Value::as_str)
        .and_then(parse_sleep)
        .map_or(DEFAULT_SLEEP, |d| d.clamp(MIN_SLEEP, MAX_SLEEP));
    let link = |name: &str| {
        v.pointer(&format!("/_links/{name}/href"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(Poll {
        sleep,
        config_data: link("configData"),
        deployment: link("deploymentBase"),
        cancel: link("cancelAction"),
    })
}

/// `HH:MM:SS`, as hawkBit and gooseBit give the polling interval.
pub fn parse_sleep(s: &str) -> Option<Duration> {
    let mut parts = s.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let n = |p: &str| {
        p.parse::<u64>()
            .ok()
            .filter(|_| !p.is_empty() && p.len() <= 2)
    };
    let (h, m, sec) = (n(h)?, n(m)?, n(sec)?);
    (m < 60 && sec < 60).then(|| Duration::from_secs(h * 3600 + m * 60 + sec))
}

/// How hawkBit asks a step to be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    Skip,
    Attempt,
    Forced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub download: Handling,
    pub update: Handling,
    /// hawkBit's `maintenanceWindow`: `available` or `unavailable`.
    pub window_open: bool,
    pub artifact: Artifact,
    /// The chunk's version: what the device reports running once applied.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub filename: String,
    pub size: u64,
    pub hash: Hash,
    pub href: String,
}

/// The strongest hash the server gave for the whole download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hash {
    Sha256(String),
    /// gooseBit gives sha1 alone.
    Sha1(String),
}

impl Hash {
    pub fn hex(&self) -> &str {
        match self {
            Hash::Sha256(h) | Hash::Sha1(h) => h,
        }
    }
}

#[derive(Deserialize)]
struct RawBase {
    id: String,
    deployment: RawDeployment,
    #[serde(default, rename = "actionHistory")]
    _history: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeployment {
    download: Handling,
    update: Handling,
    #[serde(default)]
    maintenance_window: Option<String>,
    #[serde(default)]
    chunks: Vec<RawChunk>,
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    version: String,
    #[serde(default)]
    artifacts: Vec<RawArtifact>,
}

#[derive(Deserialize)]
struct RawArtifact {
    filename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    hashes: RawHashes,
    #[serde(default, rename = "_links")]
    links: Value,
}

#[derive(Default, Deserialize)]
struct RawHashes {
    sha1: Option<String>,
    sha256: Option<String>,
}

/// A deploymentBase answer. `Ok(None)`: nothing to deploy (gooseBit
/// answers `null` when the deployment went away between poll and fetch).
/// A deployment must carry exactly one `.swu` artifact, with a sha256 or
/// sha1 hash and a download link.
pub fn parse_deployment(body: &[u8]) -> Result<Option<Deployment>, DdiError> {
    const W: &str = "deploymentBase";
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(W, e))?;
    if v.is_null() {
        return Ok(None);
    }
    let raw: RawBase = serde_json::from_value(v).map_err(|e| bad(W, e))?;
    let d = raw.deployment;
    let mut found = Vec::new();
    for c in &d.chunks {
        for a in &c.artifacts {
            if a.filename.ends_with(".swu") || (d.chunks.len() == 1 && c.artifacts.len() == 1) {
                found.push((c, a));
            }
        }
    }
    let [(chunk, a)] = found[..] else {
        return Err(bad(
            W,
            format!(
                "holdfast takes one .swu artifact per deployment; this one has {} of {} artifacts",
                found.len(),
                d.chunks.iter().map(|c| c.artifacts.len()).sum::<usize>()
            ),
        ));
    };
    let hex = |h: &Option<String>, len: usize| {
        h.as_ref()
            .filter(|h| h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| h.to_ascii_lowercase())
    };
    let hash = match (hex(&a.hashes.sha256, 64), hex(&a.hashes.sha1, 40)) {
        (Some(h), _) => Hash::Sha256(h),
        (None, Some(h)) => Hash::Sha1(h),
        (None, None) => {
            return Err(bad(
                W,
                format!(
                "artifact {} has no sha256 or sha1 hash; an unchecked download is never applied",
                a.filename
            ),
            ))
        }
    };
    let href = ["download", "download-http"]
        .iter()
        .find_map(|k| {
            a.links
                .pointer(&format!("/{k}/href"))
                .and_then(Value::as_str)
        })
        .ok_or_else(|| bad(W, format!("artifact {} has no download link", a.filename)))?;
    Ok(Some(Deployment {
        id: raw.id,
        download: d.download,
        update: d.update,
        window_open: d.maintenance_window.as_deref() != Some("unavailable"),
        artifact: Artifact {
            filename: a.filename.clone(),
            size: a.size.unwrap_or(0),
            hash,
            href: href.to_owned(),
        },
        version: chunk.version.clone(),
    }))
}

/// A cancelAction answer: the action the server wants stopped.
pub fn parse_cancel(body: &[u8]) -> Result<(String, String), DdiError> {
    const W: &str = "cancelAction";
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(W, e))?;
    let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
    let stop = v
        .pointer("/cancelAction/stopId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match (id, stop) {
        (Some(id), Some(stop)) => Ok((id, stop)),
        _ => Err(bad(W, "no id and cancelAction.stopId")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Proceeding,
    Closed,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    None,
    Success,
    Failure,
}

/// A feedback body. `progress` is (cnt, of).
pub fn feedback(
    execution: Execution,
    finished: Finished,
    progress: Option<(u32, u32)>,
    details: &[String],
) -> Vec<u8> {
    let execution = match execution {
        Execution::Proceeding => "proceeding",
        Execution::Closed => "closed",
        Execution::Rejected => "rejected",
    };
    let finished = match finished {
        Finished::None => "none",
        Finished::Success => "success",
        Finished::Failure => "failure",
    };
    let mut result = json!({ "finished": finished });
    if let Some((cnt, of)) = progress {
        result["progress"] = json!({ "cnt": cnt, "of": of });
    }
    json!({ "status": { "execution": execution, "result": result, "details": details } })
        .to_string()
        .into_bytes()
}

/// The configData body: what the server may know of this device.
pub fn config_data(data: &[(&str, &str)]) -> Vec<u8> {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    json!({ "mode": "merge", "data": data })
        .to_string()
        .into_bytes()
}

/// The poll after this one: the server's interval, spread by up to a
/// tenth either way so a fleet that booted together does not poll
/// together. `spread` is a number in 0..1000.
pub fn next_poll(sleep: Duration, spread: u32) -> Duration {
    let tenth = sleep / 10;
    sleep - tenth + tenth * (spread % 1000) * 2 / 1000
}

/// After `failures` failed polls in a row: 5 s doubling, up to 10 minutes
/// or the server's own interval when that is longer.
pub fn backoff(failures: u32, sleep: Duration) -> Duration {
    let b = Duration::from_secs(5).saturating_mul(1 << failures.min(10));
    b.min(Duration::from_secs(600).max(sleep))
}

#[cfg(test)]
mod tests;
