//! The fleet: who this device is (`identity`), and, with the `fleet`
//! feature, fleet-wide slots that a reboot takes first (`slots`: airlock's
//! semaphore in etcd, or a FleetLock server).
//!
//! Only the power path and (with `updates = true`) the app tasks ask for
//! a slot, through [`slots::Slots`]; one task
//! ([`slots::FleetTask`]) owns the backend, keeps our etcd liveness key
//! alive, reports stale holders and gives the slot back once the device is
//! back and its apps are applied and healthy.

pub mod identity;
pub mod url;

#[cfg(feature = "fleet")]
pub mod etcd;
#[cfg(feature = "fleet")]
pub mod fleetlock;
#[cfg(feature = "fleet")]
pub mod hawkbit;
#[cfg(feature = "fleet")]
pub mod http;
#[cfg(feature = "fleet")]
pub mod semaphore;
#[cfg(feature = "fleet")]
pub mod slots;
#[cfg(feature = "fleet")]
mod tls;

/// Without the `fleet` feature no slot handle can exist: the power path's
/// slot code compiles to nothing.
#[cfg(not(feature = "fleet"))]
pub mod slots {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Grant {
        Granted,
        NotGranted(String),
    }

    #[derive(Clone)]
    pub struct Slots {
        never: std::convert::Infallible,
        pub reboots: bool,
        pub updates: bool,
        pub group: String,
    }

    impl Slots {
        pub async fn take(&self, _purpose: &str) -> Result<Grant, String> {
            match self.never {}
        }
        pub async fn release(&self, _purpose: &str) {
            match self.never {}
        }
    }
}

use serde::{Deserialize, Serialize};

/// A fleet id: 1 to 128 printable ASCII characters, no spaces (it goes
/// into etcd keys and JSON).
pub fn valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// `^[a-zA-Z0-9.-]+$`, as airlock and Zincati accept groups.
pub fn valid_group(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// What `holdfast status` shows about the fleet (D-Bus `Fleet`, JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// Empty when no id could be had (then no slot can be taken).
    pub id: String,
    pub id_source: String,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<SlotStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hawkbit: Option<HawkbitStatus>,
}

/// Releases from hawkBit, as `holdfast status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HawkbitStatus {
    pub url: String,
    pub controller_id: String,
    /// The last poll that was answered, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<String>,
    /// The deployment in hand: its action id and what it is doing
    /// (`downloading 40%`, `waiting for lock: app1/main`, `applied`,
    /// `failed: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// The apps hawkBit deployed (a local target does not change them
    /// unless `local_target = "allow"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// The last failure to reach the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    /// `etcd` or `fleetlock`.
    pub backend: String,
    /// We hold a slot (as far as we know: a FleetLock server does not say).
    pub held: bool,
    /// etcd: the semaphore as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_slots: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
    /// etcd: holders without a live liveness key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
    /// What the pending reboot waits for, e.g.
    /// `fleet-slot:default (2/2 held)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    /// The last failure to reach the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FleetStatus {
    /// Lines for `holdfast status`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "fleet: id {} ({}), group {}",
            if self.id.is_empty() {
                "(none)"
            } else {
                &self.id
            },
            self.id_source,
            self.group
        )];
        if let Some(l) = &self.lock {
            let mut s = format!(
                "fleet slot ({}): {}",
                l.backend,
                if l.held { "held" } else { "not held" }
            );
            if let Some(t) = l.total_slots {
                s.push_str(&format!("; {}/{t} held", l.holders.len()));
                if !l.holders.is_empty() {
                    s.push_str(&format!(" by {}", l.holders.join(", ")));
                }
            }
            if !l.stale.is_empty() {
                s.push_str(&format!("; stale: {}", l.stale.join(", ")));
            }
            if !l.blocked_by.is_empty() {
                s.push_str(&format!("; reboot waiting ({})", l.blocked_by.join(", ")));
            }
            if let Some(e) = &l.error {
                s.push_str(&format!("; error: {e}"));
            }
            out.push(s);
        }
        if let Some(h) = &self.hawkbit {
            let mut s = format!("hawkBit {} as {}", h.url, h.controller_id);
            match &h.last_poll {
                Some(t) => s.push_str(&format!("; polled {t}")),
                None => s.push_str("; not reached yet"),
            }
            if let Some(a) = &h.action {
                s.push_str(&format!("; action {a}: {}", h.state));
            }
            if !h.apps.is_empty() {
                s.push_str(&format!("; apps {}", h.apps.join(", ")));
            }
            if let Some(e) = &h.error {
                s.push_str(&format!("; error: {e}"));
            }
            out.push(s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_groups() {
        assert!(valid_group("default"));
        assert!(valid_group("eu-west.1"));
        for bad in ["", "a b", "a_b", "a/b", "ä"] {
            assert!(!valid_group(bad), "{bad}");
        }
        assert!(valid_id("53a37a920c56442babbd25b8a802429e"));
        assert!(!valid_id("a b") && !valid_id("") && !valid_id("a/b"));
    }
}
