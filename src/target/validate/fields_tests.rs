//! The service fields of issue 10: each value the engine (or runc, at
//! start) refuses, checked on a real dockerd 20.10 where the rule came
//! from one.

use super::fields::*;
use super::logging::check_logging;
use super::net::{check_alias, check_search_domain, check_uts_name, Cidr};
use super::service::validate_service;
use crate::target::{Healthcheck, Logging, ServiceSpec, Ulimit};

fn all_ok(check: impl Fn(&str) -> Result<(), String>, good: &[&str]) {
    for v in good {
        assert_eq!(check(v), Ok(()), "{v:?}");
    }
}

/// Each bad value is refused with a reason containing `want`.
fn all_bad(check: impl Fn(&str) -> Result<(), String>, bad: &[(&str, &str)]) {
    for (v, want) in bad {
        let e = check(v).expect_err(v);
        assert!(e.contains(want), "{v:?}: {want:?} not in {e:?}");
    }
}

fn service(v: serde_json::Value) -> ServiceSpec {
    serde_json::from_value(v).unwrap()
}

/// The path and reason a service with `fields` (besides its image) gets.
fn refused(fields: serde_json::Value) -> (String, String) {
    let mut v = serde_json::json!({"image": "i"});
    v.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    validate_service(&service(v)).unwrap_err()
}

#[test]
fn capabilities() {
    all_ok(
        check_capability,
        &[
            "ALL",
            "all",
            "NET_ADMIN",
            "CAP_NET_ADMIN",
            "net_admin",
            "cap_sys_time",
            "CHECKPOINT_RESTORE",
        ],
    );
    all_bad(
        check_capability,
        &[
            ("CAP_FOO", "is not a Linux capability"),
            ("", "ALL or a name such as NET_ADMIN"),
            ("CAP_", "is not"),
            ("CAP_ALL", "is not"),
            ("NET ADMIN", "is not"),
        ],
    );
}

#[test]
fn sysctls() {
    let plain = |k: &str| check_sysctl(k, false, false);
    all_ok(
        plain,
        &[
            "net.ipv4.ip_forward",
            "net/ipv4/ip_forward",
            "net.ipv4.conf.all.rp_filter",
            "kernel.shmmax",
            "kernel.msgmnb",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ],
    );
    all_bad(
        plain,
        &[
            (
                "vm.swappiness",
                "is not in a namespace of the container's own",
            ),
            ("kernel.hostname", "set `hostname` instead"),
            ("kernel.pid_max", "is not in a namespace"),
            ("Net.ipv4.x", "is not a sysctl name"),
            ("", "is not a sysctl name"),
            (".net.x", "is not a sysctl name"),
            ("net.ipv4 x", "is not a sysctl name"),
        ],
    );
    assert!(check_sysctl("net.ipv4.ip_forward", true, false)
        .unwrap_err()
        .contains("`network_mode: host`"));
    assert!(check_sysctl("kernel.shmmax", false, true)
        .unwrap_err()
        .contains("`ipc: host`"));
    assert_eq!(check_sysctl("kernel.shmmax", true, false), Ok(()));
    assert_eq!(check_sysctl("net.core.somaxconn", false, true), Ok(()));
    let (path, _) = refused(serde_json::json!({"sysctls": {"net.core.somaxconn": "1\u{0}"}}));
    assert_eq!(path, "sysctls.net.core.somaxconn");
}

#[test]
fn extra_hosts_dns_and_names() {
    all_ok(
        check_extra_host,
        &[
            "db:10.0.0.2",
            "db.local:fd00::2",
            "my_host-1:::1",
            "gw:host-gateway",
        ],
    );
    all_bad(
        check_extra_host,
        &[
            ("db=10.0.0.2", "is not host:ip"),
            ("db", "is not host:ip"),
            (":10.0.0.2", "is not a DNS name"),
            ("a b:10.0.0.2", "is not a DNS name"),
            ("db:1.2.3", "is not an IPv4 or IPv6 address"),
            ("db:[::1]", "no brackets"),
            ("db:gateway", "is not an IPv4"),
        ],
    );
    all_ok(
        check_search_domain,
        &["example.org", "example.org.", "a", ".", "x-1.y"],
    );
    all_bad(
        check_search_domain,
        &[
            ("-x.org", "is not a domain name"),
            ("a..b", "is not a domain name"),
            ("a_b.org", "is not a domain name"),
            ("", "is not a domain name"),
        ],
    );
    all_ok(
        check_uts_name,
        &["box", "box-1", "box.example.org", &"a".repeat(63)],
    );
    all_bad(
        check_uts_name,
        &[
            ("a_b", "is not a host name"),
            ("-a", "is not a host name"),
            ("a.", "is not a host name"),
            ("", "is not a host name"),
            (&"a".repeat(64), "is not a host name"),
            (
                &format!("{}.{}", "a".repeat(40), "b".repeat(30)),
                "at most 64",
            ),
        ],
    );
    all_ok(check_alias, &["db", "db_1", "db.internal", "x-y"]);
    all_bad(
        check_alias,
        &[("-db", "is not a DNS name"), ("a b", "is not")],
    );
    let (path, reason) = refused(serde_json::json!({"dns": ["1.1.1.1", "dns.google"]}));
    assert_eq!(path, "dns[1]");
    assert!(
        reason.contains("is not an IPv4 or IPv6 address"),
        "{reason}"
    );
    let (path, _) = refused(serde_json::json!({"dns_search": ["a..b"]}));
    assert_eq!(path, "dns_search[0]");
    let (path, _) = refused(serde_json::json!({"domainname": "a_b"}));
    assert_eq!(path, "domainname");
}

#[test]
fn memory_and_cpu() {
    let ok = |v: serde_json::Value| {
        let mut s = serde_json::json!({"image": "i"});
        s.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        validate_service(&service(s)).unwrap()
    };
    ok(serde_json::json!({"mem_limit": "6m", "memswap_limit": "6m"}));
    ok(
        serde_json::json!({"mem_limit": "512m", "memswap_limit": "1g", "cpus": 0.01,
                          "cpu_shares": 2, "cpuset": "0-1,3", "pids_limit": -1}),
    );
    ok(serde_json::json!({"mem_limit": 0, "cpu_shares": 262144, "pids_limit": 1}));
    let cases = [
        (
            serde_json::json!({"mem_limit": "5m"}),
            "mem_limit",
            "below the engine's minimum of 6 MiB",
        ),
        (
            serde_json::json!({"memswap_limit": "1g"}),
            "memswap_limit",
            "needs mem_limit too",
        ),
        (
            serde_json::json!({"mem_limit": "1g", "memswap_limit": "512m"}),
            "memswap_limit",
            "at least mem_limit",
        ),
        (serde_json::json!({"cpus": 0.001}), "cpus", "below 0.01"),
        (
            serde_json::json!({"cpu_shares": 262145}),
            "cpu_shares",
            "from 2 to 262144",
        ),
        (
            serde_json::json!({"cpu_shares": 0}),
            "cpu_shares",
            "from 2 to 262144",
        ),
        (
            serde_json::json!({"pids_limit": 0}),
            "pids_limit",
            "-1 (unlimited) or a number from 1",
        ),
        (
            serde_json::json!({"pids_limit": -5}),
            "pids_limit",
            "-1 (unlimited)",
        ),
        (
            serde_json::json!({"oom_score_adj": 1001}),
            "oom_score_adj",
            "from -1000 to 1000",
        ),
        (
            serde_json::json!({"oom_score_adj": -1001}),
            "oom_score_adj",
            "from -1000 to 1000",
        ),
        (
            serde_json::json!({"cpuset": "0-"}),
            "cpuset",
            "is not a CPU list",
        ),
    ];
    for (v, path, want) in cases {
        let (p, r) = refused(v);
        assert_eq!(p, path);
        assert!(r.contains(want), "{want:?} not in {r:?}");
    }
    all_ok(check_cpuset, &["0", "0-3", "0,2", "0-1,3,5-7", "1-1"]);
    for bad in ["", "0-", "-1", "1-0", "0,,1", "a", "0 -1", "0-1-2", "+1"] {
        assert!(check_cpuset(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ulimits() {
    let u = |soft, hard| Ulimit { soft, hard };
    assert_eq!(check_ulimit("nofile", &u(1024, 4096)), Ok(()));
    assert_eq!(check_ulimit("core", &u(-1, -1)), Ok(()));
    assert_eq!(check_ulimit("core", &u(0, -1)), Ok(()));
    assert_eq!(check_ulimit("rtprio", &u(0, 0)), Ok(()));
    let bad = [
        (
            "as",
            u(1, 1),
            "is not a ulimit the engine sets: one of core, cpu",
        ),
        ("NOFILE", u(1, 1), "is not a ulimit"),
        (
            "nofile",
            u(2000, 1000),
            "the soft limit 2000 is above the hard limit 1000",
        ),
        (
            "nofile",
            u(-1, 10),
            "the soft limit -1 is above the hard limit 10",
        ),
        ("nofile", u(-2, 10), "-1 (unlimited) or a number from 0"),
    ];
    for (name, limit, want) in bad {
        let e = check_ulimit(name, &limit).unwrap_err();
        assert!(e.contains(want), "{name}: {want:?} not in {e:?}");
    }
    let (path, _) = refused(serde_json::json!({"ulimits": {"nofile": 10, "bad": 1}}));
    assert_eq!(path, "ulimits.bad");
}

#[test]
fn security_options_and_groups() {
    all_ok(
        check_security_opt,
        &[
            "no-new-privileges",
            "no-new-privileges=true",
            "no-new-privileges:false",
            "no-new-privileges=1",
            "apparmor=unconfined",
            "apparmor:docker-default",
            "seccomp=unconfined",
            r#"seccomp={"defaultAction": "SCMP_ACT_ALLOW"}"#,
            "label=disable",
            "label=type:svirt_apache_t",
            "label:level:s0:c100,c200",
        ],
    );
    all_bad(
        check_security_opt,
        &[
            ("foo=bar", "is not a security option"),
            ("no-new-privileges=yes", "is not a security option"),
            ("seccomp=/etc/seccomp.json", "seccomp={profile JSON}"),
            ("seccomp={broken", "is not a security option"),
            ("label=foo", "label=user|role|type|level|filetype:VALUE"),
            ("label=type:", "is not"),
            ("apparmor=", "is not"),
            ("disable", "is not"),
            ("", "is not"),
        ],
    );
    all_ok(check_group, &["audio", "1000", "_x", "dialout"]);
    all_bad(
        check_group,
        &[
            ("Audio", "is not a group"),
            ("", "is not a group"),
            ("a b", "is not"),
            ("99999999999", "is not"),
        ],
    );
}

#[test]
fn ipc_and_pid() {
    all_ok(
        check_ipc,
        &[
            "private",
            "shareable",
            "host",
            "none",
            "service:db",
            "container:other",
        ],
    );
    all_bad(
        check_ipc,
        &[
            ("foo", "is not one of private, shareable, host, none, container:<name> or service:<service of the app>"),
            ("container:", "is not a container name"),
            ("service:a/b", "is not a service name"),
            ("shared", "is not one of"),
        ],
    );
    all_ok(check_pid, &["host", "service:db", "container:other"]);
    all_bad(
        check_pid,
        &[
            ("private", "is not one of host, container:<name>"),
            ("", "is not one of"),
        ],
    );
}

#[test]
fn logging() {
    let l = |driver: Option<&str>, opts: &[(&str, &str)]| Logging {
        driver: driver.map(str::to_owned),
        options: opts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    for good in [
        l(
            Some("json-file"),
            &[("max-size", "10m"), ("max-file", "3"), ("compress", "true")],
        ),
        l(
            Some("json-file"),
            &[
                ("max-size", "1 MB"),
                ("tag", "{{.Name}}"),
                ("labels", "a,b"),
            ],
        ),
        l(
            Some("json-file"),
            &[("mode", "non-blocking"), ("max-buffer-size", "4m")],
        ),
        l(
            Some("json-file"),
            &[("cache-disabled", "true"), ("max-file", "+2")],
        ),
        l(
            Some("local"),
            &[("max-size", "0"), ("max-file", "1"), ("compress", "false")],
        ),
        l(Some("local"), &[("max-file", "5")]),
        l(Some("journald"), &[("tag", "x")]),
        l(Some("syslog"), &[("syslog-address", "udp://1.2.3.4:514")]),
        l(Some("none"), &[]),
        l(None, &[("max-size", "1m")]),
    ] {
        assert_eq!(check_logging(&good), Ok(()), "{good:?}");
    }
    let bad = [
        (l(Some("Json"), &[]), "driver", "is not a log driver name"),
        (l(Some(""), &[]), "driver", "is not a log driver name"),
        (l(Some("grafana/loki:1"), &[]), "driver", "a plugin's alias"),
        (
            l(Some("json-file"), &[("foo", "bar")]),
            "options.foo",
            "has no option \"foo\"",
        ),
        (
            l(Some("local"), &[("tag", "x")]),
            "options.tag",
            "the local log driver has no option",
        ),
        (
            l(Some("json-file"), &[("max-size", "lots")]),
            "options.max-size",
            "is not a size",
        ),
        (
            l(Some("json-file"), &[("max-size", "0")]),
            "options.max-size",
            "above 0",
        ),
        (
            l(Some("json-file"), &[("max-size", "-1")]),
            "options.max-size",
            "is not a size",
        ),
        (
            l(Some("json-file"), &[("max-file", "0")]),
            "options.max-file",
            "1 or more",
        ),
        (
            l(Some("json-file"), &[("compress", "x")]),
            "options.compress",
            "is not true or false",
        ),
        (
            l(Some("json-file"), &[("compress", "true")]),
            "options.compress",
            "needs max-file of 2 or more and max-size",
        ),
        (
            l(Some("local"), &[("max-file", "1")]),
            "options.compress",
            "needs compress false",
        ),
        (
            l(Some("json-file"), &[("mode", "fast")]),
            "options.mode",
            "is not blocking or non-blocking",
        ),
        (
            l(Some("json-file"), &[("max-buffer-size", "4m")]),
            "options.max-buffer-size",
            "only works with mode non-blocking",
        ),
        (
            l(
                Some("syslog"),
                &[("mode", "non-blocking"), ("max-buffer-size", "x")],
            ),
            "options.max-buffer-size",
            "is not a size",
        ),
        (
            l(Some("syslog"), &[("k", "v\u{0}")]),
            "options.k",
            "contains a NUL",
        ),
    ];
    for (v, path, want) in bad {
        let (p, r) = check_logging(&v).unwrap_err();
        assert_eq!(p, path, "{v:?}");
        assert!(r.contains(want), "{want:?} not in {r:?}");
    }
    let (path, _) =
        refused(serde_json::json!({"logging": {"driver": "json-file", "options": {"x": "y"}}}));
    assert_eq!(path, "logging.options.x");
}

#[test]
fn expose() {
    assert_eq!(parse_expose("80"), Ok((80, 80, "tcp")));
    assert_eq!(parse_expose("53/udp"), Ok((53, 53, "udp")));
    assert_eq!(parse_expose("9000-9002/tcp"), Ok((9000, 9002, "tcp")));
    for bad in [
        "",
        "0",
        "65536",
        "80/sctp",
        "9002-9000",
        "80-",
        "-80",
        "a",
        "+80",
        "80:80",
    ] {
        assert!(parse_expose(bad).is_err(), "{bad:?}");
    }
    let (path, reason) = refused(serde_json::json!({"expose": ["80", "9002-9000"]}));
    assert_eq!(path, "expose[1]");
    assert!(reason.contains("the range goes downwards"), "{reason}");
}

#[test]
fn healthchecks() {
    let h = |v: serde_json::Value| serde_json::from_value::<Healthcheck>(v).unwrap();
    for good in [
        serde_json::json!({"test": ["CMD", "true"]}),
        serde_json::json!({"test": ["CMD", "/bin/check", "--fast"], "interval": "5s", "retries": 1}),
        serde_json::json!({"test": "wget -q -O- http://localhost/ || exit 1", "timeout": "1ms"}),
        serde_json::json!({"test": ["CMD-SHELL", "exit 0"], "start_period": "0"}),
        serde_json::json!({"test": ["NONE"]}),
        serde_json::json!({"disable": true}),
        serde_json::json!({"disable": true, "test": ["CMD", "x"]}),
        serde_json::json!({"interval": "10s"}),
    ] {
        assert_eq!(check_healthcheck(&h(good.clone())), Ok(()), "{good}");
    }
    let bad = [
        (
            serde_json::json!({"test": ["CMD"]}),
            "test",
            "needs a program",
        ),
        (
            serde_json::json!({"test": ["CMD", ""]}),
            "test",
            "needs a program",
        ),
        (
            serde_json::json!({"test": ["CMD-SHELL"]}),
            "test",
            "exactly one non-empty shell command",
        ),
        (
            serde_json::json!({"test": ["CMD-SHELL", "a", "b"]}),
            "test",
            "exactly one",
        ),
        (
            serde_json::json!({"test": ["NONE", "x"]}),
            "test",
            "takes nothing after it",
        ),
        (
            serde_json::json!({"test": ["RUN", "x"]}),
            "test",
            "is not CMD, CMD-SHELL or NONE",
        ),
        (
            serde_json::json!({"test": ["CMD", "a\u{0}"]}),
            "test[1]",
            "contains a NUL",
        ),
        (
            serde_json::json!({"interval": "500us"}),
            "interval",
            "below 1ms",
        ),
        (
            serde_json::json!({"timeout": "10ns"}),
            "timeout",
            "below 1ms",
        ),
        (
            serde_json::json!({"start_period": "1us"}),
            "start_period",
            "below 1ms",
        ),
        (serde_json::json!({"retries": 0}), "retries", "1 or more"),
    ];
    for (v, path, want) in bad {
        let (p, r) = check_healthcheck(&h(v.clone())).unwrap_err();
        assert_eq!(p, path, "{v}");
        assert!(r.contains(want), "{want:?} not in {r:?}");
    }
    let (path, _) = refused(serde_json::json!({"healthcheck": {"test": ["CMD"]}}));
    assert_eq!(path, "healthcheck.test");
}

#[test]
fn fields_that_exclude_each_other() {
    let (path, reason) = refused(serde_json::json!({"stop_timeout": 5, "stop_grace_period": "5s"}));
    assert_eq!(path, "stop_grace_period");
    assert!(reason.contains("not both"), "{reason}");
    // In another container's network namespace the engine refuses these.
    for (field, value) in [
        ("hostname", serde_json::json!("h")),
        ("dns", serde_json::json!(["1.1.1.1"])),
        ("extra_hosts", serde_json::json!(["a:1.2.3.4"])),
        ("ports", serde_json::json!(["80:80"])),
        ("expose", serde_json::json!(["80"])),
    ] {
        for mode in ["container:other", "service:db"] {
            let mut v = serde_json::json!({"network_mode": mode});
            v[field] = value.clone();
            let (path, reason) = refused(v);
            assert_eq!(path, field);
            assert!(
                reason.contains("cannot be set with network_mode"),
                "{reason}"
            );
        }
    }
    // Other namespaces take them.
    validate_service(&service(serde_json::json!({
        "image": "i", "network_mode": "none", "hostname": "h", "dns": ["1.1.1.1"],
        "extra_hosts": ["a:1.2.3.4"], "expose": ["80"], "domainname": "x.org",
        "dns_search": ["x.org"]
    })))
    .unwrap();
    validate_service(&service(serde_json::json!({
        "image": "i", "network_mode": "service:db", "domainname": "x.org", "dns_search": ["x.org"]
    })))
    .unwrap();
}

#[test]
fn holdfast_labels_are_reserved() {
    let (path, reason) = refused(serde_json::json!({"labels": {"io.holdfast.app": "x"}}));
    assert_eq!(path, "labels.io.holdfast.app");
    assert!(reason.contains("holdfast's own"), "{reason}");
    validate_service(&service(serde_json::json!({
        "image": "i", "labels": {"io.holdfastx": "1", "io.balena.features.supervisor-api": "1"}
    })))
    .unwrap();
}

#[test]
fn subnets() {
    let c = |s: &str| Cidr::parse(s).unwrap();
    assert!(c("10.0.0.0/8").covers(&c("10.1.0.0/16")));
    assert!(!c("10.1.0.0/16").covers(&c("10.0.0.0/8")));
    assert!(c("10.1.0.0/16").overlaps(&c("10.0.0.0/8")));
    assert!(!c("10.1.0.0/16").overlaps(&c("10.2.0.0/16")));
    assert!(c("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
    assert!(c("::/0").contains("fd00::1".parse().unwrap()));
    assert!(!c("::/0").contains("1.2.3.4".parse().unwrap()));
    assert!(c("fd00:1::/64").contains("fd00:1::ff".parse().unwrap()));
    assert!(!c("fd00:1::/64").contains("fd00:2::ff".parse().unwrap()));
    assert!(c("10.0.0.5/32").contains("10.0.0.5".parse().unwrap()));
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0/8",
        "x/8",
        "10.0.0.0/+8",
        "10.0.0.0/",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
}
