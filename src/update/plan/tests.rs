use super::*;
use crate::target::{parse, scoped_name, Target};

fn target(services: &str) -> Target {
    parse(
        &format!(r#"{{"version": 1, "apps": {{"app1": {{"release": "r2", "services": {{ {services} }} }} }} }}"#),
        "test",
    )
    .unwrap()
}

fn app(t: &Target) -> &AppTarget {
    t.apps.values().next().unwrap()
}

fn svc(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

/// The container the target's config for `service` would produce.
fn running(t: &Target, service: &str, id: &str) -> Container {
    let spec = &app(t).services[&svc(service)];
    let hash = app(t).config_hash(&svc(service));
    Container {
        id: id.into(),
        name: id.into(),
        app: AppName::new("app1").unwrap(),
        service: svc(service),
        release: "r1".into(),
        hash,
        image: spec.image.clone(),
        state: RunState::Running,
        health: "running".into(),
        status: "running".into(),
        created: 0,
        image_id: String::new(),
    }
}

/// The planner with the app's networks and volumes as the target wants
/// them (the container tests below are about containers).
fn plan(t: Option<&AppTarget>, cur: &[Container], img: &BTreeSet<String>) -> Vec<Step> {
    let app = AppName::new("app1").unwrap();
    let objects = t.map(|t| converged(&app, t)).unwrap_or_default();
    super::plan(&app, t, cur, img, &objects)
}

fn converged(app: &AppName, t: &AppTarget) -> Objects {
    let networks = t
        .services
        .values()
        .flat_map(|s| s.joined_networks())
        .map(|(n, _)| {
            let net = AppNetwork {
                name: scoped_name(app, n),
                app: app.clone(),
                hash: t.networks.get(n).cloned().unwrap_or_default().config_hash(),
            };
            (net.name.clone(), net)
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    Objects {
        networks,
        volumes: wanted_volumes(t)
            .iter()
            .map(|v| scoped_name(app, v))
            .collect(),
        remove_volumes: false,
    }
}

fn images(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn show(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Pull { image } => format!("pull {image}"),
            Step::TakeLocks { services } => format!(
                "lock {}",
                services
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Step::Stop { id, .. } => format!("stop {id}"),
            Step::Remove { id, .. } => format!("remove {id}"),
            Step::RemoveImage { image } => format!("rmi {image}"),
            Step::Create { service } => format!("create {service}"),
            Step::Start { service } => format!("start {service}"),
            Step::AwaitHandover {
                service,
                timeout_ms,
            } => format!("handover {service} {timeout_ms}"),
            Step::CreateNetwork { network } => format!("net+ {network}"),
            Step::RemoveNetwork { name } => format!("net- {name}"),
            Step::CreateVolume { volume } => format!("vol+ {volume}"),
            Step::RemoveVolume { name } => format!("vol- {name}"),
            Step::ReleaseLocks => "unlock".into(),
            Step::VerifyHealthy { services } => format!(
                "verify {}",
                services
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect()
}

const TWO: &str =
    r#""main": {"image": "main:1"}, "worker": {"image": "worker:1", "depends_on": ["main"]}"#;

#[test]
fn first_deploy_pulls_then_starts_in_dependency_order() {
    let t = target(TWO);
    let steps = plan(Some(app(&t)), &[], &images(&[]));
    assert_eq!(
        show(&steps),
        [
            "pull main:1",
            "pull worker:1",
            "create main",
            "create worker",
            "lock main,worker",
            "start main",
            "start worker",
            "unlock",
            "verify main,worker"
        ]
    );
}

#[test]
fn converged_app_has_no_steps() {
    let t = target(TWO);
    let cur = [running(&t, "main", "m1"), running(&t, "worker", "w1")];
    assert!(plan(Some(app(&t)), &cur, &images(&["main:1", "worker:1"])).is_empty());
}

#[test]
fn download_then_kill_updates_only_the_changed_service() {
    let old = target(TWO);
    let cur = [running(&old, "main", "m1"), running(&old, "worker", "w1")];
    let new = target(&TWO.replace("worker:1", "worker:2"));
    let steps = plan(Some(app(&new)), &cur, &images(&["main:1", "worker:1"]));
    assert_eq!(
        show(&steps),
        [
            "pull worker:2",
            "create worker",
            "lock main,worker",
            "stop w1",
            "start worker",
            "remove w1",
            "unlock",
            "verify worker"
        ]
    );
    assert!(steps[0].lock_free() && steps[1].lock_free() && !steps[2].lock_free());
}

/// main:1 -> main:2 under `strategy`, main:1 present.
fn image_update(strategy: &str) -> Vec<String> {
    let label = format!(r#", "labels": {{"io.balena.update.strategy": "{strategy}"}}"#);
    let old = target(&format!(r#""main": {{"image": "main:1"{label}}}"#));
    let new = target(&format!(r#""main": {{"image": "main:2"{label}}}"#));
    let cur = [running(&old, "main", "m1")];
    show(&plan(Some(app(&new)), &cur, &images(&["main:1"])))
}

#[test]
fn kill_then_download_pulls_after_the_old_container_is_gone() {
    assert_eq!(
        image_update("kill-then-download"),
        [
            "lock main",
            "stop m1",
            "remove m1",
            "pull main:2",
            "create main",
            "start main",
            "unlock",
            "verify main"
        ]
    );
}

#[test]
fn delete_then_download_also_deletes_the_old_image() {
    assert_eq!(
        image_update("delete-then-download"),
        [
            "lock main",
            "stop m1",
            "remove m1",
            "rmi main:1",
            "pull main:2",
            "create main",
            "start main",
            "unlock",
            "verify main"
        ]
    );
}

#[test]
fn hand_over_starts_the_new_one_before_stopping_the_old() {
    let label = r#", "labels": {"io.balena.update.strategy": "hand-over", "io.balena.update.handover-timeout": "5000"}"#;
    let old = target(&format!(r#""main": {{"image": "main:1"{label}}}"#));
    let new = target(&format!(r#""main": {{"image": "main:2"{label}}}"#));
    let cur = [running(&old, "main", "m1")];
    let steps = plan(Some(app(&new)), &cur, &images(&["main:1"]));
    assert_eq!(
        show(&steps),
        [
            "pull main:2",
            "create main",
            "lock main",
            "start main",
            "handover main 5000",
            "stop m1",
            "remove m1",
            "unlock",
            "verify main"
        ]
    );
    // Restarted after the new one came up: only the hand-over remains.
    let cur = [running(&old, "main", "m1"), running(&new, "main", "m2")];
    let steps = plan(Some(app(&new)), &cur, &images(&["main:1", "main:2"]));
    assert_eq!(
        show(&steps),
        [
            "lock main",
            "handover main 5000",
            "stop m1",
            "remove m1",
            "unlock"
        ]
    );
}

#[test]
fn removed_app_is_stopped_and_removed_under_its_locks() {
    let old = target(TWO);
    let cur = [running(&old, "main", "m1"), running(&old, "worker", "w1")];
    let steps = plan(None, &cur, &images(&[]));
    assert_eq!(
        show(&steps),
        [
            "lock main,worker",
            "stop m1",
            "remove m1",
            "stop w1",
            "remove w1",
            "unlock"
        ]
    );
}

#[test]
fn crash_leftovers_converge_without_duplicates() {
    let t = target(TWO);
    // holdfastd died after creating worker and before starting it.
    let mut w = running(&t, "worker", "w1");
    w.state = RunState::Created;
    let cur = [running(&t, "main", "m1"), w.clone()];
    let steps = plan(Some(app(&t)), &cur, &images(&["main:1", "worker:1"]));
    assert_eq!(show(&steps), ["start worker", "verify worker"]);
    // A duplicate with the same config (cannot normally happen: names are
    // deterministic) is removed, the first one kept.
    let mut dup = running(&t, "main", "m2");
    dup.name = "other".into();
    let cur = [running(&t, "main", "m1"), dup, running(&t, "worker", "w2")];
    let steps = plan(Some(app(&t)), &cur, &images(&["main:1", "worker:1"]));
    assert_eq!(
        show(&steps),
        ["lock main,worker", "stop m2", "remove m2", "unlock"]
    );
}

#[test]
fn a_changed_dependency_restarts_only_itself() {
    let old = target(TWO);
    let cur = [running(&old, "main", "m1"), running(&old, "worker", "w1")];
    let new = target(&TWO.replace(
        "\"main:1\"}",
        "\"main:1\", \"environment\": {\"A\": \"1\"}}",
    ));
    let steps = plan(Some(app(&new)), &cur, &images(&["main:1", "worker:1"]));
    assert_eq!(
        show(&steps),
        [
            "create main",
            "lock main,worker",
            "stop m1",
            "start main",
            "remove m1",
            "unlock",
            "verify main"
        ]
    );
}

/// Whatever the engine refuses at create costs nothing that runs: every
/// create of the default and hand-over strategies comes before the lock,
/// and no old container is removed before its successor started.
#[test]
fn nothing_running_is_removed_before_its_successor_started() {
    let old = target(TWO);
    let cur = [running(&old, "main", "m1"), running(&old, "worker", "w1")];
    let new = target(&TWO.replace(":1", ":2"));
    let steps = show(&plan(
        Some(app(&new)),
        &cur,
        &images(&["main:1", "worker:1"]),
    ));
    let at = |s: &str| steps.iter().position(|x| x == s).unwrap();
    assert!(at("create main") < at("lock main,worker"));
    assert!(at("create worker") < at("lock main,worker"));
    assert!(at("start main") < at("remove m1"));
    assert!(at("start worker") < at("remove w1"));
    // Dependants stop first, dependencies start first.
    assert!(at("stop w1") < at("stop m1"));
    assert!(at("start main") < at("start worker"));
    // Waiting on the lock after the creates: the re-plan starts them.
    let mut created = vec![running(&new, "main", "m2"), running(&new, "worker", "w2")];
    created.iter_mut().for_each(|c| c.state = RunState::Created);
    let all: Vec<Container> = cur.iter().cloned().chain(created).collect();
    assert_eq!(
        show(&plan(
            Some(app(&new)),
            &all,
            &images(&["main:2", "worker:2"])
        )),
        [
            "lock main,worker",
            "stop w1",
            "stop m1",
            "start main",
            "start worker",
            "remove m1",
            "remove w1",
            "unlock",
            "verify main,worker"
        ]
    );
}

/// A failed pass started the new main, then stopped it again and put the
/// old containers back: the retry starts the new main before the old one
/// goes, not only the new worker that never started.
#[test]
fn a_successor_stopped_by_a_failed_pass_is_started_before_its_predecessor_goes() {
    let old = target(TWO);
    let new = target(&TWO.replace(":1", ":2"));
    let mut main2 = running(&new, "main", "m2");
    main2.state = RunState::Other;
    let mut worker2 = running(&new, "worker", "w2");
    worker2.state = RunState::Created;
    let cur = [
        running(&old, "main", "m1"),
        running(&old, "worker", "w1"),
        main2,
        worker2,
    ];
    assert_eq!(
        show(&plan(
            Some(app(&new)),
            &cur,
            &images(&["main:2", "worker:2"])
        )),
        [
            "lock main,worker",
            "stop w1",
            "stop m1",
            "start main",
            "start worker",
            "remove m1",
            "remove w1",
            "unlock",
            "verify main,worker"
        ]
    );
    // Without predecessors an exited container is its restart policy's.
    let mut exited = running(&new, "main", "m2");
    exited.state = RunState::Other;
    let cur = [exited, running(&new, "worker", "w2")];
    assert!(plan(Some(app(&new)), &cur, &images(&["main:2", "worker:2"])).is_empty());
}

fn app1() -> AppName {
    AppName::new("app1").unwrap()
}

#[test]
fn a_first_deploy_makes_the_app_network_and_volumes_before_any_container() {
    let t = target(
        r#""db": {"image": "db:1", "volumes": ["data:/var/lib/db", "/srv:/srv"]}, "web": {"image": "web:1", "network_mode": "host"}"#,
    );
    let steps = super::plan(
        &app1(),
        Some(app(&t)),
        &[],
        &images(&["db:1", "web:1"]),
        &Objects::default(),
    );
    assert_eq!(
        show(&steps),
        [
            "net+ default",
            "vol+ data",
            "create db",
            "create web",
            "lock db,web",
            "start db",
            "start web",
            "unlock",
            "verify db,web"
        ]
    );
    assert!(steps[..4].iter().all(Step::lock_free));
}

#[test]
fn a_changed_network_replaces_its_services_before_it_is_made_again() {
    let old = target(r#""a": {"image": "a:1"}, "b": {"image": "b:1", "network_mode": "none"}"#);
    let cur = [running(&old, "a", "a1"), running(&old, "b", "b1")];
    let objects = converged(&app1(), app(&old));
    let mut new = old.clone();
    let napp = new.apps.values_mut().next().unwrap();
    napp.networks.insert(
        "default".into(),
        crate::target::NetworkSpec {
            internal: true,
            ..Default::default()
        },
    );
    let steps = super::plan(
        &app1(),
        Some(app(&new)),
        &cur,
        &images(&["a:1", "b:1"]),
        &objects,
    );
    // b is on no app network: untouched. a goes first, then the network.
    assert_eq!(
        show(&steps),
        [
            "lock a,b",
            "stop a1",
            "remove a1",
            "net- app1_default",
            "net+ default",
            "create a",
            "start a",
            "unlock",
            "verify a"
        ]
    );
}

#[test]
fn networks_nothing_uses_any_more_are_removed_last() {
    let t = target(r#""a": {"image": "a:1", "network_mode": "host"}"#);
    let cur = [running(&t, "a", "a1")];
    let objects = Objects {
        networks: vec![AppNetwork {
            name: "app1_default".into(),
            app: app1(),
            hash: "x".into(),
        }],
        ..Default::default()
    };
    let steps = super::plan(&app1(), Some(app(&t)), &cur, &images(&["a:1"]), &objects);
    assert_eq!(show(&steps), ["net- app1_default"]);
}

#[test]
fn an_app_leaving_keeps_its_volumes_unless_told_otherwise() {
    let t = target(r#""a": {"image": "a:1", "volumes": ["data:/d"]}"#);
    let cur = [running(&t, "a", "a1")];
    let mut objects = converged(&app1(), app(&t));
    let kept = super::plan(&app1(), None, &cur, &images(&[]), &objects);
    assert_eq!(
        show(&kept),
        [
            "lock a",
            "stop a1",
            "remove a1",
            "net- app1_default",
            "unlock"
        ]
    );
    objects.remove_volumes = true;
    let removed = super::plan(&app1(), None, &cur, &images(&[]), &objects);
    assert_eq!(
        show(&removed),
        [
            "lock a",
            "stop a1",
            "remove a1",
            "vol- app1_data",
            "net- app1_default",
            "unlock"
        ]
    );
}

#[test]
fn a_volume_with_another_driver_or_options_is_refused_not_made_again() {
    let t = target(r#""a": {"image": "a:1", "volumes": ["data:/d"]}"#);
    let mut t2 = t.clone();
    t2.apps.values_mut().next().unwrap().volumes.insert(
        "data".into(),
        crate::target::VolumeSpec {
            driver_opts: [("type".to_string(), "tmpfs".to_string())].into(),
            ..Default::default()
        },
    );
    let have = [AppVolume {
        name: "app1_data".into(),
        app: Some(app1()),
        driver: "local".into(),
        options: Default::default(),
    }];
    assert_eq!(volume_conflict(&app1(), app(&t), &have), None);
    let why = volume_conflict(&app1(), app(&t2), &have).unwrap();
    assert!(why.contains("app1_data") && why.contains("tmpfs"), "{why}");
}

#[test]
fn a_service_sharing_a_namespace_is_created_once_the_other_exists() {
    let t = target(
        r#""a": {"image": "a:1", "ipc": "shareable", "labels": {"io.balena.update.strategy": "kill-then-download"}}, "b": {"image": "b:1", "ipc": "service:a"}"#,
    );
    let steps = plan(Some(app(&t)), &[], &images(&["a:1", "b:1"]));
    assert_eq!(
        show(&steps),
        [
            "lock a,b",
            "create a",
            "start a",
            "create b",
            "start b",
            "unlock",
            "verify a,b"
        ]
    );
}

/// Planning is linear in the app: 20,000 services, each image but one of
/// its own, are planned in seconds even in a debug build (each image was
/// looked for in the steps so far, and the dependency order took a search
/// per service: 400 million comparisons). Beyond what validation accepts;
/// the planner does not rely on it.
#[test]
fn many_services_are_planned_at_once_and_each_image_pulled_once() {
    let services: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| {
            let image = format!("img{}", i.max(1));
            (format!("s{i:05}"), serde_json::json!({"image": image}))
        })
        .collect();
    let a: AppTarget =
        serde_json::from_value(serde_json::json!({"release": "r", "services": services})).unwrap();
    let start = std::time::Instant::now();
    let steps = plan(Some(&a), &[], &BTreeSet::new());
    let took = start.elapsed();
    let pulls: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Pull { image } => Some(image.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(pulls.len(), 19_999);
    assert_eq!(pulls[..3], ["img1", "img2", "img3"]);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}
