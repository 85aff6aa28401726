use super::*;

fn labelled() -> ServiceSpec {
    serde_json::from_value(serde_json::json!({
        "image": "img",
        "labels": {"io.balena.features.supervisor-api": "1"}
    }))
    .unwrap()
}

fn hash_of(i: &Injected) -> String {
    short_hash(&serde_json::to_vec(&i.hashed(&labelled())).unwrap())
}

#[test]
fn the_key_is_hashed_only_through_the_secret() {
    let key = "my-own-key-0123";
    let i = Injected {
        api_key: Some(key.into()),
        hash_secret: "0123456789abcdef0123456789abcdef".into(),
        ..Injected::default()
    };
    let print = i.key_fingerprint(key);
    // Not a plain hash of the key: guessing the key needs the secret.
    let plain: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(print, plain);
    assert!(!print.contains(&short_hash(key.as_bytes())));
    let shown = serde_json::to_string(&i.hashed(&labelled())).unwrap();
    assert!(!shown.contains(key), "{shown}");
    // Another secret, another fingerprint.
    let other = Injected {
        hash_secret: "fedcba9876543210fedcba9876543210".into(),
        ..i.clone()
    };
    assert_ne!(other.key_fingerprint(key), print);
    // A rotated key still changes the hash.
    let rotated = Injected {
        api_key: Some("a-new-key-456789".into()),
        ..i.clone()
    };
    assert_ne!(hash_of(&rotated), hash_of(&i));
    assert_eq!(hash_of(&i.clone()), hash_of(&i));
}

#[test]
fn a_lock_root_other_than_the_default_is_hashed() {
    let t = crate::target::parse(
        r#"{"version": 1, "apps": {"a": {"release": "r", "services": {"main": {"image": "i"}}}}}"#,
        "t.json",
    )
    .unwrap();
    let mut app = t.apps.values().next().unwrap().clone();
    let main = ServiceName::new("main").unwrap();
    let with = |root: Option<&str>| {
        let mut a = app.clone();
        a.injected = Some(std::sync::Arc::new(Injected {
            device_uuid: "u".into(),
            lock_root: root.map(str::to_owned),
            ..Injected::default()
        }));
        a.config_hash(&main)
    };
    // The default is not hashed: the hash every earlier version gave.
    assert_eq!(with(None), "9305da7b5074ad2f");
    assert_ne!(with(Some("/L2")), with(None));
    assert_ne!(with(Some("/L2")), with(Some("/L3")));
    app.injected = None;
    assert_eq!(app.config_hash(&main).len(), 16);
}

/// The order the earlier pass-by-pass walk gave (quadratic and worse):
/// the linear one must give the same, cycles and unknown names included.
fn passes(a: &AppTarget) -> Result<Vec<ServiceName>, (Vec<ServiceName>, ServiceName)> {
    let mut order: Vec<ServiceName> = Vec::new();
    while order.len() < a.services.len() {
        let before = order.len();
        for name in a.services.keys() {
            if !order.contains(name) && a.dependencies(name).iter().all(|d| order.contains(d)) {
                order.push(name.clone());
            }
        }
        if order.len() == before {
            let stuck = a.services.keys().find(|n| !order.contains(n)).cloned();
            return Err((order, stuck.unwrap()));
        }
    }
    Ok(order)
}

fn app_of(edges: &[(usize, usize)], n: usize) -> AppTarget {
    let mut services = serde_json::Map::new();
    for i in 0..n {
        let deps: BTreeSet<String> = edges
            .iter()
            .filter(|(from, _)| *from == i)
            .map(|(_, to)| format!("s{to}"))
            .collect();
        services.insert(
            format!("s{i}"),
            serde_json::json!({"image": "i", "depends_on": deps}),
        );
    }
    serde_json::from_value(serde_json::json!({"release": "r", "services": services})).unwrap()
}

#[test]
fn the_dependency_order_is_the_pass_by_pass_order() {
    let mut seed = 0x2545_f491_u64;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % m
    };
    for round in 0..300 {
        let n = 1 + next(12);
        // Edges to lower numbers mostly (orderable), some upward (cycles
        // possible) and to a service that is not there.
        let edges: Vec<(usize, usize)> = (0..next(2 * n + 1))
            .map(|_| (next(n), if round % 3 == 0 { next(n + 1) } else { next(n) }))
            .filter(|(a, b)| round % 2 == 0 || b < a)
            .collect();
        let a = app_of(&edges, n);
        assert_eq!(a.dependency_order(), passes(&a), "{edges:?}");
    }
}

#[test]
fn a_long_dependency_chain_is_ordered_at_once() {
    // s0 depends on s1, which depends on s2...: the pass-by-pass walk took
    // one pass per service, each a search of the order (n^3).
    let n = 3000;
    let edges: Vec<(usize, usize)> = (0..n - 1).map(|i| (i, i + 1)).collect();
    let a = app_of(&edges, n);
    let order = a.dependency_order().unwrap();
    assert_eq!(order.first().unwrap().as_str(), format!("s{}", n - 1));
    assert_eq!(order.last().unwrap().as_str(), "s0");
}
