use std::collections::BTreeSet;

use super::*;
use crate::engine::LockMount;
use crate::model::AppStatus;
use crate::names::ServiceName;

fn seen() -> Seen {
    Seen {
        findings: BTreeMap::new(),
        sent: None,
        apps: BTreeMap::new(),
        failing: None,
        contended: BTreeMap::new(),
        wakes: Wakes::default(),
    }
}

/// app1/main's container, mounting `dir` at both lock paths.
fn container(dir: &Path) -> MountedContainer {
    let m = Some(LockMount {
        kind: "bind".into(),
        source: dir.display().to_string(),
    });
    MountedContainer {
        name: "app1_main_1".into(),
        app: AppName::new("app1").unwrap(),
        service: ServiceName::new("main").unwrap(),
        at: vec![("/tmp/balena", m.clone()), ("/tmp/resin", m)],
    }
}

/// The pass under holdfast's lock in the old directory ended without
/// making the container again (it failed): the table hears that app1/main
/// binds again before holdfast's files there go, never after.
#[tokio::test]
async fn a_lock_given_back_binds_again_before_its_files_go() {
    let t = tempfile::tempdir().unwrap();
    let old_dir = t.path().join("L1/app1/main");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(t.path().join("L2")).unwrap();
    let state = t.path().join("state");
    let app = AppName::new("app1").unwrap();
    let mut old = OldLocks::new(&state);
    old.take(&app, &BTreeSet::from([old_dir.clone()])).unwrap();

    let mut status = UpdateStatus::default();
    status
        .apps
        .insert("app1".into(), AppStatus::new(AppState::Failed, "r2"));
    let (_apps_tx, apps) = watch::channel(status);
    let (_settings_tx, settings) = watch::channel(Arc::new(Settings::default()));
    // Full: whatever settle sends waits until the test reads.
    let (events, mut table) = mpsc::channel(1);
    events.send(LockEvent::Resync(Vec::new())).await.unwrap();
    let w = MountWatch {
        lock_root: t.path().join("L2"),
        state_dir: state,
        settings,
        apps,
        events,
    };
    let list = vec![container(&old_dir)];
    let settling = tokio::spawn(async move {
        let mut seen = seen();
        let (old, _) = w.settle(old, list, &mut seen).await;
        (old, w)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        old_dir.join("updates.lock").exists(),
        "removed before the table was told"
    );
    assert!(matches!(table.recv().await, Some(LockEvent::Resync(_))));
    let told = tokio::time::timeout(Duration::from_secs(10), table.recv())
        .await
        .expect("the table is told");
    let Some(LockEvent::Mounts(m)) = told else {
        panic!("{told:?}")
    };
    let m = &m[&ServiceId::parse("app1/main").unwrap()];
    assert!(!m.held, "binds again: {m:?}");
    let (old, _w) = settling.await.unwrap();
    assert!(!old.holds(&app));
    for f in crate::locks::state::LOCK_FILE_NAMES {
        assert!(!old_dir.join(f).exists(), "{f} given back");
    }
}
