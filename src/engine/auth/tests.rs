use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const PASS: &str = "s3cr:et=pa:ss";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn auth_is_decoded_and_a_password_may_hold_colons() {
    let text = format!(
        r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{}"}}}}}}"#,
        b64(&format!("user:{PASS}"))
    );
    let a = parse(&text, "f.json").unwrap();
    let c = a.get("127.0.0.1:5000").unwrap();
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_ref().unwrap().expose(), PASS);
    // Unpadded base64 too, and NULs some tools leave trimmed.
    let unpadded = b64("u:p\0").trim_end_matches('=').to_owned();
    let text = format!(r#"{{"auths": {{"r.example": {{"auth": "{unpadded}"}}}}}}"#);
    let a = parse(&text, "f.json").unwrap();
    assert_eq!(
        a.get("r.example")
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "p"
    );
}

#[test]
fn username_and_password_and_tokens() {
    let text = r#"{"auths": {
            "a.example": {"username": "u", "password": "p", "email": "x@y"},
            "b.example": {"identitytoken": "tok"},
            "c.example": {"registrytoken": "bearer"},
            "d.example": {"auth": "dTpmcm9tLWF1dGg=", "username": "other", "password": "x"},
            "e.example": {}
        }}"#;
    let a = parse(text, "f.json").unwrap();
    let c = a.get("a.example").unwrap();
    assert_eq!(
        (
            c.username.as_deref(),
            c.password.as_ref().map(Secret::expose)
        ),
        (Some("u"), Some("p"))
    );
    let b = a.get("b.example").unwrap();
    assert_eq!(b.identity_token.as_ref().unwrap().expose(), "tok");
    let d = a.get("b.example").unwrap().to_docker("b.example");
    assert_eq!(d.identitytoken.as_deref(), Some("tok"));
    assert_eq!(
        a.get("c.example")
            .unwrap()
            .to_docker("c.example")
            .registrytoken
            .as_deref(),
        Some("bearer")
    );
    // `auth` wins, as for docker.
    let d = a.get("d.example").unwrap();
    assert_eq!(d.username.as_deref(), Some("u"));
    assert_eq!(d.password.as_ref().unwrap().expose(), "from-auth");
    // An empty entry gives nothing, and says so.
    assert!(a.get("e.example").is_none());
    assert!(
        a.notes.iter().any(|n| n.contains("e.example")),
        "{:?}",
        a.notes
    );
}

#[test]
fn keys_are_normalized() {
    for (key, want) in [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://Registry.Example:5000/v2/", "registry.example:5000"),
        ("registry:5000", "registry:5000"),
        (" localhost ", "localhost"),
        ("https://", ""),
    ] {
        assert_eq!(normalize_key(key), want, "{key}");
    }
}

#[test]
fn images_are_matched_to_their_registry() {
    for (image, want) in [
        ("busybox", "docker.io"),
        ("busybox:1.36", "docker.io"),
        ("library/busybox", "docker.io"),
        ("docker.io/x/y:1", "docker.io"),
        ("index.docker.io/x/y", "docker.io"),
        ("registry:5000/x", "registry:5000"),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
        ("localhost/x", "localhost"),
        ("localhost:5000/x", "localhost:5000"),
        ("ghcr.io/o/r@sha256:abc", "ghcr.io"),
        ("user/repo", "docker.io"),
        ("Registry/x", "registry"),
    ] {
        assert_eq!(registry_of(image), want, "{image}");
    }
    let text = r#"{"auths": {"https://index.docker.io/v1/": {"username": "hub", "password": "p"},
                                  "registry:5000": {"username": "r", "password": "p"}}}"#;
    let a = parse(text, "f.json").unwrap();
    for image in ["busybox", "library/busybox", "docker.io/x/y"] {
        assert_eq!(
            a.get(&registry_of(image)).unwrap().username.as_deref(),
            Some("hub")
        );
    }
    assert_eq!(
        a.get(&registry_of("registry:5000/x"))
            .unwrap()
            .username
            .as_deref(),
        Some("r")
    );
    assert!(a.get(&registry_of("localhost/x")).is_none());
}

#[test]
fn two_keys_for_one_registry_keep_the_bare_host() {
    let text = r#"{"auths": {"https://index.docker.io/v1/": {"username": "url", "password": "p"},
                                  "docker.io": {"username": "bare", "password": "p"}}}"#;
    let a = parse(text, "f.json").unwrap();
    assert_eq!(
        a.get("docker.io").unwrap().username.as_deref(),
        Some("bare")
    );
    assert_eq!(a.notes.len(), 1, "{:?}", a.notes);
}

#[test]
fn bad_files_say_where_and_never_echo_a_secret() {
    let cases = [
        (
            format!(r#"{{"auths": {{"r": {{"auth": "{PASS}"}}}}}}"#),
            "auths.\"r\".auth: not base64",
        ),
        (
            format!(
                r#"{{"auths": {{"r": {{"auth": "{}"}}}}}}"#,
                b64(PASS.split(':').next().unwrap())
            ),
            "no ':'",
        ),
        (
            format!(r#"{{"auths": {{"r": "{PASS}"}}}}"#),
            "auths.\"r\": not an object",
        ),
        (
            format!(r#"{{"auths": {{"r": {{"password": "{PASS}"}}}}}}"#),
            "a password without a username",
        ),
        (
            format!(r#"{{"auths": {{"r": {{"username": "u", "password": ["{PASS}"]}}}}}}"#),
            "password: not a string",
        ),
        (
            format!("{{\"auths\": {{\"r\": {{\"password\": \"{PASS}\"\n}}"),
            "line 2 column 1",
        ),
        (
            format!(r#"{{"auths": {{"r": {{"password": "{PASS}"}}, "r": {{}}}}}}"#),
            "duplicate key",
        ),
        (format!(r#"["{PASS}"]"#), "not a JSON object"),
    ];
    for (text, want) in cases {
        let e = parse(&text, "/etc/f.json").unwrap_err().to_string();
        assert!(e.starts_with("/etc/f.json: "), "{e}");
        assert!(e.contains(want), "{e} lacks {want}");
        assert!(!e.contains("s3cr"), "secret in {e}");
        assert!(!e.contains(&b64(PASS)), "secret in {e}");
    }
}

#[test]
fn debug_output_redacts_every_secret() {
    let text = format!(
        r#"{{"auths": {{"a": {{"auth": "{}"}}, "b": {{"identitytoken": "{PASS}"}},
                            "c": {{"registrytoken": "{PASS}"}}, "d": {{"username": "u", "password": "{PASS}"}}}}}}"#,
        b64(&format!("u:{PASS}"))
    );
    let a = parse(&text, "f.json").unwrap();
    assert_eq!(a.registries.len(), 4);
    let shown = format!("{a:?} {:?} {}", a.get("a"), Secret::new(PASS));
    assert!(!shown.contains("s3cr"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let file = AuthFile::new(Path::new("/nonexistent/registry-auth.json"));
    let pa = PullAuth {
        registry: "a".into(),
        credential: a.get("a").cloned(),
        hint: "h".into(),
    };
    let shown = format!("{file:?} {pa:?}");
    assert!(!shown.contains("s3cr"), "{shown}");
}

#[test]
fn the_file_is_read_again_when_it_changes_and_refused_when_not_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry-auth.json");
    let file = AuthFile::new(&path);
    let write = |user: &str, mode: u32| {
        let text =
            format!(r#"{{"auths": {{"r:1": {{"username": "{user}", "password": "{PASS}"}}}}}}"#);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let user = |p: &PullAuth| p.credential.as_ref().and_then(|c| c.username.clone());

    let p = file.for_image("r:1/app:1");
    assert!(p.credential.is_none());
    assert!(
        p.hint.ends_with("registry-auth.json does not exist"),
        "{}",
        p.hint
    );

    write("one", 0o600);
    let p = file.for_image("r:1/app:1");
    assert_eq!(user(&p).as_deref(), Some("one"));
    assert!(
        p.hint.contains("credentials for r:1 from") && p.hint.ends_with("were sent"),
        "{}",
        p.hint
    );
    let p = file.for_image("other:2/app:1");
    assert!(p.credential.is_none());
    assert!(
        p.hint.contains("no credentials for other:2 in"),
        "{}",
        p.hint
    );

    write("two-longer", 0o600);
    assert_eq!(
        user(&file.for_image("r:1/x")).as_deref(),
        Some("two-longer")
    );

    // Readable by others: no credentials at all, the fix named.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = file.for_image("r:1/x");
    assert!(p.credential.is_none());
    assert!(
        p.hint
            .contains("is accessible by group or others (mode 0644)"),
        "{}",
        p.hint
    );
    assert!(
        p.hint.contains(&format!("chmod 600 {}", path.display())),
        "{}",
        p.hint
    );
    assert!(!p.hint.contains("s3cr"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(file.for_image("r:1/x").credential.is_none());

    // Private again: used again.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        user(&file.for_image("r:1/x")).as_deref(),
        Some("two-longer")
    );

    // Broken: none (not the last good ones).
    std::fs::write(&path, "{\"auths\": {").unwrap();
    let p = file.for_image("r:1/x");
    assert!(p.credential.is_none());
    assert!(p.hint.contains("line 1 column 11"), "{}", p.hint);

    std::fs::remove_file(&path).unwrap();
    assert!(file.for_image("r:1/x").credential.is_none());
}
