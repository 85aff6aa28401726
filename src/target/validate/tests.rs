use super::service::{check_network_mode, validate_service};
use super::values::*;
use crate::target::ServiceSpec;

fn all_ok(check: fn(&str) -> Result<(), String>, good: &[&str]) {
    for v in good {
        assert_eq!(check(v), Ok(()), "{v:?}");
    }
}

/// Each bad value is refused with a reason containing `want`.
fn all_bad(check: fn(&str) -> Result<(), String>, bad: &[(&str, &str)]) {
    for (v, want) in bad {
        let e = check(v).expect_err(v);
        assert!(e.contains(want), "{v:?}: {want:?} not in {e:?}");
    }
}

#[test]
fn volumes() {
    let check = |v: &str| check_volume(v).map(drop);
    all_ok(
        check,
        &[
            "data:/data",
            "db-data_1.x:/var/lib/db:ro",
            "/srv/app:/srv:rw",
            "/:/host:ro",
            "/a/./b//:/c/",
        ],
    );
    all_bad(
        check,
        &[
            (
                "relative/path:/data",
                "neither an absolute host path nor a volume name",
            ),
            (
                "../../etc:/data",
                "neither an absolute host path nor a volume name",
            ),
            ("./x:/data", "neither"),
            ("_x:/data", "neither"),
            (
                "/srv/../etc:/data",
                "host path \"/srv/../etc\" has a '..' component",
            ),
            ("a:/data", "too short; the engine needs at least 2"),
            ("data:rel", "container path \"rel\" is not an absolute path"),
            ("data:/x/../y", "has a '..' component"),
            ("data:/", "cannot be '/' itself"),
            ("data:/data:z", "the mode is ro or rw, not \"z\""),
            ("data", "is not source:/container/path[:ro|rw]"),
            ("a:b:c:d", "is not source:/container/path[:ro|rw]"),
            (":/data", "neither"),
        ],
    );
}

#[test]
fn tmpfs() {
    let check = |v: &str| check_tmpfs(v).map(drop);
    all_ok(
        check,
        &[
            "/run",
            "/run:size=64m,mode=1777",
            "/t:noexec,nosuid,uid=1000",
        ],
    );
    all_bad(
        check,
        &[
            ("run", "is not an absolute path"),
            ("/run/../etc", "'..'"),
            ("/run:size=1.5g", "may contain only a-z, 0-9"),
            ("/run:SIZE=1m", "may contain only"),
            ("/run:size=1m;x", "may contain only"),
        ],
    );
}

#[test]
fn devices() {
    all_ok(
        check_device,
        &[
            "/dev/ttyS0",
            "/dev/ttyS0:/dev/ttyUSB0",
            "/dev/i2c-1:/dev/i2c-1:r",
            "/dev/dri/card0:/dev/x:mwr",
        ],
    );
    all_bad(
        check_device,
        &[
            ("/etc/shadow", "is not a device under /dev/"),
            ("/dev", "is not a device under /dev/"),
            ("/dev/", "is not a device under /dev/"),
            ("/dev/../etc/shadow", "'..'"),
            ("dev/ttyS0", "is not an absolute path"),
            ("/dev/ttyS0:rw", "repeat the path: /dev/ttyS0:/dev/ttyS0:rw"),
            ("/dev/ttyS0::rw", "container path \"\""),
            ("/dev/x:/dev/x:", "permissions \"\""),
            ("/dev/x:/dev/x:rwx", "permissions \"rwx\""),
            ("/dev/x:/dev/x:rr", "each at most once"),
            ("/dev/x:/dev/x:r:w", "is not /dev/host-path"),
        ],
    );
}

#[test]
fn network_modes() {
    all_ok(
        check_network_mode,
        &[
            "bridge",
            "host",
            "none",
            "my_net.1-a",
            "default",
            "container:abc",
            "container:app1_main_0123",
            "service:db",
        ],
    );
    all_bad(
        check_network_mode,
        &[
            ("container:", "is not a container name"),
            ("container:a", "is not a container name"),
            ("container:-x", "is not a container name"),
            ("service:", "is not a service name"),
            ("service:../x", "is not a service name"),
            ("", "is not bridge, host, none, a network name"),
            ("-x", "is not bridge"),
            ("a b", "is not bridge"),
            ("ns:/proc/1/ns/net", "is not one of bridge, host, none, a network name, container:<name> or service:<service of the app>"),
        ],
    );
}

#[test]
fn users() {
    all_ok(
        check_user,
        &[
            "0",
            "1000:1000",
            "root",
            "_apt",
            "www-data:www-data",
            "app.user:0",
            "machine$",
            &"a".repeat(32),
        ],
    );
    let bad: Vec<(&str, &str)> = [
        "0:0;rm -rf /",
        "",
        ":",
        "1000:",
        ":1000",
        "Root",
        "1user",
        "a b",
        "a$b",
        "$",
        "4294967296",
        "-1",
        "a:b:c",
    ]
    .into_iter()
    .map(|v| (v, "is not user[:group]"))
    .collect();
    all_bad(check_user, &bad);
    assert!(check_user(&"a".repeat(33)).is_err());
}

#[test]
fn stop_signals() {
    all_ok(
        check_signal,
        &[
            "SIGTERM",
            "TERM",
            "sigterm",
            "SIGKILL",
            "HUP",
            "SIGUSR1",
            "SIGWINCH",
            "SIGPWR",
            "SIGIOT",
            "POLL",
            "SIGCLD",
            "SIGRTMIN",
            "SIGRTMIN+1",
            "RTMIN+15",
            "SIGRTMAX-14",
            "SIGRTMAX-1",
            "SIGRTMAX",
            "1",
            "15",
            "64",
        ],
    );
    let bad: Vec<(&str, &str)> = [
        "SIGFOO",
        "",
        "SIG",
        "SIGSIGTERM",
        "SIGRTMIN+16",
        "SIGRTMIN+0",
        "SIGRTMIN+01",
        "SIGRTMAX-15",
        "SIGRTMAX+1",
        "RTMIN-1",
        "SIGTERM ",
        "-9",
        "+9",
    ]
    .into_iter()
    .map(|v| (v, "is not a Linux signal"))
    .chain([
        ("0", "numbers are 1-64"),
        ("65", "numbers are 1-64"),
        ("300", "1-64"),
    ])
    .collect();
    all_bad(check_signal, &bad);
}

#[test]
fn ports() {
    for good in [
        "8080:80",
        "127.0.0.1:8080:80/tcp",
        "::1:53:53/udp",
        "0.0.0.0:1:2",
    ] {
        parse_port(good).unwrap();
    }
    assert_eq!(
        parse_port("::1:53:53/udp"),
        Ok((Some("::1".into()), 53, 53, "udp".into()))
    );
    for bad in [
        "80",
        "0:80",
        "80800:80",
        "8080:80/sctp",
        "localhost:8080:80",
        "[::1]:8080:80",
    ] {
        parse_port(bad).unwrap_err();
    }
}

fn service(v: serde_json::Value) -> ServiceSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_mount_point_is_used_once() {
    let s = |volumes: &[&str], tmpfs: &[&str]| {
        validate_service(&service(
            serde_json::json!({"image": "i", "volumes": volumes, "tmpfs": tmpfs}),
        ))
    };
    s(
        &["a1:/data", "/srv:/srv", "b1:/data/sub"],
        &["/run", "/tmp"],
    )
    .unwrap();
    let e = s(&["a1:/data", "b1:/data/"], &[]).unwrap_err();
    assert_eq!(e.0, "volumes[1]");
    assert!(
        e.1.contains("is already a mount point (volumes[0])"),
        "{e:?}"
    );
    let e = s(&["a1:/run"], &["/run:size=1m"]).unwrap_err();
    assert_eq!(e.0, "tmpfs[0]");
    let e = s(&[], &["/run", "/run"]).unwrap_err();
    assert_eq!(e.0, "tmpfs[1]");
    let e = s(&["a1:/tmp/balena"], &[]).unwrap_err();
    assert!(
        e.1.contains("where holdfast mounts the service's lock directory"),
        "{e:?}"
    );
    let e = s(&[], &["/tmp/resin:size=1m"]).unwrap_err();
    assert!(
        e.1.contains("where holdfast mounts the service's lock directory"),
        "{e:?}"
    );
}

#[test]
fn service_fields_carry_their_path() {
    let bad = |v: serde_json::Value| validate_service(&service(v)).unwrap_err();
    let cases = [
        (
            serde_json::json!({"image": "i", "working_dir": "app"}),
            "working_dir",
        ),
        (
            serde_json::json!({"image": "i", "working_dir": "/a/../b"}),
            "working_dir",
        ),
        (
            serde_json::json!({"image": "i", "environment": {"A=B": "x"}}),
            "environment.A=B",
        ),
        (
            serde_json::json!({"image": "i", "environment": {"": "x"}}),
            "environment.",
        ),
        (
            serde_json::json!({"image": "i", "devices": ["/dev/x", "/etc/x"]}),
            "devices[1]",
        ),
        (
            serde_json::json!({"image": "i", "ports": ["1:2", "x"]}),
            "ports[1]",
        ),
        (serde_json::json!({"image": "i i"}), "image"),
    ];
    for (v, path) in cases {
        assert_eq!(bad(v).0, path);
    }
    validate_service(&service(serde_json::json!({
        "image": "registry.local/a:1", "working_dir": "/srv", "user": "1000",
        "stop_signal": "SIGINT", "network_mode": "host", "devices": ["/dev/ttyS0"],
        "environment": {"K": ""}, "labels": {"": ""}
    })))
    .unwrap();
}
