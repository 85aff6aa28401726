use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::command::HolderInfo;
use crate::locks::state::{LockEntry, LockEvent, LockTable};

fn target() -> Arc<crate::target::Target> {
    let t = json!({"version": 1, "apps": {
        "app1": {"release": "r2", "services": {
            "main": {"image": "reg/one:2"},
            "web": {"image": "reg/web:1"}}},
        "app2": {"release": "b1", "services": {"db": {"image": "reg/db:1"}}}}});
    Arc::new(crate::target::parse(&t.to_string(), "test").unwrap())
}

fn container(app: &str, service: &str, status: &str, release: &str) -> Container {
    Container {
        id: format!("id-{app}-{service}"),
        name: format!("{app}_{service}"),
        app: AppName::new(app).unwrap(),
        service: crate::names::ServiceName::new(service).unwrap(),
        release: release.into(),
        hash: String::new(),
        image: "reg/one:2".into(),
        state: match status {
            "running" => RunState::Running,
            "created" => RunState::Created,
            _ => RunState::Other,
        },
        health: status.into(),
        status: status.into(),
        created: 1_605_299_384,
        image_id: "sha256:abc".into(),
    }
}

/// app1 downloading web's image (40%), main running; app2 applied, its db
/// stopped on request.
fn world() -> (UpdateStatus, EngineView) {
    let mut u = UpdateStatus::default();
    let mut a1 = AppStatus::new(AppState::Downloading, "r2");
    a1.images.insert("reg/web:1".into(), 40);
    u.apps.insert("app1".into(), a1);
    u.apps
        .insert("app2".into(), AppStatus::new(AppState::Applied, "b1"));
    let view = EngineView {
        containers: vec![
            container("app1", "main", "running", "r2"),
            container("app2", "db", "exited", "b1"),
        ],
        present: ["reg/one:2".to_owned(), "reg/db:1".to_owned()].into(),
        target: Some(target()),
    };
    (u, view)
}

#[test]
fn state_status_in_balenas_shape() {
    let (u, view) = world();
    let v = status_body(&u, &view, &Scope::Device);
    assert_eq!(v["status"], "success");
    assert_eq!(v["appState"], "applying");
    assert_eq!(v["overallDownloadProgress"], 40);
    assert_eq!(v["release"], "r2");
    assert_eq!(
        v["containers"][0],
        json!({"status": "Running", "serviceName": "main", "serviceId": "main",
            "appName": "app1", "appId": "app1", "imageId": "reg/one:2",
            "dockerImageId": "sha256:abc", "containerId": "id-app1-main",
            "createdAt": "2020-11-13T20:29:44Z", "release": "r2", "releaseId": "r2"})
    );
    assert_eq!(v["containers"][1]["status"], "exited");
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!(
        images[1],
        json!({"name": "reg/web:1", "appName": "app1", "appId": "app1", "serviceName": "web",
            "imageId": "reg/web:1", "dockerImageId": null, "status": "Downloading",
            "downloadProgress": 40})
    );
    assert_eq!(images[0]["status"], "Downloaded");
    assert_eq!(images[0]["downloadProgress"], json!(null));

    // app2's key: app2 only, which is applied.
    let v = status_body(&u, &view, &Scope::App(AppName::new("app2").unwrap()));
    assert_eq!(v["appState"], "applied");
    assert_eq!(v["overallDownloadProgress"], json!(null));
    assert_eq!(v["release"], "b1");
    assert_eq!(v["containers"].as_array().unwrap().len(), 1);
    assert_eq!(v["images"].as_array().unwrap().len(), 1);

    // Nothing at all: balena's "no applications" answer.
    let v = status_body(
        &UpdateStatus::default(),
        &EngineView::default(),
        &Scope::Device,
    );
    assert_eq!(
        v,
        json!({"status": "success", "appState": "applied", "overallDownloadProgress": null,
            "containers": [], "images": [], "release": null})
    );
}

#[test]
fn applications_state_in_balenas_shape() {
    let (u, view) = world();
    let v = applications_body(&u, &view, &Scope::Device);
    assert_eq!(
        v["app1"],
        json!({"appId": "app1", "appUuid": "app1", "commit": "r2", "release": "r2",
            "updateStatus": "downloading", "state": "downloading", "blocked_by": [],
            "error": null, "services": {
                "main": {"status": "Running", "image": "reg/one:2", "downloadProgress": null,
                    "releaseId": "r2", "release": "r2"},
                "web": {"status": "Downloading", "image": "reg/web:1", "downloadProgress": 40,
                    "releaseId": "r2", "release": "r2"}}})
    );
    assert_eq!(v["app2"]["updateStatus"], "done");
    assert_eq!(v["app2"]["services"]["db"]["status"], "exited");
    let v = applications_body(&u, &view, &Scope::App(AppName::new("app1").unwrap()));
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["app1"]);
}

#[test]
fn update_status_words() {
    assert_eq!(update_status(Some(AppState::Waiting), true), "downloaded");
    assert_eq!(update_status(Some(AppState::Waiting), false), "downloading");
    assert_eq!(
        update_status(Some(AppState::Applying), true),
        "applying changes"
    );
    assert_eq!(update_status(Some(AppState::Failed), true), "aborted");
    assert_eq!(update_status(None, false), "done");
}

#[test]
fn locks_with_holders_and_what_blocks_each_app() {
    let id = |s: &str| ServiceId::parse(s).unwrap();
    let mut table = LockTable::default();
    // The engine's containers listed: none mounts another lock directory.
    table.apply(LockEvent::Mounts(Default::default()));
    for (i, s) in ["app1/main", "app2/db"].iter().enumerate() {
        table.apply(LockEvent::ServiceObserved {
            id: id(s),
            entries: vec![LockEntry::test_file(i as u64, None)],
        });
    }
    let snap = Snapshot {
        table: Arc::new(table),
        ..Default::default()
    };
    let mut locks = LockInfo::from_table(&snap.table);
    locks[0].holders = vec![HolderInfo {
        pid: 42,
        comm: "app".into(),
        how: "flock".into(),
    }];
    let mut u = UpdateStatus::default();
    u.apps
        .insert("app3".into(), AppStatus::new(AppState::Applied, "x"));
    let v = locks_body(&locks, &snap, &u, &Scope::Device);
    assert_eq!(v["status"], "success");
    assert_eq!(v["lock_override"], false);
    assert_eq!(v["locks"].as_array().unwrap().len(), 2);
    let l = &v["locks"][0];
    assert_eq!(l["service"], "app1/main");
    assert_eq!(l["app"], "app1");
    assert_eq!(l["owner"], "app");
    assert_eq!(l["since"], "1970-01-01T00:00:00Z");
    assert_eq!(
        l["holders"],
        json!([{"pid": 42, "comm": "app", "how": "flock"}])
    );
    assert!(l["stale"].is_boolean());
    assert_eq!(
        v["apps"],
        json!({"app1": {"blocked_by": ["lock:app1/main"]},
            "app2": {"blocked_by": ["lock:app2/db"]},
            "app3": {"blocked_by": []}})
    );
    let v = locks_body(
        &locks,
        &snap,
        &u,
        &Scope::App(AppName::new("app2").unwrap()),
    );
    assert_eq!(v["locks"].as_array().unwrap().len(), 1);
    assert_eq!(v["locks"][0]["service"], "app2/db");
    assert_eq!(v["apps"], json!({"app2": {"blocked_by": ["lock:app2/db"]}}));
}
