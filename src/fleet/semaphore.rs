//! airlock's semaphore value and what to do with it: pure.
//!
//! Key `com.coreos.airlock/groups/<group>/v1/semaphore`, value exactly
//! `{"total_slots":N,"holders":[...]}` with the holders byte-sorted and
//! unique, so holdfast, airlock and the Zincati nodes behind it can share
//! one group.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub fn semaphore_key(group: &str) -> String {
    format!("com.coreos.airlock/groups/{group}/v1/semaphore")
}

/// Our liveness keys (one per running holdfast, on an etcd lease).
pub fn alive_prefix(group: &str) -> String {
    format!("com.holdfast/groups/{group}/v1/alive/")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Semaphore {
    pub total_slots: u64,
    /// Go writes an empty slice as `null`: read as empty.
    #[serde(deserialize_with = "null_as_empty")]
    pub holders: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Semaphore {
    /// What we create when the key does not exist (as airlock does).
    pub fn initial() -> Semaphore {
        Semaphore {
            total_slots: 1,
            holders: Vec::new(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Semaphore, String> {
        serde_json::from_slice(bytes)
            .map_err(|e| format!("the semaphore value is not airlock's: {e}"))
    }

    /// Sorted, unique holders, no other fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = self.clone();
        s.holders.sort();
        s.holders.dedup();
        serde_json::to_vec(&s).expect("serializable")
    }

    /// `2/2 held`.
    pub fn describe(&self) -> String {
        format!("{}/{} held", self.holders.len(), self.total_slots)
    }
}

/// What taking a slot means for the semaphore as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// We are a holder already (a slot taken before a reboot, or twice).
    Held,
    /// Write this value, if the key is still at the revision read.
    Write(Semaphore),
    /// No free slot.
    Full,
}

pub fn take(s: &Semaphore, id: &str) -> Take {
    if s.holders.iter().any(|h| h == id) {
        return Take::Held;
    }
    // Holders beyond total_slots (lowered by an operator) leave no room.
    if (s.holders.len() as u64) >= s.total_slots {
        return Take::Full;
    }
    let mut new = s.clone();
    new.holders.push(id.to_owned());
    new.holders.sort();
    new.holders.dedup();
    Take::Write(new)
}

/// The value without `ids`; `None` when none of them holds a slot.
pub fn without(s: &Semaphore, ids: &[&str]) -> Option<Semaphore> {
    let ids: HashSet<&str> = ids.iter().copied().collect();
    if !s.holders.iter().any(|h| ids.contains(h.as_str())) {
        return None;
    }
    let mut new = s.clone();
    new.holders.retain(|h| !ids.contains(h.as_str()));
    new.holders.sort();
    new.holders.dedup();
    Some(new)
}

/// Holders without a live liveness key. Linear: a semaphore read may
/// name tens of thousands of holders.
pub fn stale<'a>(s: &'a Semaphore, alive: &[String]) -> Vec<&'a str> {
    let alive: HashSet<&str> = alive.iter().map(String::as_str).collect();
    s.holders
        .iter()
        .map(String::as_str)
        .filter(|h| !alive.contains(h))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sem(total: u64, holders: &[&str]) -> Semaphore {
        Semaphore {
            total_slots: total,
            holders: holders.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn encodes_exactly_as_airlock() {
        assert_eq!(
            Semaphore::initial().encode(),
            br#"{"total_slots":1,"holders":[]}"#
        );
        assert_eq!(
            sem(3, &["b", "a", "b", "B"]).encode(),
            br#"{"total_slots":3,"holders":["B","a","b"]}"#
        );
        assert_eq!(
            Semaphore::decode(br#"{"total_slots":2,"holders":null}"#).unwrap(),
            sem(2, &[])
        );
        assert_eq!(
            Semaphore::decode(br#" {"holders":["x"],"total_slots":1} "#).unwrap(),
            sem(1, &["x"])
        );
        for bad in [
            &br#"{"total_slots":1,"holders":[],"extra":1}"#[..],
            br#"{"holders":[]}"#,
            br#"{"total_slots":-1,"holders":[]}"#,
            b"not json",
        ] {
            assert!(
                Semaphore::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn take_obeys_total_slots_as_stored() {
        assert_eq!(take(&sem(1, &[]), "me"), Take::Write(sem(1, &["me"])));
        assert_eq!(take(&sem(1, &["other"]), "me"), Take::Full);
        assert_eq!(
            take(&sem(2, &["z"]), "me"),
            Take::Write(sem(2, &["me", "z"]))
        );
        assert_eq!(take(&sem(1, &["me"]), "me"), Take::Held);
        assert_eq!(take(&sem(1, &["a", "b"]), "me"), Take::Full, "over-full");
        assert_eq!(take(&sem(0, &[]), "me"), Take::Full, "zero slots: nobody");
    }

    #[test]
    fn release_and_stale() {
        assert_eq!(
            without(&sem(2, &["a", "me"]), &["me"]),
            Some(sem(2, &["a"]))
        );
        assert_eq!(without(&sem(2, &["a"]), &["me"]), None);
        let s = sem(3, &["a", "b", "c"]);
        assert_eq!(stale(&s, &["b".into()]), ["a", "c"]);
        assert_eq!(without(&s, &["a", "c"]), Some(sem(3, &["b"])));
        assert_eq!(
            semaphore_key("default"),
            "com.coreos.airlock/groups/default/v1/semaphore"
        );
    }

    /// 60,000 holders (what a 1 MiB answer holds) and as many liveness
    /// keys: linear, not 3.6e9 comparisons on the runtime thread.
    #[test]
    fn tens_of_thousands_of_holders_are_linear() {
        let ids: Vec<String> = (0..60_000).map(|i| format!("dev-{i:05}")).collect();
        let s = Semaphore {
            total_slots: 60_000,
            holders: ids.clone(),
        };
        let t = std::time::Instant::now();
        assert_eq!(stale(&s, &ids[1..]), ["dev-00000"]);
        let refs: Vec<&str> = ids[..30_000].iter().map(String::as_str).collect();
        assert_eq!(without(&s, &refs).unwrap().holders.len(), 30_000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }
}
