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
