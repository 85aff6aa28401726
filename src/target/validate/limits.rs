//! Bounds on what a target may ask, so every pass over it (validation,
//! planning, the config hash of each service at every pass and retry)
//! stays short: a target within the 4 MiB document bound could otherwise
//! name 100,000 services, or make each of 1,000 services hash again a
//! network definition of megabytes. balena sets no such limits; a device
//! runs tens of containers, and these are far above that.

use std::collections::BTreeMap;
use std::io;

use super::{escape, Invalid};
use crate::names::ServiceName;
use crate::target::{AppTarget, Target};

/// Apps, services, networks, volumes and IPAM pools, each in the whole
/// target (every app together).
pub(crate) const MAX_EACH: usize = 1000;
/// A service shares the namespace of one that shares another's, at most
/// this deep (a service's config hash covers its donor's).
pub(crate) const MAX_SHARE_DEPTH: usize = 8;
/// What the config hashes of a whole app cover, in bytes of JSON: each
/// service's own definition, the networks it joins and, again, the hash
/// of each service whose namespace it shares; plus a fixed cost per hash.
pub(crate) const MAX_HASHED: usize = 16 << 20;
const PER_HASH: usize = 1 << 10;

/// The counts, before anything else looks at the target.
pub(super) fn counts(t: &Target) -> Result<(), Invalid> {
    let sum = |f: fn(&AppTarget) -> usize| t.apps.values().map(f).sum::<usize>();
    let pools = |a: &AppTarget| {
        let nets = a.networks.values();
        nets.map(|n| n.ipam.as_ref().map_or(0, |i| i.config.len()))
            .sum()
    };
    for (what, n) in [
        ("apps", t.apps.len()),
        ("services", sum(|a| a.services.len())),
        ("networks", sum(|a| a.networks.len())),
        ("volumes", sum(|a| a.volumes.len())),
        ("IPAM pools", sum(pools)),
    ] {
        if n > MAX_EACH {
            return Err((
                "apps".into(),
                format!("{n} {what} in all; a target has at most {MAX_EACH} (a device runs tens of containers)"),
            ));
        }
    }
    Ok(())
}

/// How deep shared namespaces go and what the config hashes cover, once
/// the app's dependencies are known to have no cycle.
pub(super) fn hashing(app: &str, a: &AppTarget) -> Result<(), Invalid> {
    let nets: BTreeMap<&str, usize> = a
        .networks
        .iter()
        .map(|(n, spec)| (n.as_str(), json_len(spec)))
        .collect();
    // Per service, in dependency order (donors first): (depth, bytes).
    let mut done: BTreeMap<&ServiceName, (usize, usize)> = BTreeMap::new();
    let mut total = 0usize;
    for name in a.start_order() {
        let Some((name, spec)) = a.services.get_key_value(&name) else {
            continue;
        };
        let mut depth = 0;
        let mut bytes = PER_HASH + json_len(spec);
        for (n, _) in spec.joined_networks() {
            bytes = bytes.saturating_add(nets.get(n).copied().unwrap_or(0));
        }
        for donor in spec.shares_with() {
            let d = ServiceName::new(donor).ok();
            let (dd, db) = d.and_then(|d| done.get(&d).copied()).unwrap_or((0, 0));
            depth = depth.max(dd + 1);
            bytes = bytes.saturating_add(db);
        }
        let at = || format!("apps.{app}.services.{}", escape(name.as_str()));
        if depth > MAX_SHARE_DEPTH {
            return Err((at(), format!("shares a namespace through {depth} services (service: in network_mode, ipc or pid, each naming one that shares another's); at most {MAX_SHARE_DEPTH}: name the service that owns the namespace")));
        }
        total = total.saturating_add(bytes);
        if total > MAX_HASHED {
            return Err((at(), format!("the app's config hashes would cover more than {MAX_HASHED} bytes (16 MiB): each service's definition, the networks it joins and the services whose namespaces it shares count again for every service that uses them; make the networks' definitions or the services sharing them fewer")));
        }
        done.insert(name, (depth, bytes));
    }
    Ok(())
}

/// Bytes of `v` as compact JSON, counted without holding them.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{json, Map, Value};

    use crate::target::{parse, TargetError};

    fn services(n: usize, f: impl Fn(usize) -> Value) -> Map<String, Value> {
        (0..n).map(|i| (format!("s{i:04}"), f(i))).collect()
    }

    fn check(apps: Value) -> Result<(), TargetError> {
        let text = json!({"version": 1, "apps": apps}).to_string();
        let start = Instant::now();
        let r = parse(&text, "t").map(drop);
        // Linear work: well under a second even in a debug build.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        r
    }

    fn reason(r: Result<(), TargetError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_thousand_services_in_all() {
        let s = |n| services(n, |_| json!({"image": "i"}));
        check(json!({"a": {"release": "1", "services": s(600)}, "b": {"release": "1", "services": s(400)}}))
            .unwrap();
        let e = reason(check(
            json!({"a": {"release": "1", "services": s(600)}, "b": {"release": "1", "services": s(401)}}),
        ));
        assert_eq!(e, "t: apps: 1001 services in all; a target has at most 1000 (a device runs tens of containers)");
        let apps: Map<String, Value> = (0..1001)
            .map(|i| (format!("a{i}"), json!({"release": "1"})))
            .collect();
        assert!(reason(check(Value::Object(apps))).contains("1001 apps in all"));
        let pools: Vec<Value> = (0..1001)
            .map(|i| json!({"subnet": format!("10.{}.{}.0/24", i / 256, i % 256)}))
            .collect();
        let e = reason(check(
            json!({"a": {"release": "1", "networks": {"n": {"ipam": {"config": pools}}}}}),
        ));
        assert!(e.contains("1001 IPAM pools in all"), "{e}");
    }

    #[test]
    fn shared_namespaces_go_eight_deep() {
        let chain = |n: usize| {
            services(n, move |i| match i + 1 < n {
                true => json!({"image": "i", "network_mode": format!("service:s{:04}", i + 1)}),
                false => json!({"image": "i"}),
            })
        };
        check(json!({"a": {"release": "1", "services": chain(9)}})).unwrap();
        let e = reason(check(json!({"a": {"release": "1", "services": chain(10)}})));
        assert!(
            e.starts_with("t: apps.a.services.s0000: shares a namespace through 9 services"),
            "{e}"
        );
        // A long chain was a stack overflow when the app was planned.
        assert!(check(json!({"a": {"release": "1", "services": chain(1000)}})).is_err());
    }

    #[test]
    fn what_every_config_hash_covers_again_is_bounded() {
        // One network of 100 KB joined by 200 services: 20 MB hashed at
        // every pass, for a document of 110 KB.
        let labels: Map<String, Value> = (0..10_000)
            .map(|i| (format!("l{i:05}"), json!("v")))
            .collect();
        let joined = services(200, |_| json!({"image": "i", "networks": ["big"]}));
        let e = reason(check(json!({"a": {"release": "1", "services": joined,
            "networks": {"big": {"labels": labels}}}})));
        assert!(
            e.contains("config hashes would cover more than 16777216 bytes"),
            "{e}"
        );
        // A donor of 1 MB shared by 100 services.
        let mut shared = services(
            100,
            |_| json!({"image": "i", "network_mode": "service:donor"}),
        );
        shared.insert(
            "donor".into(),
            json!({"image": "i", "environment": {"X": "x".repeat(1 << 20)}}),
        );
        assert!(check(json!({"a": {"release": "1", "services": shared}})).is_err());
        // Ordinary apps are far from it: 1000 services of 1 KB each.
        let env = json!({"A": "x".repeat(1000)});
        check(json!({"a": {"release": "1", "services": services(1000, |_| json!({"image": "i", "environment": env}))}}))
            .unwrap();
    }
}
