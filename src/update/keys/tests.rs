use super::*;
use crate::target::parse;

fn app(name: &str) -> AppName {
    AppName::new(name).unwrap()
}

fn target(release: &str) -> Target {
    let svc = r#"{"main": {"image": "img", "labels": {"io.balena.features.supervisor-api": "1"}}}"#;
    parse(
        &format!(
            r#"{{"version": 1, "apps": {{"a1": {{"release": "{release}", "services": {svc} }}, "a2": {{"release": "{release}", "services": {svc} }} }} }}"#
        ),
        "test",
    )
    .unwrap()
}

fn keys() -> ApiKeys {
    let mut k = ApiKeys::new(None);
    k.set_app(app("a1"), "k1k1k1k1k1k1k1k1k1".into());
    k.set_app(app("a2"), "k2k2k2k2k2k2k2k2k2".into());
    k
}

#[test]
fn a_held_app_keeps_what_it_had() {
    let device = Injected::default();
    let before = effective(&target("r1"), &device, &keys(), &BTreeSet::new(), None);
    // a2's key cannot be read now (it is not in the keys), and a new
    // release comes: a2 keeps r1 with its old key, a1 moves on.
    let mut k = keys();
    k.remove_app(&app("a2"));
    let held = BTreeSet::from([app("a2")]);
    let after = effective(&target("r2"), &device, &k, &held, Some(&before));
    assert_eq!(after.apps[&app("a1")].release, "r2");
    assert_eq!(after.apps[&app("a2")], before.apps[&app("a2")]);
    let i = after.apps[&app("a2")].injected.as_deref().unwrap();
    assert_eq!(i.api_key.as_deref(), Some("k2k2k2k2k2k2k2k2k2"));
}

#[test]
fn a_held_app_never_seen_is_left_out() {
    let mut k = keys();
    k.remove_app(&app("a2"));
    let held = BTreeSet::from([app("a2")]);
    let t = effective(&target("r1"), &Injected::default(), &k, &held, None);
    assert!(t.apps.contains_key(&app("a1")));
    assert!(
        !t.apps.contains_key(&app("a2")),
        "no target without its key"
    );
}

fn settings(os_release: &Path) -> Settings {
    Settings {
        os_release: os_release.to_owned(),
        ..Settings::default()
    }
}

#[tokio::test]
async fn os_release_not_read_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("os-release");
    // Absent: nothing to tell, known.
    let absent = Host::read(&settings(&path), None).await;
    assert!(absent.known());
    assert_eq!(
        absent.injected(&DeviceInfo::default()).unwrap().os_version,
        ""
    );
    // Read.
    std::fs::write(&path, "PRETTY_NAME=\"Holdfast OS 1\"\n").unwrap();
    let read = Host::read(&settings(&path), None).await;
    assert_eq!(
        read.injected(&DeviceInfo::default()).unwrap().os_version,
        "Holdfast OS 1"
    );
    // Cannot be read (not a regular file): the last value stays ...
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let kept = Host::read(&settings(&path), Some(&read)).await;
    assert_eq!(kept, read);
    // ... and with none, nothing is known: no injected values.
    let unknown = Host::read(&settings(&path), None).await;
    assert!(!unknown.known());
    assert!(unknown.injected(&DeviceInfo::default()).is_none());
}

#[tokio::test]
async fn a_key_that_cannot_be_read_holds_its_app() {
    let dir = tempfile::tempdir().unwrap();
    let keys = watch::channel(Arc::new(ApiKeys::new(None))).0;
    // a2's key file is a directory: an error, never a new key.
    std::fs::create_dir_all(api::app_key_path(dir.path(), &app("a2"))).unwrap();
    let mut held = BTreeSet::new();
    ensure(&keys, dir.path(), &target("r1"), &mut held).await;
    assert!(keys.borrow().app(&app("a1")).is_some());
    assert!(keys.borrow().app(&app("a2")).is_none());
    assert_eq!(held, BTreeSet::from([app("a2")]));
    // It reads again (here: removed, so made anew).
    std::fs::remove_dir(api::app_key_path(dir.path(), &app("a2"))).unwrap();
    ensure(&keys, dir.path(), &target("r1"), &mut held).await;
    assert!(keys.borrow().app(&app("a2")).is_some());
    assert!(held.is_empty());
}
