//! Own locks against real files in a temporary lock root.
use super::*;
use crate::locks::fs::OWN_TAG;
use crate::locks::state::LOCK_FILE_NAMES;
use crate::names::ServiceName;
use nix::fcntl::FlockArg;

fn take(
    own: &mut OwnLocks,
    app: &AppName,
    services: &[ServiceName],
) -> Result<Vec<ServiceId>, OwnLockError> {
    own.take(app, services, false, Purpose::Operator, |_| {})
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("locks");
    let state = t.path().join("state");
    for s in ["main", "worker"] {
        std::fs::create_dir_all(root.join("app1").join(s)).unwrap();
    }
    (t, root, state)
}

fn app(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

#[test]
fn takes_and_releases_every_service() {
    let (_t, root, state) = setup();
    let mut own = OwnLocks::new(&root, &state);
    let ids = take(&mut own, &app("app1"), &[]).unwrap();
    assert_eq!(ids.len(), 2);
    for s in ["main", "worker"] {
        for f in LOCK_FILE_NAMES {
            let text = std::fs::read_to_string(root.join("app1").join(s).join(f)).unwrap();
            assert!(text.starts_with(OWN_TAG));
        }
    }
    assert!(matches!(
        take(&mut own, &app("app1"), &[]),
        Err(OwnLockError::AlreadyHeld { .. })
    ));
    assert_eq!(own.release(&app("app1")).unwrap(), 4);
    assert!(!root.join("app1/main/updates.lock").exists());
}

#[test]
fn all_or_nothing_against_an_app_lock() {
    let (_t, root, state) = setup();
    std::fs::write(root.join("app1/worker/updates.lock"), b"").unwrap();
    let mut own = OwnLocks::new(&root, &state);
    let err = take(&mut own, &app("app1"), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "app1/worker is locked (updates.lock exists); no lock of app app1 was taken"
    );
    assert!(!root.join("app1/main/updates.lock").exists());
    assert!(!root.join("app1/main/resin-updates.lock").exists());
    assert!(
        root.join("app1/worker/updates.lock").exists(),
        "app lock kept"
    );
}

#[test]
fn leftovers_are_cleaned_but_app_locks_survive() {
    let (_t, root, state) = setup();
    let mut own = OwnLocks::new(&root, &state);
    take(&mut own, &app("app1"), &[]).unwrap();
    drop(own); // "crash": nothing released
               // An app replaced one of our files with its own meanwhile.
    std::fs::remove_file(root.join("app1/main/updates.lock")).unwrap();
    std::fs::write(root.join("app1/main/updates.lock"), b"app").unwrap();
    let mut own = OwnLocks::new(&root, &state);
    let report = own.cleanup_leftovers().unwrap();
    assert_eq!(report.removed.len(), 3);
    assert_eq!(report.kept, vec!["app1/main/updates.lock".to_string()]);
    assert_eq!(
        std::fs::read(root.join("app1/main/updates.lock")).unwrap(),
        b"app"
    );
    // The record is empty now: a second start removes nothing.
    let report = OwnLocks::new(&root, &state).cleanup_leftovers().unwrap();
    assert_eq!(report, Cleanup::default());
}

#[test]
fn a_leftover_an_app_has_flocked_is_left_to_it() {
    let (_t, root, state) = setup();
    let mut own = OwnLocks::new(&root, &state);
    take(&mut own, &app("app1"), &[]).unwrap();
    drop(own); // "crash": nothing released, our flocks gone with us
    let path = root.join("app1/main/updates.lock");
    // flock(1) in the app, as the README shows: the file is its lock now.
    let _app = Flock::lock(
        std::fs::File::open(&path).unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let mut own = OwnLocks::new(&root, &state);
    let report = own.cleanup_leftovers().unwrap();
    assert_eq!(report.removed.len(), 3);
    assert_eq!(
        report.kept,
        vec!["app1/main/updates.lock (flocked by another process)".to_string()]
    );
    assert!(path.exists());
    assert!(
        own.tokens().is_empty(),
        "not ours any more: {:?}",
        own.tokens()
    );
}

#[test]
fn symlinked_service_dir_is_refused() {
    let (t, root, state) = setup();
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("app1/evil")).unwrap();
    let mut own = OwnLocks::new(&root, &state);
    let err = take(&mut own, &app("app1"), &[ServiceName::new("evil").unwrap()]).unwrap_err();
    assert!(
        matches!(err, OwnLockError::Fs(FsError::Symlink { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn planted_symlink_lock_is_not_followed() {
    let (t, root, state) = setup();
    let target = t.path().join("target");
    std::os::unix::fs::symlink(&target, root.join("app1/main/updates.lock")).unwrap();
    let mut own = OwnLocks::new(&root, &state);
    assert!(matches!(
        take(&mut own, &app("app1"), &[]),
        Err(OwnLockError::Contended { .. })
    ));
    assert!(
        !target.exists(),
        "O_NOFOLLOW|O_EXCL never creates through a link"
    );
}

#[test]
fn own_locks_are_flocked_while_held() {
    let (_t, root, state) = setup();
    let mut own = OwnLocks::new(&root, &state);
    take(&mut own, &app("app1"), &[]).unwrap();
    let f = std::fs::File::open(root.join("app1/main/updates.lock")).unwrap();
    assert!(
        Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
        "flock(1) must fail against a lock holdfast holds"
    );
    own.release(&app("app1")).unwrap();
}

#[test]
fn tokens_are_announced_before_the_files_exist() {
    let (_t, root, state) = setup();
    let mut own = OwnLocks::new(&root, &state);
    let mut seen = BTreeSet::new();
    let path = root.join("app1/main/updates.lock");
    own.take(&app("app1"), &[], false, Purpose::Update, |t| {
        assert!(!path.exists());
        seen = t;
    })
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(own.tokens(), seen);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(seen.iter().next().unwrap()));
}

#[test]
fn a_replaced_file_is_not_ours_to_remove() {
    let (_t, root, state) = setup();
    let mut own = OwnLocks::new(&root, &state);
    own.take(&app("app1"), &[], false, Purpose::Update, |_| {})
        .unwrap();
    // A directory cannot be unlinked as a file: stands in for EROFS.
    let victim = root.join("app1/main/updates.lock");
    std::fs::remove_file(&victim).unwrap();
    std::fs::create_dir(&victim).unwrap();
    // Not ours any more (someone replaced it): released without touching it.
    assert_eq!(own.release(&app("app1")).unwrap(), 3);
    assert!(victim.is_dir());
    assert!(own.tokens().is_empty());

    // A removal that really fails (a read-only lock root) is tested with
    // real mounts in tests/faults.rs.
}

#[test]
fn power_takes_many_apps_with_one_record_and_all_or_nothing() {
    let (_t, root, state) = setup();
    for s in ["app2/a", "app3/b"] {
        std::fs::create_dir_all(root.join(s)).unwrap();
    }
    let apps = [app("app1"), app("app2"), app("app3"), app("empty")];
    let mut own = OwnLocks::new(&root, &state);
    let taken = own.take_many(&apps, false, Purpose::Power, |_| {}).unwrap();
    assert_eq!(taken, [app("app1"), app("app2"), app("app3")]);
    assert_eq!(own.release_all(Some(Purpose::Power)).unwrap(), 8);
    std::fs::write(root.join("app3/b/updates.lock"), b"").unwrap();
    let e = own
        .take_many(&apps, false, Purpose::Power, |_| {})
        .unwrap_err();
    assert!(matches!(e, OwnLockError::Contended { .. }), "{e}");
    assert!(
        !root.join("app1/main/updates.lock").exists(),
        "all or nothing"
    );
    assert_eq!(own.held_apps().count(), 0);
}

#[test]
fn a_reboot_does_not_cut_an_update_in_half() {
    let (_t, root, state) = setup();
    std::fs::create_dir_all(root.join("app2/a")).unwrap();
    let mut own = OwnLocks::new(&root, &state);
    own.take(&app("app1"), &[], false, Purpose::Update, |_| {})
        .unwrap();
    let e = own
        .take_many(&[app("app1"), app("app2")], false, Purpose::Power, |_| {})
        .unwrap_err();
    assert!(
        matches!(e, OwnLockError::Updating(ref a) if *a == app("app1")),
        "{e}"
    );
    assert!(!root.join("app2/a/updates.lock").exists());
    // Forced: the update's locks stay its own, the others are taken.
    let taken = own
        .take_many(&[app("app1"), app("app2")], true, Purpose::Power, |_| {})
        .unwrap();
    assert_eq!(taken, [app("app2")]);
}
