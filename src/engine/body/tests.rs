use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, RestartPolicyNameEnum};
use serde_json::{json, Value};

use super::*;
use crate::target::{AppTarget, Injected};

/// The app `app1` with `services` (release `r1`).
fn app(services: Value) -> AppTarget {
    app_with(json!({ "services": services }))
}

fn app_with(mut app: Value) -> AppTarget {
    app["release"] = json!("r1");
    serde_json::from_value(app).unwrap()
}

/// The create body of `service` in `target`, as the executor makes it.
fn body_of(target: &AppTarget, service: &str) -> ContainerCreateBody {
    with_context(target, service, create_body)
}

fn with_context<R>(target: &AppTarget, service: &str, f: impl FnOnce(&ServiceContext) -> R) -> R {
    let app = AppName::new("app1").unwrap();
    let service = ServiceName::new(service).unwrap();
    let hash = target.config_hash(&service);
    f(&ServiceContext {
        app: &app,
        service: &service,
        release: "r1",
        target,
        spec: &target.services[&service],
        hash: &hash,
        lock_dir: Path::new("/run/holdfast/locks/app1/main"),
        supervisor_api: None,
    })
}

#[test]
fn every_container_gets_labels_lock_mounts_and_env() {
    let t = app(
        json!({"main": {"image": "a:1", "environment": {"K": "V"}, "ports": ["8080:80"],
        "devices": ["/dev/ttyS0"], "tmpfs": ["/run:size=1m"], "restart": "no",
        "network_mode": "none"}}),
    );
    let body = body_of(&t, "main");
    let labels = body.labels.unwrap();
    assert_eq!(labels[LABEL_APP], "app1");
    let main = ServiceName::new("main").unwrap();
    assert_eq!(labels[LABEL_HASH], t.config_hash(&main));
    let env = body.env.unwrap();
    assert!(env.contains(&"K=V".to_string()));
    assert!(env.contains(&"BALENA_APP_LOCK_PATH=/tmp/balena/updates.lock".to_string()));
    assert!(env.contains(&"RESIN_SERVICE_KILL_ME_PATH=/tmp/balena/handover-complete".to_string()));
    let hc = body.host_config.unwrap();
    assert_eq!(
        hc.binds.unwrap(),
        [
            "/run/holdfast/locks/app1/main:/tmp/balena",
            "/run/holdfast/locks/app1/main:/tmp/resin"
        ]
    );
    assert_eq!(
        hc.port_bindings.unwrap()["80/tcp"].as_ref().unwrap()[0]
            .host_port
            .as_deref(),
        Some("8080")
    );
    assert_eq!(hc.tmpfs.unwrap()["/run"], "size=1m");
    assert_eq!(
        hc.devices.unwrap()[0].path_in_container.as_deref(),
        Some("/dev/ttyS0")
    );
    assert_eq!(
        hc.restart_policy.unwrap().name,
        Some(RestartPolicyNameEnum::NO)
    );
    // Off the app's networks: no endpoint.
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert!(body.networking_config.is_none());
}

fn api() -> SupervisorApi {
    SupervisorApi {
        host: "10.0.3.1".into(),
        port: 48484,
        key: "k3y".into(),
    }
}

/// The environment of service `s` (labels, environment and network_mode
/// as given) with `injected` set on the app and the API at `api()`.
fn env_with(service: Value, injected: Option<Injected>) -> Vec<String> {
    let mut t = app(json!({ "s": service }));
    t.injected = injected.map(std::sync::Arc::new);
    let api = api();
    with_context(&t, "s", |cx| {
        create_body(&ServiceContext {
            supervisor_api: Some(&api),
            ..*cx
        })
    })
    .env
    .unwrap()
}

fn injected() -> Injected {
    Injected {
        device_uuid: "0123abcd".into(),
        device_type: "raspberrypi4-64".into(),
        device_arch: "aarch64".into(),
        os_version: "balenaOS 6.0.1".into(),
        api_port: 48484,
        api_key: Some("k3y".into()),
        hash_secret: "s3cret".into(),
        lock_root: None,
    }
}

#[test]
fn only_labelled_services_learn_the_api_address_and_key() {
    let env_of = |labels: Value| env_with(json!({"image": "i", "labels": labels}), None);
    let with = env_of(json!({"io.balena.features.supervisor-api": "1"}));
    for ns in ["BALENA", "RESIN"] {
        for want in [
            format!("{ns}_SUPERVISOR_ADDRESS=http://10.0.3.1:48484"),
            format!("{ns}_SUPERVISOR_HOST=10.0.3.1"),
            format!("{ns}_SUPERVISOR_PORT=48484"),
            format!("{ns}_SUPERVISOR_API_KEY=k3y"),
        ] {
            assert!(with.contains(&want), "{want} not in {with:?}");
        }
    }
    assert!(!env_of(json!({})).iter().any(|e| e.contains("_SUPERVISOR_")));
}

#[test]
fn balenas_environment_with_resin_twins_and_the_services_own_values_winning() {
    let env = env_with(
        json!({"image": "i", "environment": {"BALENA_DEVICE_TYPE": "mine", "RESIN": "0",
            "BALENA_SUPERVISOR_PORT": "1"},
            "labels": {"io.balena.features.supervisor-api": "1"}}),
        Some(injected()),
    );
    let has = |e: &str| env.iter().filter(|x| *x == e).count() == 1;
    for e in [
        "BALENA=1",
        "RESIN=0",
        "BALENA_APP_ID=app1",
        "RESIN_APP_ID=app1",
        "BALENA_APP_UUID=app1",
        "RESIN_APP_UUID=app1",
        "BALENA_APP_NAME=app1",
        "RESIN_APP_NAME=app1",
        "BALENA_SERVICE_NAME=s",
        "RESIN_SERVICE_NAME=s",
        "BALENA_DEVICE_UUID=0123abcd",
        "RESIN_DEVICE_UUID=0123abcd",
        "BALENA_DEVICE_TYPE=mine",
        "RESIN_DEVICE_TYPE=raspberrypi4-64",
        "BALENA_DEVICE_ARCH=aarch64",
        "RESIN_DEVICE_ARCH=aarch64",
        "BALENA_HOST_OS_VERSION=balenaOS 6.0.1",
        "RESIN_HOST_OS_VERSION=balenaOS 6.0.1",
        "BALENA_APP_LOCK_PATH=/tmp/balena/updates.lock",
        "RESIN_APP_LOCK_PATH=/tmp/balena/updates.lock",
        "BALENA_SERVICE_HANDOVER_COMPLETE_PATH=/tmp/balena/handover-complete",
        "RESIN_SERVICE_KILL_ME_PATH=/tmp/balena/handover-complete",
        // The API's own variables say where this supervisor is: they win.
        "BALENA_SUPERVISOR_PORT=48484",
    ] {
        assert!(has(e), "{e} not once in {env:?}");
    }
    assert!(!env
        .iter()
        .any(|e| e == "BALENA_DEVICE_TYPE=raspberrypi4-64"));
    assert!(!env.iter().any(|e| e == "BALENA_SUPERVISOR_PORT=1"));
}

#[test]
fn injected_values_are_in_the_config_hash_the_key_only_for_labelled_services() {
    let spec = |labels: Value| json!({"image": "i", "labels": labels});
    let mut t = app(json!({"plain": spec(json!({})),
        "api": spec(json!({"io.balena.features.supervisor-api": "1"}))}));
    let hashes =
        |t: &AppTarget| ["plain", "api"].map(|s| t.config_hash(&ServiceName::new(s).unwrap()));
    let bare = hashes(&t);
    t.injected = Some(std::sync::Arc::new(injected()));
    let with = hashes(&t);
    assert_ne!(bare[0], with[0]);
    assert_ne!(bare[1], with[1]);
    let mut i = injected();
    i.api_key = Some("other".into());
    t.injected = Some(std::sync::Arc::new(i.clone()));
    let rotated = hashes(&t);
    assert_eq!(rotated[0], with[0], "the key is not the plain service's");
    assert_ne!(rotated[1], with[1]);
    i.device_uuid = "4567".into();
    t.injected = Some(std::sync::Arc::new(i));
    let moved = hashes(&t);
    assert_ne!(moved[0], rotated[0]);
    assert_ne!(moved[1], rotated[1]);
    // The key never shows in the target's Debug.
    assert!(!format!("{t:?}").contains("other"));
}

#[test]
fn arches_in_balenas_names() {
    for (machine, built, want) in [
        ("aarch64", "aarch64", "aarch64"),
        ("aarch64", "arm", "armv7hf"),
        ("armv7l", "arm", "armv7hf"),
        ("armv6l", "arm", "rpi"),
        ("x86_64", "x86_64", "amd64"),
        ("x86_64", "x86", "i386"),
        ("i686", "x86", "i386"),
        ("riscv64", "riscv64", "riscv64"),
    ] {
        assert_eq!(balena_arch(machine, built), want, "{machine} {built}");
    }
    assert!(!machine_arch().is_empty());
}

#[test]
fn the_host_os_version_is_os_releases_pretty_name() {
    let text = "NAME=\"balenaOS\"\nID=balena-os\nPRETTY_NAME=\"balenaOS 6.0.1\"\nVERSION=6.0.1\n";
    assert_eq!(os_pretty_name(text).as_deref(), Some("balenaOS 6.0.1"));
    assert_eq!(
        os_pretty_name("PRETTY_NAME='Debian \\\"x\\\"'").as_deref(),
        Some("Debian \"x\"")
    );
    assert_eq!(
        os_pretty_name("PRETTY_NAME=Plain").as_deref(),
        Some("Plain")
    );
    assert_eq!(os_pretty_name("NAME=x\n"), None);
}

/// Every issue-10 field reaches the create body where the engine reads it.
#[test]
fn every_field_maps_to_the_engine() {
    let t = app(json!({"main": {
        "image": "a:1", "network_mode": "none", "hostname": "box", "domainname": "example.org",
        "stop_grace_period": "1m30s", "ports": ["8080:80"], "expose": ["9000-9002/udp", "80"],
        "cap_add": ["NET_ADMIN"], "cap_drop": ["MKNOD"], "sysctls": {"net.ipv4.ip_forward": "1"},
        "extra_hosts": ["db:10.0.0.2"], "dns": "1.1.1.1", "dns_search": ["example.org"],
        "mem_limit": "64m", "memswap_limit": "128m", "cpus": 0.5, "cpu_shares": 512,
        "cpuset": "0-1", "pids_limit": 100,
        "ulimits": {"nofile": {"soft": 1024, "hard": 4096}, "core": 0},
        "shm_size": "32m", "read_only": true, "init": true,
        "security_opt": ["no-new-privileges"], "group_add": ["audio", "1000"], "ipc": "shareable",
        "pid": "host", "oom_score_adj": -500,
        "logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "2"}},
        "healthcheck": {"test": ["CMD", "true"], "interval": "5s", "timeout": "1500ms",
                        "retries": 4, "start_period": "1m"}
    }}));
    let body = body_of(&t, "main");
    assert_eq!(body.hostname.as_deref(), Some("box"));
    assert_eq!(body.domainname.as_deref(), Some("example.org"));
    assert_eq!(body.stop_timeout, Some(90));
    let mut exposed: Vec<&String> = body.exposed_ports.as_ref().unwrap().keys().collect();
    exposed.sort();
    assert_eq!(
        exposed,
        ["80/tcp", "9000/udp", "9001/udp", "9002/udp"],
        "ports and expose, ranges spelled out"
    );
    let h = body.healthcheck.unwrap();
    assert_eq!(h.test.unwrap(), ["CMD", "true"]);
    assert_eq!(h.interval, Some(5_000_000_000));
    assert_eq!(h.timeout, Some(1_500_000_000));
    assert_eq!(h.retries, Some(4));
    assert_eq!(h.start_period, Some(60_000_000_000));
    let hc = body.host_config.unwrap();
    assert_eq!(hc.cap_add.unwrap(), ["NET_ADMIN"]);
    assert_eq!(hc.cap_drop.unwrap(), ["MKNOD"]);
    assert_eq!(
        hc.sysctls.unwrap(),
        HashMap::from([("net.ipv4.ip_forward".to_owned(), "1".to_owned())])
    );
    assert_eq!(hc.extra_hosts.unwrap(), ["db:10.0.0.2"]);
    assert_eq!(hc.dns.unwrap(), ["1.1.1.1"]);
    assert_eq!(hc.dns_search.unwrap(), ["example.org"]);
    assert_eq!(hc.memory, Some(64 << 20));
    assert_eq!(hc.memory_swap, Some(128 << 20));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.cpu_shares, Some(512));
    assert_eq!(hc.cpuset_cpus.as_deref(), Some("0-1"));
    assert_eq!(hc.pids_limit, Some(100));
    let mut ulimits: Vec<(String, i64, i64)> = hc
        .ulimits
        .unwrap()
        .into_iter()
        .map(|u| (u.name.unwrap(), u.soft.unwrap(), u.hard.unwrap()))
        .collect();
    ulimits.sort();
    assert_eq!(
        ulimits,
        [("core".into(), 0, 0), ("nofile".into(), 1024, 4096)]
    );
    assert_eq!(hc.shm_size, Some(32 << 20));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.init, Some(true));
    assert_eq!(hc.security_opt.unwrap(), ["no-new-privileges"]);
    assert_eq!(hc.group_add.unwrap(), ["audio", "1000"]);
    assert_eq!(hc.ipc_mode.as_deref(), Some("shareable"));
    assert_eq!(hc.pid_mode.as_deref(), Some("host"));
    assert_eq!(hc.oom_score_adj, Some(-500));
    let log = hc.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.unwrap()["max-size"], "1m");
}

#[test]
fn unset_fields_leave_the_engine_defaults() {
    let t = app(json!({"main": {"image": "a:1", "network_mode": "host"}}));
    let body = body_of(&t, "main");
    assert!(body.healthcheck.is_none() && body.hostname.is_none() && body.stop_timeout.is_none());
    assert!(body.exposed_ports.is_none());
    let hc = body.host_config.unwrap();
    assert!(hc.cap_add.is_none() && hc.sysctls.is_none() && hc.dns.is_none());
    assert!(hc.memory.is_none() && hc.nano_cpus.is_none() && hc.ulimits.is_none());
    assert!(hc.readonly_rootfs.is_none() && hc.init.is_none() && hc.log_config.is_none());
    assert!(hc.ipc_mode.is_none() && hc.pid_mode.is_none() && hc.oom_score_adj.is_none());
}

#[test]
fn healthchecks_disabled_or_inherited() {
    let test_of = |h: Value| {
        let t = app(json!({"s": {"image": "i", "network_mode": "none", "healthcheck": h}}));
        body_of(&t, "s").healthcheck.unwrap()
    };
    assert_eq!(test_of(json!({"disable": true})).test.unwrap(), ["NONE"]);
    assert_eq!(
        test_of(json!({"disable": true, "test": ["CMD", "x"]}))
            .test
            .unwrap(),
        ["NONE"]
    );
    let h = test_of(json!({"test": "exit 0"}));
    assert_eq!(h.test.unwrap(), ["CMD-SHELL", "exit 0"]);
    // Timings only: the image's test stays.
    let h = test_of(json!({"interval": "1s"}));
    assert!(h.test.is_none());
    assert_eq!(h.interval, Some(1_000_000_000));
    let t = app(json!({"s": {"image": "i", "network_mode": "none", "stop_timeout": 7}}));
    assert_eq!(body_of(&t, "s").stop_timeout, Some(7));
}

#[test]
fn named_volumes_are_the_apps() {
    let t = app(json!({"s": {"image": "i", "network_mode": "none",
        "volumes": ["data:/data", "/srv/x:/x:ro", "cache:/c:ro"]}}));
    let binds = body_of(&t, "s").host_config.unwrap().binds.unwrap();
    assert_eq!(
        binds[..3],
        ["app1_data:/data", "/srv/x:/x:ro", "app1_cache:/c:ro"]
    );
}

#[test]
fn shared_namespaces_name_the_other_services_container() {
    let t = app(json!({
        "db": {"image": "d", "ipc": "shareable"},
        "s": {"image": "i", "network_mode": "service:db", "ipc": "service:db", "pid": "service:db"},
        "c": {"image": "i", "network_mode": "container:other", "ipc": "container:x1"}
    }));
    let db = ServiceName::new("db").unwrap();
    let want = format!("container:app1_db_{}", t.config_hash(&db));
    let body = body_of(&t, "s");
    let hc = body.host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some(want.as_str()));
    assert_eq!(hc.ipc_mode.as_deref(), Some(want.as_str()));
    assert_eq!(hc.pid_mode.as_deref(), Some(want.as_str()));
    assert!(body.networking_config.is_none());
    let hc = body_of(&t, "c").host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("container:other"));
    assert_eq!(hc.ipc_mode.as_deref(), Some("container:x1"));
}

#[test]
fn services_join_the_app_networks() {
    let t = app_with(json!({
        "networks": {"back": {"ipam": {"config": [{"subnet": "172.28.0.0/24"}]}}, "front": {}},
        "services": {
            "plain": {"image": "i"},
            "multi": {"image": "i", "networks": {
                "front": {"aliases": ["web", "multi"]},
                "back": {"aliases": ["api"], "ipv4_address": "172.28.0.10"},
                "default": null}}
        }
    }));
    // No networks named: `<app>_default`, the service's name its alias.
    let body = body_of(&t, "plain");
    assert_eq!(
        body.host_config.unwrap().network_mode.as_deref(),
        Some("app1_default")
    );
    let eps = body.networking_config.unwrap().endpoints_config.unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps["app1_default"].aliases.as_ref().unwrap(), &["plain"]);
    assert!(eps["app1_default"].ipam_config.is_none());

    // Several: the first (by name) at create, the others to connect.
    let body = body_of(&t, "multi");
    assert_eq!(
        body.host_config.unwrap().network_mode.as_deref(),
        Some("app1_back")
    );
    let eps = body.networking_config.unwrap().endpoints_config.unwrap();
    assert_eq!(eps.len(), 1, "the engine takes one endpoint at create");
    let back = &eps["app1_back"];
    assert_eq!(back.aliases.as_ref().unwrap(), &["multi", "api"]);
    assert_eq!(
        back.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
        Some("172.28.0.10")
    );
    let extra = with_context(&t, "multi", extra_networks);
    let names: Vec<&str> = extra.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["app1_default", "app1_front"]);
    assert_eq!(extra[0].1.aliases.as_ref().unwrap(), &["multi"]);
    assert_eq!(
        extra[1].1.aliases.as_ref().unwrap(),
        &["multi", "web"],
        "the service's name once"
    );
    assert!(with_context(&t, "plain", extra_networks).is_empty());
}

#[test]
fn container_names_are_app_service_hash() {
    let app = AppName::new("a").unwrap();
    let s = ServiceName::new("s").unwrap();
    assert_eq!(container_name(&app, &s, "0123"), "a_s_0123");
}

/// Exposed ranges are spelled out once: 20,000 items of 1-65535 used to
/// insert 1.3 billion entries at every create of the service.
#[test]
fn overlapping_exposed_ranges_are_spelled_out_once() {
    let mut expose = vec!["1-65535"; 20_000];
    expose.extend(["70-80/udp", "75-90/udp", "78/udp", "100/udp"]);
    let t = app(json!({"main": {"image": "a:1", "expose": expose}}));
    let start = std::time::Instant::now();
    let body = body_of(&t, "main");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let ports = body.exposed_ports.unwrap();
    let udp: Vec<&String> = ports.keys().filter(|k| k.ends_with("/udp")).collect();
    assert_eq!(udp.len(), 22, "70-90 and 100");
    assert!(ports.contains_key("90/udp") && ports.contains_key("100/udp"));
    assert!(!ports.contains_key("91/udp"));
    assert_eq!(ports.len(), 65_535 + 22);
}
