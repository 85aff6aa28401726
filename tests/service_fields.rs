//! The service fields of issue 10 through holdfastd and a real dockerd:
//! each reaches the engine as the container's config says after the
//! apply (docker inspect), including namespaces shared by `service:`.

mod common;

use std::time::{Duration, Instant};

use common::engine::target;
use common::{ok, Env};
use serde_json::{json, Value};

/// `docker inspect` of a container, as JSON.
fn inspect(env: &Env, container: &str) -> Value {
    let out = ok(&env.docker(&["inspect", container]));
    let list: Value = serde_json::from_str(&out).unwrap();
    list[0].clone()
}

/// A service that stops at once on SIGTERM, off any network.
fn base(image: &str) -> Value {
    json!({
        "image": image,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        "network_mode": "none",
    })
}

#[tokio::test]
async fn every_service_field_reaches_the_engine() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;

    let mut main = base(&image);
    for (k, v) in [
        ("hostname", json!("fields-box")),
        ("domainname", json!("example.org")),
        ("stop_grace_period", json!("7s")),
        ("expose", json!(["9000-9001/udp"])),
        ("cap_add", json!(["NET_ADMIN"])),
        ("cap_drop", json!(["mknod"])),
        ("sysctls", json!({"net.ipv4.ip_forward": "1"})),
        ("extra_hosts", json!(["db.local:10.0.0.2"])),
        ("dns", json!("1.1.1.1")),
        ("dns_search", json!(["example.org"])),
        ("mem_limit", json!("64m")),
        ("memswap_limit", json!("128m")),
        ("cpus", json!(0.5)),
        ("cpu_shares", json!(512)),
        ("cpuset", json!("0")),
        ("pids_limit", json!(100)),
        (
            "ulimits",
            json!({"nofile": {"soft": 1024, "hard": 2048}, "core": 0}),
        ),
        ("shm_size", json!("32m")),
        ("read_only", json!(true)),
        ("init", json!(true)),
        ("security_opt", json!(["no-new-privileges"])),
        ("group_add", json!(["1234"])),
        ("ipc", json!("shareable")),
        ("oom_score_adj", json!(100)),
        (
            "logging",
            json!({"driver": "json-file", "options": {"max-size": "1m", "max-file": "2"}}),
        ),
        (
            "healthcheck",
            json!({"test": ["CMD", "true"], "interval": "1s", "timeout": "2s",
                   "retries": 2, "start_period": "1s"}),
        ),
        ("volumes", json!(["data:/data"])),
        ("tmpfs", json!(["/run:size=1m"])),
    ] {
        main[k] = v;
    }
    // Shares main's network, IPC and PID namespaces: started after it.
    let mut side = base(&image);
    side["network_mode"] = json!("service:main");
    side["ipc"] = json!("service:main");
    side["pid"] = json!("service:main");
    side["depends_on"] = json!({"main": {"condition": "service_started"}});
    ok(&env.apply(&target(json!({"fields": {
        "release": "r1", "services": {"main": main, "side": side}
    }}))));
    env.wait_app("fields", "applied").await;

    let main_id = env.container_of("fields", "main");
    let c = inspect(&env, &main_id);
    let main_name = c["Name"].as_str().unwrap().trim_start_matches('/');
    let (cfg, hc) = (&c["Config"], &c["HostConfig"]);
    assert_eq!(cfg["Hostname"], "fields-box");
    assert_eq!(cfg["Domainname"], "example.org");
    assert_eq!(cfg["StopTimeout"], 7);
    assert_eq!(cfg["ExposedPorts"], json!({"9000/udp": {}, "9001/udp": {}}));
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD", "true"], "Interval": 1_000_000_000u64,
               "Timeout": 2_000_000_000u64, "StartPeriod": 1_000_000_000u64, "Retries": 2})
    );
    assert_eq!(hc["CapAdd"], json!(["NET_ADMIN"]));
    assert_eq!(hc["CapDrop"], json!(["mknod"]));
    assert_eq!(hc["Sysctls"], json!({"net.ipv4.ip_forward": "1"}));
    assert_eq!(hc["ExtraHosts"], json!(["db.local:10.0.0.2"]));
    assert_eq!(hc["Dns"], json!(["1.1.1.1"]));
    assert_eq!(hc["DnsSearch"], json!(["example.org"]));
    assert_eq!(hc["Memory"], 64 << 20);
    // Kept as given, or -1 where the kernel does not account swap.
    assert!(
        hc["MemorySwap"] == json!(128 << 20) || hc["MemorySwap"] == -1,
        "{}",
        hc["MemorySwap"]
    );
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(hc["CpuShares"], 512);
    assert_eq!(hc["CpusetCpus"], "0");
    assert_eq!(hc["PidsLimit"], 100);
    let mut ulimits = hc["Ulimits"].as_array().unwrap().clone();
    ulimits.sort_by_key(|u| u["Name"].as_str().unwrap().to_owned());
    assert_eq!(
        ulimits,
        [
            json!({"Name": "core", "Soft": 0, "Hard": 0}),
            json!({"Name": "nofile", "Soft": 1024, "Hard": 2048})
        ]
    );
    assert_eq!(hc["ShmSize"], 32 << 20);
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["Init"], true);
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(hc["GroupAdd"], json!(["1234"]));
    assert_eq!(hc["IpcMode"], "shareable");
    assert_eq!(hc["OomScoreAdj"], 100);
    assert_eq!(
        hc["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}})
    );
    assert_eq!(hc["NetworkMode"], "none");
    assert_eq!(hc["Tmpfs"], json!({"/run": "size=1m"}));
    // The named volume is the app's.
    let mounts = c["Mounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["Type"] == "volume"
            && m["Name"] == "fields_data"
            && m["Destination"] == "/data"),
        "{mounts:?}"
    );

    // Inside: what the kernel made of it.
    let run = |script: &str| ok(&env.exec(&main_id, script));
    assert_eq!(run("cat /proc/sys/kernel/hostname").trim(), "fields-box");
    assert_eq!(run("ulimit -n").trim(), "1024");
    assert_eq!(run("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    assert!(run("id").contains("1234"), "group_add");
    assert!(
        !env.exec(&main_id, "touch /rootfs-is-read-only")
            .status
            .success(),
        "read_only"
    );
    let status = run("cat /proc/self/status");
    assert!(
        status.lines().any(|l| l == "NoNewPrivs:\t1"),
        "no-new-privileges: {status}"
    );

    // The healthcheck runs and reports.
    let start = Instant::now();
    loop {
        let s = inspect(&env, &main_id)["State"]["Health"]["Status"].clone();
        if s == "healthy" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "health {s}; {}",
            inspect(&env, &main_id)["State"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // service:main became main's container of its current config.
    let side_id = env.container_of("fields", "side");
    let s = inspect(&env, &side_id);
    // The engine keeps the name given, or resolves it to the id.
    let by_name = format!("container:{main_name}");
    let by_id = format!("container:{main_id}");
    for mode in ["NetworkMode", "IpcMode", "PidMode"] {
        let got = &s["HostConfig"][mode];
        assert!(
            got == by_name.as_str() || got == by_id.as_str(),
            "{mode} {got}, not {by_name}"
        );
    }
    // One PID namespace: side sees main's processes.
    let ps = ok(&env.exec(&side_id, "ps"));
    assert!(ps.lines().count() > 3, "{ps}");
    assert_eq!(
        ok(&env.exec(&side_id, "cat /proc/sys/kernel/hostname")).trim(),
        "fields-box",
        "main's UTS name through its network namespace"
    );
}

/// A service on one app network: the create body's endpoint (alias,
/// fixed address) reaches the engine. The network is made here, labelled
/// as holdfast labels its own; creating app networks is the executor's.
#[tokio::test]
async fn an_app_network_endpoint_reaches_the_engine() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    ok(&env.docker(&[
        "network",
        "create",
        "--subnet",
        "172.29.0.0/24",
        "--label",
        "io.holdfast.app=nets",
        "nets_back",
    ]));
    env.start_daemon().await;
    let mut api = base(&image);
    api.as_object_mut().unwrap().remove("network_mode");
    api["networks"] = json!({"back": {"aliases": ["backend-api"], "ipv4_address": "172.29.0.10"}});
    ok(&env.apply(&target(json!({"nets": {
        "release": "r1",
        "networks": {"back": {"ipam": {"config": [{"subnet": "172.29.0.0/24"}]}}},
        "services": {"api": api}
    }}))));
    env.wait_app("nets", "applied").await;
    let c = inspect(&env, &env.container_of("nets", "api"));
    assert_eq!(c["HostConfig"]["NetworkMode"], "nets_back");
    let ep = &c["NetworkSettings"]["Networks"]["nets_back"];
    let aliases: Vec<&str> = ep["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(aliases.starts_with(&["api", "backend-api"]), "{aliases:?}");
    assert_eq!(ep["IPAMConfig"]["IPv4Address"], "172.29.0.10");
    assert_eq!(ep["IPAddress"], "172.29.0.10");
}
