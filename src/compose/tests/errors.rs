//! Each class of refusal, with the file, line, column and path.

use super::{err, err_with, service_yaml, FakeHost};

/// The error for service `s` with `lines`.
fn service_err(lines: &str) -> String {
    err(&service_yaml(lines))
}

#[test]
fn unknown_keys_name_their_path_and_a_near_key() {
    assert_eq!(
        service_err("restrat: always"),
        "compose.yml:4:5: services.s.restrat: unknown key \"restrat\"; did you mean \"restart\"?"
    );
    assert_eq!(
        err("servics:\n  s:\n    image: i\n"),
        "compose.yml:1:1: servics: unknown key \"servics\"; did you mean \"services\"?"
    );
    let e = service_err("healthcheck:\n  tets: [CMD, x]");
    assert!(e.starts_with("compose.yml:5:7: services.s.healthcheck.tets: unknown key \"tets\"; did you mean \"test\"?"), "{e}");
    let e = service_err("zzz: 1");
    assert_eq!(e, "compose.yml:4:5: services.s.zzz: unknown key \"zzz\"");
    let e = err("services:\n  s:\n    image: i\nnetworks:\n  n:\n    drivr: x\n");
    assert!(
        e.starts_with("compose.yml:6:5: networks.n.drivr: unknown key"),
        "{e}"
    );
}

#[test]
fn build_says_what_to_do() {
    assert_eq!(
        service_err("build: ."),
        "compose.yml:4:5: services.s.build: holdfast runs images; build and push them first, then name the image in `image`"
    );
    let e = err("services:\n  s:\n    command: x\n");
    assert_eq!(e, "compose.yml:2:3: services.s: no \"image\": holdfast runs images (build and push them first)");
}

#[test]
fn unsupported_options_say_so() {
    for (lines, key, line) in [
        ("deploy:\n  replicas: 2", "deploy", 4),
        ("secrets: [s]", "secrets", 4),
        ("configs: [c]", "configs", 4),
        ("profiles: [debug]", "profiles", 4),
        ("extends: {service: x}", "extends", 4),
        ("links: [db]", "links", 4),
        ("container_name: x", "container_name", 4),
        ("tty: true", "tty", 4),
    ] {
        let e = service_err(lines);
        assert_eq!(
            e,
            format!(
                "compose.yml:{line}:5: services.s.{key}: \"{key}\" is not supported by holdfast"
            ),
        );
    }
    let e = err("services:\n  s:\n    image: i\nsecrets:\n  s: {file: x}\n");
    assert_eq!(
        e,
        "compose.yml:4:1: secrets: \"secrets\" is not supported by holdfast"
    );
    let e = service_err("healthcheck:\n  start_interval: 5s");
    assert!(
        e.contains(
            "5:7: services.s.healthcheck.start_interval: \"start_interval\" is not supported"
        ),
        "{e}"
    );
    let e = service_err("depends_on:\n  d:\n    required: false");
    assert!(
        e.contains("optional dependency (required: false) is not supported"),
        "{e}"
    );
}

#[test]
fn external_and_named_networks_and_volumes_are_refused() {
    let e = err("services:\n  s:\n    image: i\nnetworks:\n  n:\n    external: true\n");
    assert_eq!(e, "compose.yml:6:5: networks.n.external: an external network is not supported by holdfast: it creates each network of an app itself, named <app>_<name>");
    let e = err("services:\n  s:\n    image: i\nvolumes:\n  v:\n    name: shared\n");
    assert!(e.starts_with("compose.yml:6:5: volumes.v.name: a volume name of its own is not supported by holdfast"), "{e}");
    let e = err("services:\n  s:\n    image: i\nvolumes:\n  v:\n    external: true\n");
    assert!(e.contains("an external volume is not supported"), "{e}");
}

#[test]
fn shapes_holdfast_cannot_run_are_refused_with_the_reason() {
    let cases = [
        ("restart: on-failure:3", "4:14: services.s.restart: \"on-failure:3\": a retry limit is not supported by holdfast"),
        ("ports: [\"80\"]", "4:13: services.s.ports[0]: container port 80 is published on a random host port"),
        ("ports: [80]", "4:13: services.s.ports[0]: container port 80 is published on a random host port"),
        ("ports: [\"127.0.0.1::80\"]", "4:13: services.s.ports[0]: container port 80 is published on a random host port"),
        ("ports: [\"8000-8010:80\"]", "4:13: services.s.ports[0]: host ports 8000-8010 and container ports 80 are ranges of different lengths"),
        ("ports: [\"1:2/sctp\"]", "protocol \"sctp\" is not supported"),
        ("ports:\n  - target: 80", "5:9: services.s.ports[0]: container port 80 is published on a random host port"),
        ("volumes: [/data]", "4:15: services.s.volumes[0]: \"/data\" is an anonymous volume, not supported by holdfast"),
        ("volumes: [\"nope:/data\"]", "4:15: services.s.volumes[0]: volume \"nope\" is not declared under the top-level volumes"),
        ("volumes: [\"/a:/b:z\"]", "volume option \"z\" is not supported by holdfast"),
        ("volumes:\n  - type: npipe\n    target: /x", "5:15: services.s.volumes[0].type: volume type \"npipe\" is not supported"),
        ("volumes:\n  - type: bind\n    source: rel\n    target: /x", "6:17: services.s.volumes[0].source: \"rel\" is not a host path"),
        ("volumes:\n  - type: volume\n    target: /x", "anonymous volumes are not supported by holdfast"),
        ("networks: [back]", "4:16: services.s.networks[0]: network \"back\" is not declared under the top-level networks"),
        ("network_mode: host\nnetworks: [default]", "5:5: services.s.networks: networks and network_mode cannot be combined"),
        ("command: echo a; echo b", "4:14: services.s.command: ';' is shell syntax"),
        ("privileged: maybe", "4:17: services.s.privileged: expected true or false, not \"maybe\""),
        ("cpu_shares: lots", "4:17: services.s.cpu_shares: expected a whole number, not \"lots\""),
        ("environment: 3", "4:18: services.s.environment: expected a mapping or a list of KEY=VALUE, not a number"),
        ("environment: [A=1, A=2]", "4:24: services.s.environment.A: \"A\" is given twice"),
        ("cap_add: NET_ADMIN", "4:14: services.s.cap_add: expected a list, not a string"),
        ("hostname: [a]", "4:15: services.s.hostname: expected a single value, not a list"),
        ("env_file: nope.env", "4:15: services.s.env_file: /srv/app/nope.env does not exist"),
    ];
    for (lines, want) in cases {
        let e = service_err(lines);
        assert!(e.contains(want), "{lines}: {want:?} not in {e:?}");
        assert!(e.starts_with("compose.yml:"), "{e}");
    }
    let e = err("services:\n  s:\n    image: i\n  bad name:\n    image: i\n");
    assert!(
        e.starts_with(
            "compose.yml:4:3: services.bad name: service name: name \"bad name\" contains ' '"
        ),
        "{e}"
    );
    let e = err("name: x\n");
    assert_eq!(e, "compose.yml:1:1: (top): no \"services\": a compose file for holdfast names at least its services");
    let e = err("");
    assert_eq!(
        e,
        "compose.yml: empty: a compose file needs at least `services`"
    );
    let host = FakeHost::default().file("/srv/app/e.env", "A='x\n");
    let e = err_with(&service_yaml("env_file: e.env"), &host);
    assert_eq!(
        e,
        "compose.yml:4:15: services.s.env_file: /srv/app/e.env:1:3: a ' without its closing '"
    );
}

/// What the target's own checks refuse comes back at its place in the file.
#[test]
fn target_validation_errors_point_into_the_file() {
    let cases = [
        (
            "ports: [\"70000:80\"]",
            "compose.yml:4:13: services.s.ports[0]: \"70000:80\" is not",
        ),
        (
            "ports:\n  - \"1:2\"\n  - \"3:4\"\n  - 127.0.0.300:5:6",
            "compose.yml:7:9: services.s.ports[2]: ",
        ),
        (
            "volumes: [\"/etc/../x:/y\"]",
            "compose.yml:4:15: services.s.volumes[0]: ",
        ),
        (
            "devices: [/etc/shadow]",
            "compose.yml:4:15: services.s.devices[0]: \"/etc/shadow\": host path",
        ),
        (
            "stop_signal: SIGFOO",
            "compose.yml:4:18: services.s.stop_signal: \"SIGFOO\" is not a Linux signal",
        ),
        ("user: \"0:0;x\"", "compose.yml:4:11: services.s.user: "),
        (
            "environment:\n  X: \"a\\0b\"",
            "compose.yml:5:10: services.s.environment.X: \"a\\0b\" contains a NUL",
        ),
        (
            "mem_limit: 12q",
            "compose.yml:4:16: services.s.mem_limit: \"12q\" is not a size",
        ),
        (
            "cpus: 0",
            "compose.yml:4:11: services.s.cpus: 0 is not a number of CPUs",
        ),
        (
            "stop_grace_period: soon",
            "compose.yml:4:24: services.s.stop_grace_period: \"soon\" is not a duration",
        ),
        (
            "restart: sometimes",
            "compose.yml:4:14: services.s.restart: unknown variant `sometimes`",
        ),
        (
            "depends_on: [ghost]",
            "compose.yml:4:17: services.s.depends_on.ghost: ghost is not a service of app web",
        ),
        (
            "depends_on:\n  s2:\n    condition: service_happy",
            "compose.yml:6:20: services.s.depends_on.s2.condition: unknown variant",
        ),
        (
            "healthcheck:\n  interval: 5",
            "compose.yml:5:17: services.s.healthcheck.interval: \"5\" is not a duration",
        ),
        (
            "labels:\n  io.balena.update.strategy: yolo",
            "compose.yml:5:34: services.s.labels.io.balena.update.strategy: \"yolo\" is not one of",
        ),
        (
            "tmpfs: [\"relative\"]",
            "compose.yml:4:13: services.s.tmpfs[0]: ",
        ),
    ];
    for (lines, want) in cases {
        let e = service_err(lines);
        assert!(
            e.starts_with(want),
            "{lines}:\n{want:?} not at the start of\n{e:?}"
        );
    }
    // Both directions of a dependency cycle are in the file.
    let e = err("services:\n  a:\n    image: i\n    depends_on: [b]\n  b:\n    image: i\n    depends_on: [a]\n");
    assert!(
        e.starts_with("compose.yml:4:17: services.a.depends_on: dependency cycle"),
        "{e}"
    );
    // A bad --release is not in the file: no position.
    let src = super::super::Source {
        name: "c.yml",
        bytes: b"services: {s: {image: i}}",
        dir: std::path::Path::new("/"),
    };
    let app = crate::names::AppName::new("web").unwrap();
    let e = super::super::load(&src, &app, Some(" "), &FakeHost::default())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "c.yml: --release: must not be empty");
}
