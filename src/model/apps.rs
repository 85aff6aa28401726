//! What the per-app update tasks report: on D-Bus, in `holdfast status` and in
//! systemd's STATUS=. Waiting on a lock is a state of its own, never a
//! failure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    Applied,
    Downloading,
    /// Held back; `blocked_by` says by what (`lock:app/service`, `engine`).
    Waiting,
    Applying,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub state: AppState,
    /// The target release being applied (or applied).
    pub release: String,
    /// Overall download percent while downloading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Per image download percent while downloading.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed attempts at this release so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// When the next attempt is due (failed, or waiting for the engine),
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    /// The healthy release the app went back to after `release` was not
    /// healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
    /// Per service: its container's health (`healthy`, `unhealthy`,
    /// `starting`, or `running`/`exited`/... without a healthcheck).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub health: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AppStatus {
    pub fn new(state: AppState, release: &str) -> Self {
        Self {
            state,
            release: release.to_owned(),
            progress: None,
            images: BTreeMap::new(),
            blocked_by: Vec::new(),
            error: None,
            attempts: 0,
            retry_at: None,
            rolled_back_to: None,
            services: BTreeMap::new(),
        }
    }

    /// One line for humans: `app1 waiting (lock:app1/main) r42`.
    pub fn line(&self, app: &str) -> String {
        let state = serde_json::to_value(self.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut s = format!("{app} {state}");
        if let Some(p) = self.progress {
            s.push_str(&format!(" {p}%"));
        }
        if !self.blocked_by.is_empty() {
            s.push_str(&format!(" ({})", self.blocked_by.join(", ")));
        }
        if !self.release.is_empty() {
            s.push_str(&format!(" release {}", self.release));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(": {e}"));
        }
        if let Some(r) = &self.rolled_back_to {
            s.push_str(&format!("; rolled back to {r}"));
        }
        if let Some(at) = &self.retry_at {
            s.push_str(&format!(" (attempt {}; next at {at})", self.attempts + 1));
        }
        s
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// `available`, `unavailable: <reason>`, or `unknown` before the first try.
    pub engine: String,
    /// Whether a target is in force (none: holdfast touches no container).
    pub target: bool,
    /// Why none is in force though one was saved: it cannot be read back
    /// (too big, corrupt, a read error). Changes of one app are refused
    /// until a whole target is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_unreadable: Option<String>,
    pub apps: BTreeMap<String, AppStatus>,
    /// Volumes of apps no longer in the target, kept until
    /// `holdfast volumes prune APP` (app -> engine volume names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub orphaned_volumes: BTreeMap<String, Vec<String>>,
}

impl UpdateStatus {
    /// Short form for STATUS=: `apps: app1 applied, app2 waiting`.
    pub fn summary(&self) -> Option<String> {
        if self.apps.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .apps
            .iter()
            .map(|(name, a)| {
                let mut p = a.line(name);
                if let Some(i) = p.find(" release ") {
                    p.truncate(i);
                }
                p
            })
            .collect();
        Some(format!("apps: {}", parts.join(", ")))
    }
}
