//! The store: what is saved reads back, and what cannot be read back is
//! not "no target".

use super::*;

const T1: &str =
    r#"{"version": 1, "apps": {"a": {"release": "1", "services": {"s": {"image": "i:1"}}}}}"#;

#[test]
fn bad_input_keeps_the_last_good_target() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.json");
    let (store, rx) = TargetStore::load(&file, dir.path());
    assert!(rx.borrow().is_none());
    store.accept(T1, "test").unwrap();
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
    let e = store
        .accept("{\"version\": 1, \"apps\": 3}", "test")
        .unwrap_err();
    assert!(e.to_string().contains("apps"), "{e}");
    std::fs::write(&file, "{ nope").unwrap();
    assert!(store.reload_file().is_err());
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
    // A restart with a broken file falls back to the last good copy.
    let (_store, rx) = TargetStore::load(&file, dir.path());
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
}

#[test]
fn one_app_is_merged_into_the_target_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.json");
    let (store, rx) = TargetStore::load(&file, dir.path());
    let app = |n: &str| AppName::new(n).unwrap();
    let web: AppTarget =
        serde_json::from_str(r#"{"release": "c1", "services": {"w": {"image": "w:1"}}}"#).unwrap();
    // No target yet: one with this app alone.
    store.accept_app(app("web"), web.clone(), "test").unwrap();
    let t = rx.borrow().clone().unwrap();
    assert_eq!((t.version, t.apps.len()), (1, 1));
    store.accept(T1, "test").unwrap();
    store.accept_app(app("web"), web.clone(), "test").unwrap();
    let names: Vec<String> = rx
        .borrow()
        .as_ref()
        .unwrap()
        .apps
        .keys()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(names, ["a", "web"]);
    // Saved like SetTarget's: the file holds the merged target.
    let saved = crate::target::parse(&std::fs::read_to_string(&file).unwrap(), "f").unwrap();
    assert_eq!(&saved, rx.borrow().as_deref().unwrap());
    // A rejected app changes nothing, in force or on disk.
    let before = std::fs::read(&file).unwrap();
    let mut bad = web.clone();
    bad.services.values_mut().next().unwrap().depends_on.insert(
        crate::names::ServiceName::new("ghost").unwrap(),
        Default::default(),
    );
    let e = store.accept_app(app("web"), bad, "test").unwrap_err();
    assert!(
        e.to_string().contains("ghost is not a service of app web"),
        "{e}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(rx.borrow().as_ref().unwrap().apps[&app("web")], web);
}

#[test]
fn a_fifo_as_the_target_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.json");
    let (store, rx) = TargetStore::load(&file, dir.path());
    store.accept(T1, "test").unwrap();
    std::fs::remove_file(&file).unwrap();
    nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = store.reload_file().err().expect("refused");
    assert!(e.to_string().contains("FIFO"), "{e}");
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
}

/// The error of what must be refused (a big target is not printed).
fn refused<T>(r: Result<T, StoreError>) -> StoreError {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

/// A valid target whose command has `n` items: 4 bytes an item compact,
/// 19 indented as the store saves it.
fn with_command(n: usize) -> String {
    let command = vec!["a"; n];
    serde_json::json!({"version": 1, "apps": {"big": {"release": "1", "services": {
        "s": {"image": "i:1", "command": command}}}}})
    .to_string()
}

#[test]
fn a_target_is_accepted_only_when_what_is_saved_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.json");
    let (store, rx) = TargetStore::load(&file, dir.path());
    store.accept(T1, "test").unwrap();
    let before = std::fs::read(&file).unwrap();
    // Under the limit as sent, over it as saved (indented).
    let text = with_command(250_000);
    assert!((text.len() as u64) < MAX_TARGET_BYTES, "{}", text.len());
    let e = refused(store.accept(&text, "D-Bus SetTarget")).to_string();
    assert!(
        e.contains("would be saved as") && e.contains("over the 4194304 bytes"),
        "{e}"
    );
    assert!(e.starts_with("D-Bus SetTarget: (top): "), "{e}");
    // Nothing written, nothing put in force.
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
    // Merged in as one app: refused the same way.
    let big = crate::target::parse(&with_command(250_000), "t").unwrap();
    let app = AppName::new("big").unwrap();
    let a = big.apps[&app].clone();
    let e = refused(store.accept_app(app, a, "D-Bus SetAppTarget"));
    assert!(e.to_string().contains("would be saved as"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    // Too big as sent: refused before it is parsed.
    let huge = " ".repeat(MAX_TARGET_BYTES as usize + 1);
    let e = refused(store.accept(&huge, "test")).to_string();
    assert!(e.contains("over the 4194304 bytes"), "{e}");
    // What was accepted reads back after a restart.
    let (_store, rx) = TargetStore::load(&file, dir.path());
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
}

/// The target file and its last good copy as a store finds them at start.
fn start_with(target: Option<&[u8]>, last_good: Option<&[u8]>) -> (tempfile::TempDir, TargetStore) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.json");
    if let Some(t) = target {
        std::fs::write(&file, t).unwrap();
    }
    if let Some(t) = last_good {
        std::fs::write(dir.path().join(LAST_GOOD), t).unwrap();
    }
    let (store, rx) = TargetStore::load(&file, dir.path());
    assert!(rx.borrow().is_none());
    (dir, store)
}

#[test]
fn a_saved_target_that_cannot_be_read_is_not_no_target() {
    let over = vec![b' '; MAX_TARGET_BYTES as usize + 1];
    type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a str);
    let cases: [Case; 4] = [
        (Some(&over), Some(&over), "larger than 4194304 bytes"),
        (
            Some(b"{ corrupt"),
            Some(b"{ corrupt"),
            "the last good copy: ",
        ),
        (None, Some(b"{ corrupt"), "the last good copy: "),
        (Some(b"\xff\xfe"), None, "not UTF-8"),
    ];
    for (target, last_good, want) in cases {
        let (_dir, store) = start_with(target, last_good);
        let why = store.unreadable().expect("unreadable");
        assert!(why.contains(want), "{why}");
        // The status says why.
        let (status, status_rx) = watch::channel(UpdateStatus::default());
        store.report_to(status);
        assert_eq!(status_rx.borrow().target_unreadable.as_deref(), Some(&*why));
        // A merge would drop every other app: refused.
        let app = AppName::new("small").unwrap();
        let small: AppTarget =
            serde_json::from_str(r#"{"release": "1", "services": {"s": {"image": "i:1"}}}"#)
                .unwrap();
        let e = store
            .accept_app(app.clone(), small.clone(), "test")
            .unwrap_err();
        assert!(matches!(e, StoreError::Unreadable(_)), "{e}");
        assert!(e.to_string().contains("every other app"), "{e}");
        let e = store
            .accept_fleet("hawkbit", BTreeMap::from([(app, small)]), "test")
            .unwrap_err();
        assert!(matches!(e, StoreError::Unreadable(_)), "{e}");
        // A whole target replaces it, and the status clears.
        store.accept(T1, "test").unwrap();
        assert_eq!(store.unreadable(), None);
        assert_eq!(status_rx.borrow().target_unreadable, None);
    }
    // Neither there: no target yet, merges fine.
    let (_dir, store) = start_with(None, None);
    assert_eq!(store.unreadable(), None);
    // A bad file beside a good last copy: the copy is in force.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.json");
    std::fs::write(&file, "{ corrupt").unwrap();
    std::fs::write(dir.path().join(LAST_GOOD), T1).unwrap();
    let (store, rx) = TargetStore::load(&file, dir.path());
    assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
    assert_eq!(store.unreadable(), None);
}
