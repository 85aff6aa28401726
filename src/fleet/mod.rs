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
    /// The first [`LISTED`] holders (a semaphore may name thousands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
    /// How many hold a slot, listed or not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holder_count: usize,
    /// etcd: the first [`LISTED`] holders without a live liveness key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_count: usize,
    /// What the pending reboot waits for, e.g.
    /// `fleet-slot:default (2/2 held)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    /// The last failure to reach the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How many holders (or stale holders) the status names; the rest are
/// counted.
pub const LISTED: usize = 10;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The first [`LISTED`] of `all`, shown escaped (ids come from etcd),
/// and how many there are.
fn listed(all: &[String]) -> (Vec<String>, usize) {
    let first = all
        .iter()
        .take(LISTED)
        .map(|h| crate::text::shown(h))
        .collect();
    (first, all.len())
}

/// `a, b, c`, or `a, b, c and 59997 more`.
fn names(first: &[String], count: usize) -> String {
    let mut s = first.join(", ");
    if count > first.len() {
        s.push_str(&format!(" and {} more", count - first.len()));
    }
    s
}

impl SlotStatus {
    pub fn set_holders(&mut self, all: &[String]) {
        (self.holders, self.holder_count) = listed(all);
    }

    pub fn set_stale(&mut self, all: &[String]) {
        (self.stale, self.stale_count) = listed(all);
    }
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
                let n = l.holder_count.max(l.holders.len());
                s.push_str(&format!("; {n}/{t} held"));
                if !l.holders.is_empty() {
                    s.push_str(&format!(" by {}", names(&l.holders, n)));
                }
            }
            if !l.stale.is_empty() {
                let n = l.stale_count.max(l.stale.len());
                s.push_str(&format!("; stale: {}", names(&l.stale, n)));
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

    #[test]
    fn thousands_of_holders_are_counted_not_listed() {
        let all: Vec<String> = (0..60_000).map(|i| format!("dev-{i:05}")).collect();
        let mut l = SlotStatus {
            backend: "etcd".into(),
            total_slots: Some(60_000),
            ..Default::default()
        };
        l.set_holders(&all);
        l.set_stale(&all[..3]);
        let f = FleetStatus {
            id: "d".into(),
            lock: Some(l),
            ..Default::default()
        };
        let lines = f.lines();
        assert!(lines[1].len() < 300, "{}", lines[1]);
        assert!(
            lines[1].contains(
                "60000/60000 held by dev-00000, dev-00001, dev-00002, dev-00003, dev-00004, \
                 dev-00005, dev-00006, dev-00007, dev-00008, dev-00009 and 59990 more; \
                 stale: dev-00000, dev-00001, dev-00002"
            ),
            "{}",
            lines[1]
        );
        // JSON keeps its shape: the first ones in `holders`, and a count.
        let json = serde_json::to_value(&f).unwrap();
        assert!(json.to_string().len() < 1000, "{json}");
        assert_eq!(json["lock"]["holders"].as_array().unwrap().len(), LISTED);
        assert_eq!(json["lock"]["holder_count"], 60_000);
        assert_eq!(json["lock"]["stale_count"], 3);
        // An id from etcd is shown escaped.
        let mut l = SlotStatus::default();
        l.set_holders(&["a\x1b[31m".into()]);
        assert_eq!(l.holders, ["a\\u{1b}[31m"]);
    }
}
