//! App-level rules: networks, volumes, and what services say about each
//! other.

use serde_json::{json, Value};

use super::validate;
use crate::target::Target;

/// A target with app `a` made of `app` (release filled in).
fn target(app: Value) -> Target {
    let mut app = app;
    app["release"] = json!("r1");
    serde_json::from_value(json!({"version": 1, "apps": {"a": app}})).unwrap()
}

fn ok(app: Value) {
    validate(&target(app.clone())).unwrap_or_else(|e| panic!("{app}: {e:?}"));
}

/// Refused at `path` with a reason containing `want`.
fn bad(app: Value, path: &str, want: &str) {
    let (p, r) = validate(&target(app.clone())).expect_err(&app.to_string());
    assert_eq!(p, path, "{app}: {r}");
    assert!(r.contains(want), "{app}: {want:?} not in {r:?}");
}

#[test]
fn networks_and_volumes() {
    ok(json!({
        "networks": {
            "default": {},
            "backend": {"driver": "bridge", "internal": true, "labels": {"x": "y"},
                        "driver_opts": {"com.docker.network.bridge.name": "br-be"},
                        "ipam": {"driver": "default", "config": [
                            {"subnet": "172.30.0.0/24", "gateway": "172.30.0.1", "ip_range": "172.30.0.128/25"},
                            {"subnet": "fd00:30::/64", "gateway": "fd00:30::1"}]}},
            "v6": {"enable_ipv6": true, "ipam": {"config": [{"subnet": "fd00:31::/64"}]}}
        },
        "volumes": {"data": {}, "cache": {"driver": "local", "driver_opts": {"type": "tmpfs", "device": "tmpfs"},
                                           "labels": {"k": "v"}}},
        "services": {"s": {"image": "i", "volumes": ["data:/d", "undeclared:/u", "/srv:/srv"]}}
    }));
    let n = |net: Value| json!({"networks": {"n": net}});
    bad(
        json!({"networks": {"-n": {}}}),
        "apps.a.networks.-n",
        "is not a network name",
    );
    bad(
        n(json!({"driver": "Bridge"})),
        "apps.a.networks.n.driver",
        "is not a driver name",
    );
    bad(
        n(json!({"driver": "host"})),
        "apps.a.networks.n.driver",
        "use network_mode instead",
    );
    bad(
        n(json!({"labels": {"io.holdfast.app": "b"}})),
        "apps.a.networks.n.labels.io.holdfast.app",
        "holdfast's own",
    );
    bad(
        n(json!({"driver_opts": {"k": "\u{0}"}})),
        "apps.a.networks.n.driver_opts.k",
        "NUL",
    );
    bad(
        n(json!({"ipam": {"driver": "a b"}})),
        "apps.a.networks.n.ipam.driver",
        "is not a driver name",
    );
    bad(
        n(json!({"ipam": {"config": [{"subnet": "172.30.0.0"}]}})),
        "apps.a.networks.n.ipam.config[0].subnet",
        "is not a subnet like",
    );
    bad(
        n(json!({"ipam": {"config": [{"subnet": "172.30.0.0/24", "gateway": "172.31.0.1"}]}})),
        "apps.a.networks.n.ipam.config[0].gateway",
        "is not inside the subnet",
    );
    bad(
        n(json!({"ipam": {"config": [{"subnet": "172.30.0.0/24", "gateway": "fd00::1"}]}})),
        "apps.a.networks.n.ipam.config[0].gateway",
        "is not inside the subnet",
    );
    bad(
        n(json!({"ipam": {"config": [{"subnet": "172.30.0.0/24", "gateway": "x"}]}})),
        "apps.a.networks.n.ipam.config[0].gateway",
        "is not an IPv4 or IPv6 address",
    );
    bad(
        n(json!({"ipam": {"config": [{"subnet": "172.30.0.0/24", "ip_range": "172.30.0.0/16"}]}})),
        "apps.a.networks.n.ipam.config[0].ip_range",
        "is not inside the subnet",
    );
    bad(
        json!({"networks": {"n": {"ipam": {"config": [{"subnet": "172.30.0.0/16"}]}},
                            "m": {"ipam": {"config": [{"subnet": "172.30.5.0/24"}]}}}}),
        "apps.a.networks.n.ipam.config[0].subnet",
        "overlaps the subnet of apps.a.networks.m.ipam.config[0].subnet",
    );
    let v = |name: &str, vol: Value| json!({"volumes": {name: vol}});
    bad(
        v("d", json!({})),
        "apps.a.volumes.d",
        "at least 2 characters",
    );
    bad(
        v("_d", json!({})),
        "apps.a.volumes._d",
        "is not a volume name",
    );
    bad(
        v("data", json!({"driver": "Local"})),
        "apps.a.volumes.data.driver",
        "is not a driver name",
    );
    bad(
        v("data", json!({"labels": {"io.holdfast.x": ""}})),
        "apps.a.volumes.data.labels.io.holdfast.x",
        "holdfast's own",
    );
    bad(
        v("data", json!({"driver_opts": {"o": "a\u{0}"}})),
        "apps.a.volumes.data.driver_opts.o",
        "NUL",
    );
}

#[test]
fn subnets_may_not_overlap_across_apps() {
    let t: Target = serde_json::from_value(json!({"version": 1, "apps": {
        "a": {"release": "1", "networks": {"n": {"ipam": {"config": [{"subnet": "10.5.0.0/16"}]}}}},
        "b": {"release": "1", "networks": {"n": {"ipam": {"config": [{"subnet": "10.5.1.0/24"}]}}}}
    }}))
    .unwrap();
    let (path, reason) = validate(&t).unwrap_err();
    assert_eq!(path, "apps.b.networks.n.ipam.config[0].subnet");
    assert!(reason.contains("apps.a.networks.n"), "{reason}");
}

#[test]
fn service_networks() {
    let app = |svc: Value| {
        json!({
            "networks": {"front": {}, "back": {"ipam": {"config": [
                {"subnet": "fd00:7::/64"}, {"subnet": "172.31.7.0/24"}]}}},
            "services": {"s": svc}
        })
    };
    ok(app(json!({"image": "i"})));
    ok(app(json!({"image": "i", "networks": ["front", "default"]})));
    ok(app(
        json!({"image": "i", "networks": {"back": {"aliases": ["db", "db_1.x"], "ipv4_address": "172.31.7.9"},
                                             "front": null}}),
    ));
    bad(
        app(json!({"image": "i", "networks": ["nope"]})),
        "apps.a.services.s.networks.nope",
        "is not one of app a's networks; declare it under apps.a.networks",
    );
    bad(
        app(json!({"image": "i", "network_mode": "host", "networks": ["front"]})),
        "apps.a.services.s.networks",
        "give networks or network_mode, not both",
    );
    bad(
        app(json!({"image": "i", "networks": {"front": {"aliases": ["-x"]}}})),
        "apps.a.services.s.networks.front.aliases[0]",
        "is not a DNS name",
    );
    bad(
        app(json!({"image": "i", "networks": {"front": {"ipv4_address": "10.0.0.2"}}})),
        "apps.a.services.s.networks.front.ipv4_address",
        "needs an IPv4 subnet of the network's own",
    );
    bad(
        app(json!({"image": "i", "networks": {"default": {"ipv4_address": "10.0.0.2"}}})),
        "apps.a.services.s.networks.default.ipv4_address",
        "needs an IPv4 subnet",
    );
    bad(
        app(json!({"image": "i", "networks": {"back": {"ipv4_address": "172.31.8.2"}}})),
        "apps.a.services.s.networks.back.ipv4_address",
        "is not inside a subnet of network back",
    );
    bad(
        app(json!({"image": "i", "networks": {"back": {"ipv4_address": "fd00:7::2"}}})),
        "apps.a.services.s.networks.back.ipv4_address",
        "is not an IPv4 address",
    );
}

#[test]
fn shared_namespaces_and_dependencies() {
    let two = |s: Value, db: Value| json!({"services": {"s": s, "db": db}});
    let img = json!({"image": "i"});
    ok(two(
        json!({"image": "i", "network_mode": "service:db", "pid": "service:db", "ipc": "service:db"}),
        json!({"image": "i", "ipc": "shareable"}),
    ));
    ok(two(
        json!({"image": "i", "network_mode": "container:other", "ipc": "container:x1"}),
        img.clone(),
    ));
    bad(
        two(
            json!({"image": "i", "network_mode": "service:nope"}),
            img.clone(),
        ),
        "apps.a.services.s.network_mode",
        "nope is not a service of app a",
    );
    bad(
        two(json!({"image": "i", "pid": "service:s"}), img.clone()),
        "apps.a.services.s.pid",
        "cannot share its own namespace",
    );
    bad(
        two(json!({"image": "i", "ipc": "service:db"}), img.clone()),
        "apps.a.services.s.ipc",
        "db must set ipc: shareable",
    );
    ok(two(
        json!({"image": "i", "ipc": "service:db"}),
        json!({"image": "i", "ipc": "host"}),
    ));
    // Sharing a namespace orders starts like depends_on: cycles through it
    // are refused too.
    bad(
        two(
            json!({"image": "i", "network_mode": "service:db"}),
            json!({"image": "i", "depends_on": ["s"]}),
        ),
        "apps.a.services.db.depends_on",
        "dependency cycle (through depends_on, or a service: namespace",
    );
    bad(
        two(
            json!({"image": "i", "depends_on": {"nope": {}}}),
            img.clone(),
        ),
        "apps.a.services.s.depends_on.nope",
        "nope is not a service of app a",
    );
    bad(
        two(json!({"image": "i", "depends_on": ["s"]}), img.clone()),
        "apps.a.services.s.depends_on.s",
        "cannot depend on itself",
    );
    ok(two(
        json!({"image": "i", "depends_on": {"db": {"condition": "service_healthy"}}}),
        json!({"image": "i", "healthcheck": {"test": ["CMD", "true"]}}),
    ));
    // The image may bring its own healthcheck.
    ok(two(
        json!({"image": "i", "depends_on": {"db": {"condition": "service_healthy"}}}),
        img.clone(),
    ));
    ok(two(
        json!({"image": "i", "depends_on": {"db": {"condition": "service_completed_successfully"}}}),
        img.clone(),
    ));
    for off in [json!({"disable": true}), json!({"test": ["NONE"]})] {
        bad(
            two(
                json!({"image": "i", "depends_on": {"db": {"condition": "service_healthy"}}}),
                json!({"image": "i", "healthcheck": off}),
            ),
            "apps.a.services.s.depends_on.db",
            "healthcheck is disabled, so it never becomes healthy",
        );
    }
}

#[test]
fn app_names_begin_engine_names() {
    let t: Target = serde_json::from_value(json!({"version": 1, "apps": {
        "_a": {"release": "1", "services": {"s": {"image": "i"}}}
    }}))
    .unwrap();
    let (path, reason) = validate(&t).unwrap_err();
    assert_eq!(path, "apps._a");
    assert!(
        reason.contains("beginning with a letter or digit"),
        "{reason}"
    );
    // An empty app is only a name.
    let t: Target =
        serde_json::from_value(json!({"version": 1, "apps": {"_a": {"release": "1"}}})).unwrap();
    validate(&t).unwrap();
}
