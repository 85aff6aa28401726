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
