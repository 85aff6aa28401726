//! Each compose shape, normalized to the target's one shape.

use serde_json::json;

use super::{convert, json, service, service_with, service_yaml, FakeHost};
use crate::compose::service::shell_split;

#[test]
fn command_and_entrypoint_strings_split_as_compose_does() {
    let s = service("command: sh -c 'echo \"hi there\"; sleep 1'\nentrypoint: /bin/tini --");
    assert_eq!(
        s["command"],
        json!(["sh", "-c", "echo \"hi there\"; sleep 1"])
    );
    assert_eq!(s["entrypoint"], json!(["/bin/tini", "--"]));
    let s = service("command: [\"sleep\", 10]\nentrypoint: []");
    assert_eq!(s["command"], json!(["sleep", "10"]));
    assert_eq!(s["entrypoint"], json!([]));
    let words = |s: &str| shell_split(s);
    assert_eq!(words("a  b\tc").unwrap(), ["a", "b", "c"]);
    assert_eq!(words("\"a b\" 'c d' e\\ f").unwrap(), ["a b", "c d", "e f"]);
    assert_eq!(words("'' \"\" x").unwrap(), ["", "", "x"]);
    assert_eq!(words("a\"b c\"d").unwrap(), ["ab cd"]);
    assert_eq!(
        words("'a\\b' \"a\\\"b\" \"a;b\"").unwrap(),
        ["a\\b", "a\"b", "a;b"]
    );
    assert!(words("").unwrap().is_empty());
    assert!(words("echo 'x").unwrap_err().contains("closing quote"));
    assert!(words("a b\\").unwrap_err().contains("at the end"));
    for op in ["a; b", "a && b", "a | b", "a > f", "a `b`"] {
        assert!(words(op).unwrap_err().contains("no shell runs"), "{op}");
    }
}

#[test]
fn environment_and_labels_as_lists_or_maps() {
    let host = FakeHost::default().env("FROM_SHELL", "shell");
    let s = service_with(
        "environment:\n  - A=1\n  - B=x=y\n  - FROM_SHELL\n  - NOT_SET\n  - EMPTY=\nlabels:\n  - a.b=c\n  - bare",
        &host,
    );
    assert_eq!(
        s["environment"],
        json!({"A": "1", "B": "x=y", "FROM_SHELL": "shell", "EMPTY": ""})
    );
    assert_eq!(s["labels"], json!({"a.b": "c", "bare": ""}));
    let s = service_with(
        "environment:\n  N: 3\n  F: 1.50\n  T: true\n  FROM_SHELL:\n  NOT_SET: ~\nlabels:\n  x: 1",
        &host,
    );
    // Numbers keep the text they were written with.
    assert_eq!(
        s["environment"],
        json!({"N": "3", "F": "1.50", "T": "true", "FROM_SHELL": "shell"})
    );
    assert_eq!(s["labels"], json!({"x": "1"}));
}

#[test]
fn env_files_are_read_beside_the_compose_file() {
    let host = FakeHost::default()
        .env("SHELL_V", "sv")
        .file("/srv/app/a.env", "A=1\nB=from-a\nS=${SHELL_V}\n")
        .file("/srv/app/conf/b.env", "B=from-b\nC=3\n");
    let s = service_with(
        "env_file:\n  - a.env\n  - ./conf/b.env\n  - path: missing.env\n    required: false\nenvironment:\n  C: from-environment",
        &host,
    );
    assert_eq!(
        s["environment"],
        json!({"A": "1", "B": "from-b", "C": "from-environment", "S": "sv"})
    );
    let s = service_with("env_file: a.env", &host);
    assert_eq!(s["environment"]["B"], "from-a");
}

#[test]
fn ports_short_long_ranges_and_ipv6() {
    let s = service(
        "ports:\n  - \"8080:80\"\n  - 127.0.0.1:53:53/udp\n  - \"9000-9001:8000-8001\"\n  - \"[::1]:443:443\"\n  - target: 81\n    published: \"8081\"\n    host_ip: 0.0.0.0\n    protocol: udp\n    mode: host\n  - {target: 82, published: 8082}",
    );
    assert_eq!(
        s["ports"],
        json!([
            "8080:80",
            "127.0.0.1:53:53/udp",
            "9000:8000",
            "9001:8001",
            "::1:443:443",
            "0.0.0.0:8081:81/udp",
            "8082:82"
        ])
    );
}

#[test]
fn volumes_short_and_long() {
    let host = FakeHost::default().env("HOME", "/root");
    let yaml = format!(
        "{}volumes:\n  data: {{}}\n  logs:\n    driver: local\n    driver_opts: {{type: tmpfs, device: tmpfs}}\n    labels: [a=b]\n",
        service_yaml(
            "volumes:\n  - data:/data\n  - ./conf:/etc/conf:ro\n  - ../shared:/shared:rw,cached\n  - ~/x:/x\n  - /abs:/abs:ro\n  - type: volume\n    source: logs\n    target: /logs\n    read_only: true\n  - type: bind\n    source: ./b\n    target: /b\n    bind: {create_host_path: true}\n  - type: tmpfs\n    target: /run/t\n    tmpfs: {size: 64M, mode: 1777}\ntmpfs: /tmp"
        )
    );
    let t = super::convert_with(&yaml, &host).unwrap();
    let v = serde_json::to_value(&t).unwrap();
    let s = &v["services"]["s"];
    assert_eq!(
        s["volumes"],
        json!([
            "data:/data",
            "/srv/app/conf:/etc/conf:ro",
            "/srv/shared:/shared",
            "/root/x:/x",
            "/abs:/abs:ro",
            "logs:/logs:ro",
            "/srv/app/b:/b"
        ])
    );
    assert_eq!(s["tmpfs"], json!(["/tmp", "/run/t:size=64m,mode=1777"]));
    assert_eq!(v["volumes"]["data"], json!({}));
    assert_eq!(
        v["volumes"]["logs"],
        json!({"driver": "local", "driver_opts": {"type": "tmpfs", "device": "tmpfs"}, "labels": {"a": "b"}})
    );
}

#[test]
fn networks_top_level_and_per_service() {
    let v = json(
        "services:\n  a:\n    image: i\n    networks: [front]\n  b:\n    image: i\n    networks:\n      front:\n        aliases: [bee]\n        ipv4_address: 172.30.0.5\n      default:\n\
         networks:\n  front:\n    driver: bridge\n    internal: true\n    enable_ipv6: false\n    driver_opts: {com.docker.network.bridge.name: hf0}\n    labels: {x: \"1\"}\n    ipam:\n      driver: default\n      config:\n        - subnet: 172.30.0.0/24\n          gateway: 172.30.0.1\n          ip_range: 172.30.0.0/25\n  other:\n  ext:\n    external: false\n",
    );
    assert_eq!(v["services"]["a"]["networks"], json!({"front": {}}));
    assert_eq!(
        v["services"]["b"]["networks"],
        json!({"front": {"aliases": ["bee"], "ipv4_address": "172.30.0.5"}, "default": {}})
    );
    assert_eq!(
        v["networks"]["front"],
        json!({"driver": "bridge", "internal": true, "enable_ipv6": false,
               "driver_opts": {"com.docker.network.bridge.name": "hf0"}, "labels": {"x": "1"},
               "ipam": {"driver": "default", "config": [{"subnet": "172.30.0.0/24", "gateway": "172.30.0.1", "ip_range": "172.30.0.0/25"}]}})
    );
    assert_eq!(v["networks"]["other"], json!({}));
    assert_eq!(v["networks"]["ext"], json!({}));
}

#[test]
fn depends_on_list_or_conditions() {
    let v = json("services:\n  db:\n    image: i\n  a:\n    image: i\n    depends_on: [db]\n  b:\n    image: i\n    depends_on:\n      db:\n        condition: service_healthy\n        required: true\n        restart: true\n      a:\n        condition: service_completed_successfully\n");
    assert_eq!(
        v["services"]["a"]["depends_on"],
        json!({"db": {"condition": "service_started"}})
    );
    assert_eq!(
        v["services"]["b"]["depends_on"],
        json!({"db": {"condition": "service_healthy"}, "a": {"condition": "service_completed_successfully"}})
    );
}

#[test]
fn healthcheck_forms() {
    let s = service("healthcheck:\n  test: curl -f http://localhost/ || exit 1\n  interval: 1m30s\n  timeout: 10s\n  retries: 3\n  start_period: 40s");
    assert_eq!(
        s["healthcheck"],
        json!({"test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "interval": "90s",
               "timeout": "10s", "retries": 3, "start_period": "40s"})
    );
    let s = service("healthcheck:\n  test: [\"CMD\", \"true\"]");
    assert_eq!(s["healthcheck"]["test"], json!(["CMD", "true"]));
    let s = service("healthcheck:\n  disable: true");
    assert_eq!(s["healthcheck"], json!({"disable": true}));
}

#[test]
fn lists_or_maps_strings_or_lists() {
    let s = service("sysctls:\n  - net.core.somaxconn=1024\nextra_hosts:\n  - \"db:10.0.0.2\"\n  - \"cache=10.0.0.3\"\n  - \"v6:::1\"\ndns: 1.1.1.1\ndns_search: [a.local, b.local]\ntmpfs: [/t1, /t2:size=1m]");
    assert_eq!(s["sysctls"], json!({"net.core.somaxconn": "1024"}));
    assert_eq!(
        s["extra_hosts"],
        json!(["db:10.0.0.2", "cache:10.0.0.3", "v6:::1"])
    );
    assert_eq!(s["dns"], json!(["1.1.1.1"]));
    assert_eq!(s["dns_search"], json!(["a.local", "b.local"]));
    assert_eq!(s["tmpfs"], json!(["/t1", "/t2:size=1m"]));
    let s = service("sysctls:\n  net.ipv4.ip_forward: 1\nextra_hosts:\n  db: 10.0.0.2\n  multi: [10.0.0.4, \"::1\"]");
    assert_eq!(s["sysctls"], json!({"net.ipv4.ip_forward": "1"}));
    assert_eq!(
        s["extra_hosts"],
        json!(["db:10.0.0.2", "multi:10.0.0.4", "multi:::1"])
    );
}

#[test]
fn resources_and_the_rest() {
    let s = service(
        "restart: on-failure\nmem_limit: 512m\nmemswap_limit: 1g\nshm_size: 67108864\ncpus: 0.5\ncpu_shares: 512\ncpuset: 0-1\npids_limit: 100\noom_score_adj: -500\n\
         ulimits:\n  nofile: {soft: 1024, hard: 2048}\n  nproc: 65535\n\
         logging:\n  driver: json-file\n  options: {max-size: 10m, max-file: 3}\n\
         privileged: true\nread_only: yes\ninit: true\nuser: 1000\nworking_dir: /app\nhostname: h\ndomainname: d.local\n\
         ipc: private\npid: host\nsecurity_opt: [no-new-privileges:true]\ngroup_add: [dialout, 20]\ncap_add: [NET_ADMIN]\ncap_drop: [ALL]\n\
         devices: [/dev/ttyUSB0:/dev/ttyUSB0:rwm]\nexpose: [80, \"443/tcp\"]\nstop_signal: SIGINT\nstop_grace_period: 1m\nnetwork_mode: host",
    );
    assert_eq!(
        s,
        json!({
            "image": "i:1", "restart": "on-failure", "mem_limit": 536870912, "memswap_limit": 1073741824,
            "shm_size": 67108864, "cpus": 0.5, "cpu_shares": 512, "cpuset": "0-1", "pids_limit": 100,
            "oom_score_adj": -500, "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": {"soft": 65535, "hard": 65535}},
            "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            "privileged": true, "read_only": true, "init": true, "user": "1000", "working_dir": "/app",
            "hostname": "h", "domainname": "d.local", "ipc": "private", "pid": "host",
            "security_opt": ["no-new-privileges:true"], "group_add": ["dialout", "20"], "cap_add": ["NET_ADMIN"],
            "cap_drop": ["ALL"], "devices": ["/dev/ttyUSB0:/dev/ttyUSB0:rwm"], "expose": ["80", "443/tcp"],
            "stop_signal": "SIGINT", "stop_grace_period": "1m", "network_mode": "host"
        })
    );
}

#[test]
fn top_level_extras_are_accepted_and_ignored() {
    let v = json("version: \"3.8\"\nname: other-name\nx-anything: {a: [1]}\nservices:\n  s:\n    image: i\n    x-note: hello\n");
    assert_eq!(v["services"]["s"], json!({"image": "i"}));
    // Empty values are as if not given.
    let s = service("command:\nlabels:\nenvironment:");
    assert_eq!(s, json!({"image": "i:1"}));
}

#[test]
fn release_defaults_to_a_hash_of_the_files() {
    use super::super::{load, Source};
    let app = crate::names::AppName::new("web").unwrap();
    let yaml = "services:\n  s:\n    image: i\n    env_file: e.env\n";
    let host = FakeHost::default().file("/srv/app/e.env", "A=1\n");
    let src = Source {
        name: "c.yml",
        bytes: yaml.as_bytes(),
        dir: std::path::Path::new("/srv/app"),
    };
    let r1 = load(&src, &app, None, &host).unwrap().release;
    assert_eq!(r1.len(), 12);
    assert!(r1.bytes().all(|b| b.is_ascii_hexdigit()), "{r1}");
    assert_eq!(load(&src, &app, None, &host).unwrap().release, r1);
    // The env_file's content is part of it, and so is .env's.
    let host2 = FakeHost::default().file("/srv/app/e.env", "A=2\n");
    assert_ne!(load(&src, &app, None, &host2).unwrap().release, r1);
    let host3 = FakeHost::default()
        .file("/srv/app/e.env", "A=1\n")
        .file("/srv/app/.env", "X=1\n");
    assert_ne!(load(&src, &app, None, &host3).unwrap().release, r1);
    // Without either, the hash of the file alone (sha256sum | cut -c1-12).
    let plain = "services: {s: {image: i}}\n";
    let src = Source {
        name: "c.yml",
        bytes: plain.as_bytes(),
        dir: std::path::Path::new("/srv/app"),
    };
    let r = load(&src, &app, None, &FakeHost::default())
        .unwrap()
        .release;
    use sha2::Digest;
    let full: String = sha2::Sha256::digest(plain.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r, full[..12]);
    assert_eq!(
        load(&src, &app, Some("v7"), &FakeHost::default())
            .unwrap()
            .release,
        "v7"
    );
}

#[test]
fn the_converted_target_round_trips_through_json() {
    let yaml = service_yaml("command: a b\nports: [\"1:2\"]\nhealthcheck: {test: x, interval: 90s}\ncpus: 1.5\nmem_limit: 1.5g\nstop_grace_period: 1500ms");
    let t = convert(&yaml).unwrap();
    let app = crate::names::AppName::new("web").unwrap();
    let whole = super::super::one_app(&app, t.clone());
    let text = serde_json::to_string_pretty(&whole).unwrap();
    let back = crate::target::parse(&text, "converted.json").unwrap();
    assert_eq!(back, whole);
    let s = &back.apps[&app].services;
    let name = crate::names::ServiceName::new("s").unwrap();
    assert_eq!(t.config_hash(&name), back.apps[&app].config_hash(&name));
    assert_eq!(s.len(), 1);
}

/// Every field of the target's services is taken from compose, under its
/// compose name (a field added to the target shows up here).
#[test]
fn every_service_field_is_taken() {
    let e = serde_json::from_str::<crate::target::ServiceSpec>("{\"zzz\": 1}").unwrap_err();
    let e = e.to_string();
    let list = &e[e.find("expected one of").unwrap()..];
    let mut fields: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    // stop_timeout is holdfast's; compose writes stop_grace_period.
    fields.retain(|f| *f != "stop_timeout");
    fields.push("env_file");
    fields.sort();
    let mut known = crate::compose::service::KNOWN.to_vec();
    known.sort();
    assert_eq!(fields, known);
}

/// The example in docs/compose.md converts.
#[test]
fn the_documented_example_converts() {
    let doc = include_str!("../../../docs/compose.md");
    let start = doc.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let host = FakeHost::default().file("/srv/app/api.env", "API_KEY=k\n");
    let t = super::convert_with(&doc[start..end], &host).unwrap();
    let v = serde_json::to_value(&t).unwrap();
    let api = &v["services"]["api"];
    assert_eq!(api["image"], "registry.local/web-api:3");
    assert_eq!(api["command"], json!(["/bin/api", "--listen", ":8080"]));
    assert_eq!(
        api["environment"],
        json!({"API_KEY": "k", "DB_URL": "postgres://db/web"})
    );
    assert_eq!(
        api["volumes"],
        json!(["/srv/app/config:/etc/api:ro", "uploads:/var/lib/api"])
    );
    assert_eq!(api["restart"], "unless-stopped");
    assert_eq!(
        v["services"]["db"]["healthcheck"]["test"],
        json!(["CMD-SHELL", "pg_isready -U postgres"])
    );
}
