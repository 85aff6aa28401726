//! holdfast's hawkBit client under a hostile or broken server (a DDI
//! server written here: tests/hostile_hawkbit/fake.rs), with holdfastd,
//! the bus and logind real: an action that waits or fails costs at most
//! the polls the server's interval allows plus a few retries; superseded
//! downloads are deleted; the token goes only to the server; names from a
//! release are shown escaped; a release that crashed holdfast is not read
//! again, and reading one never stalls the lock path.

#![cfg(feature = "fleet")]

mod common;
#[path = "hostile_hawkbit/fake.rs"]
mod fake;
#[path = "hostile_hawkbit/pacing.rs"]
mod pacing;
#[path = "hostile_hawkbit/swu.rs"]
mod swu;

use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{ok, Env};
use fake::{Fake, Link, Offer, BASE};
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-token";

/// holdfastd polling `fake` as controller `dev-hostile`, with a token.
async fn start(env: &mut Env, fake: &Fake, extra: &str) {
    let token = env.dir.join("hawkbit-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.write_config(&format!(
        "[fleet]\nid = \"dev-hostile\"\n[fleet.hawkbit]\nurl = \"{}\"\ntoken_file = \"{}\"\n{extra}",
        fake.url,
        token.display()
    ));
    env.start_daemon().await;
}

fn details(v: &Value) -> String {
    v["status"]["details"].to_string()
}

fn release() -> Vec<u8> {
    let mut r = swu::target_release(br#"{"version": 1, "apps": {}}"#);
    // Big enough that progress is reported and a reset cuts it.
    r.extend(swu::noise(2 << 20, 1));
    r
}

#[tokio::test]
async fn the_token_goes_only_to_the_server_not_to_a_link_on_another_port() {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    let mut o = Offer::new("31", release());
    o.link = Link::Other;
    o.window_closed = true;
    fake.set(|s| s.offer = Some(o));
    start(&mut env, &fake, "").await;
    fake.wait(Duration::from_secs(20), "the download", |f| {
        f.feedback("31")
            .iter()
            .any(|v| details(v).contains("waiting for the maintenance window"))
    })
    .await;
    let reqs = fake.requests();
    let auth = format!("TargetToken {TOKEN}");
    for r in &reqs {
        let got = r.headers.get("authorization");
        match r.listener {
            "main" => assert_eq!(got, Some(&auth), "{} {}", r.method, r.path),
            _ => assert_eq!(got, None, "the token went to {}", r.path),
        }
    }
    assert_eq!(
        reqs.iter().filter(|r| r.listener == "other").count(),
        1,
        "downloaded from the other port"
    );
    assert!(!env.log().contains(TOKEN), "the token is never logged");
}

#[tokio::test]
async fn an_http_link_from_an_https_server_is_refused_and_reported() {
    let mut env = Env::new();
    let pki = Pki::make(&env.dir, "ddi");
    let fake = Fake::start(Some((&pki.server_cert, &pki.server_key))).await;
    let mut o = Offer::new("32", release());
    o.link = Link::Other;
    fake.set(|s| s.offer = Some(o));
    start(
        &mut env,
        &fake,
        &format!("ca_file = \"{}\"\n", pki.ca.display()),
    )
    .await;
    fake.wait(Duration::from_secs(20), "the refusal", |f| {
        !f.closed("32").is_empty()
    })
    .await;
    let closed = fake.closed("32");
    assert_eq!(closed[0]["status"]["result"]["finished"], "failure");
    assert!(
        details(&closed[0]).contains("is plain http from an https server"),
        "{closed:?}"
    );
    assert!(
        fake.requests().iter().all(|r| r.listener == "main"),
        "nothing was asked over plain http"
    );
    assert!(fake.requests().iter().all(|r| r.path.contains(BASE)));
}

/// `holdfast status`'s hawkBit line and `--json`'s `fleet.hawkbit`.
fn status(env: &Env) -> (String, String, Value) {
    let text = ok(&env.cli(&["status"]));
    let line = text
        .lines()
        .find(|l| l.starts_with("hawkBit "))
        .unwrap_or_else(|| panic!("no hawkBit line in: {text}"))
        .to_owned();
    let raw = ok(&env.cli(&["status", "--json"]));
    let json: Value = serde_json::from_str(&raw).unwrap();
    (line, raw, json["fleet"]["hawkbit"].clone())
}

#[tokio::test]
async fn an_entry_name_that_forges_a_log_line_is_shown_escaped() {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    let forged = "a\nERROR holdfastd: FORGED LOG LINE\x1b[31mred";
    let target = br#"{"version": 1, "apps": {}}"#;
    let r = swu::archive(
        &swu::target_description(target),
        &[("t.json", target), (forged, b"x")],
    );
    fake.set(|s| s.offer = Some(Offer::new("41", r)));
    start(&mut env, &fake, "").await;
    fake.wait(Duration::from_secs(20), "the refusal", |f| {
        !f.closed("41").is_empty()
    })
    .await;
    let escaped = "a\\nERROR holdfastd: FORGED LOG LINE\\u{1b}[31mred";
    let log = env.log();
    assert!(log.contains(escaped), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("ERROR holdfastd: FORGED"))
            && !log.contains('\x1b'),
        "{log}"
    );
    let (line, raw, json) = status(&env);
    assert!(line.contains(escaped) && !line.contains('\x1b'), "{line}");
    assert!(!raw.contains("\\u001b") && !raw.contains('\x1b'), "{raw}");
    assert!(json["state"].as_str().unwrap().contains(escaped), "{json}");
}

/// What a start that died while reading action `id`'s release leaves:
/// the journal marked, the artifact verified and kept.
fn crashed_read(env: &Env, id: &str, swu: &[u8]) {
    cut_read(env, id, swu, None)
}

/// The same, with the read begun in boot `boot` (the kernel's boot id).
fn cut_read(env: &Env, id: &str, swu: &[u8], boot: Option<&str>) {
    let hb = env.state().join("hawkbit");
    std::fs::create_dir_all(&hb).unwrap();
    std::fs::set_permissions(&hb, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let hash = fake::sha256(swu);
    std::fs::write(hb.join(format!("{hash}.swu")), swu).unwrap();
    let mut a = json!({"id": id, "hash": hash, "version": "1.0.0", "reading": true});
    if let Some(b) = boot {
        a["boot"] = json!(b);
    }
    std::fs::write(hb.join("journal.json"), json!({ "action": a }).to_string()).unwrap();
}

/// A power cut while a good release was read: the device comes back in
/// another boot, and the release is read again (once) and applied, not
/// quarantined for good (the same bytes could never be deployed again).
#[tokio::test]
async fn a_release_whose_read_a_power_cut_stopped_is_read_again() {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    let good = swu::target_release(br#"{"version": 1, "apps": {}}"#);
    cut_read(
        &env,
        "53",
        &good,
        Some("00000000-0000-4000-8000-000000000000"),
    );
    fake.set(|s| s.offer = Some(Offer::new("53", good)));
    start(&mut env, &fake, "").await;
    fake.wait(Duration::from_secs(30), "the result", |f| {
        !f.closed("53").is_empty()
    })
    .await;
    let closed = fake.closed("53");
    assert_eq!(
        closed[0]["status"]["result"]["finished"], "success",
        "{closed:?}"
    );
    let log = env.log();
    assert!(
        log.contains("the device restarted while its release was read"),
        "{log}"
    );
    assert!(
        log.contains("hawkBit action 53: reading its release"),
        "{log}"
    );
    // Verified before the cut: not downloaded again.
    assert_eq!(fake.count("/dl/"), 0);
}

#[tokio::test]
async fn a_release_that_was_being_read_when_holdfast_died_is_failed_not_read_again_and_the_inhibitor_comes_first(
) {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    start(&mut env, &fake, "").await;
    env.service_dir("app1/main");
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
    fake.wait(Duration::from_secs(10), "a poll", |f| f.polls() > 0)
        .await;
    env.kill_daemon(nix::sys::signal::Signal::SIGKILL);

    // The release that "crashed" it: its target does not even parse.
    let hostile = swu::target_release(b"{\"version\": 1, \"apps\": {\"app1\": ");
    crashed_read(&env, "51", &hostile);
    let bus = env.bus.clone();
    fake.set(|s| {
        s.requests.clear();
        s.bus = Some(bus);
        s.offer = Some(Offer::new("51", hostile));
    });
    env.start_daemon().await;
    fake.wait(Duration::from_secs(20), "the failure", |f| {
        !f.closed("51").is_empty()
    })
    .await;
    // Three more polls offering it: it is not read again.
    let polls = fake.polls();
    fake.wait(Duration::from_secs(20), "three more polls", |f| {
        f.polls() >= polls + 3
    })
    .await;
    assert_eq!(
        fake.state.lock().unwrap().inhibited_at_first,
        Some(true),
        "the first request to the server came before the inhibitor was back"
    );
    let closed = fake.closed("51");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["status"]["result"]["finished"], "failure");
    assert!(details(&closed[0]).contains("not read again"), "{closed:?}");
    let log = env.log();
    assert!(
        !log.contains("hawkBit action 51: release"),
        "started again:\n{log}"
    );
    assert!(
        !log.contains("hawkBit action 51: reading"),
        "read again:\n{log}"
    );
    assert_eq!(fake.count("/dl/"), 0);
    // The same artifact under another action id: refused unread.
    fake.set(|s| {
        let mut o = s.offer.clone().unwrap();
        o.id = "52".into();
        s.offer = Some(o);
    });
    fake.wait(Duration::from_secs(20), "the refusal", |f| {
        !f.closed("52").is_empty()
    })
    .await;
    let closed = fake.closed("52");
    assert!(
        details(&closed[0]).contains("not read again, under any action"),
        "{closed:?}"
    );
    assert!(
        !env.log().contains("hawkBit action 52: reading"),
        "{}",
        env.log()
    );
    assert_eq!(fake.count("/dl/"), 0);
    env.wait_inhibitor(Some("update lock held by app1/main"))
        .await;
}

/// A compose file holdfast accepts but takes long to parse: 1 MiB (the
/// bound of a content entry) of environment entries with nested defaults.
fn slow_compose() -> Vec<u8> {
    // Many services, each with interpolated values: what costs the most
    // to read while staying within the bounds (1 MiB, 1,000 services).
    let mut y = String::from("services:\n");
    let (mut s, mut i) = (0, 0);
    while y.len() < (1 << 20) - 256 {
        if i % 24 == 0 && s < 999 {
            y.push_str(&format!("  s{s}:\n    image: busybox\n    environment:\n"));
            s += 1;
        }
        y.push_str(&format!("      K{i}: \"${{X:-${{Y:-${{Z:-v}}}}}}\"\n"));
        i += 1;
    }
    y.into_bytes()
}

/// Until logind lists holdfast's inhibitor; answers how long it took.
async fn inhibitor_after(env: &Env, lock: &str) -> Duration {
    env.service_dir(lock);
    let t = Instant::now();
    ok(&env.sh(&format!("set -C; : > $L/{lock}/updates.lock")));
    while !fake::inhibited(&env.bus).await {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no inhibitor for {lock}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

#[tokio::test]
async fn a_new_lock_gets_the_inhibitor_in_the_usual_time_while_a_release_is_parsed() {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    start(&mut env, &fake, "").await;
    fake.wait(Duration::from_secs(10), "a poll", |f| f.polls() > 0)
        .await;
    // The usual time, on this machine now.
    let mut usual = Duration::ZERO;
    for _ in 0..3 {
        usual = usual.max(inhibitor_after(&env, "app1/main").await);
        ok(&env.sh("rm $L/app1/main/updates.lock"));
        env.wait_inhibitor(None).await;
    }
    fake.set(|s| {
        s.offer = Some(Offer::new(
            "61",
            swu::compose_release("web", &slow_compose()),
        ))
    });
    env.wait_log(
        "hawkBit action 61: reading its release",
        Duration::from_secs(30),
        "the read",
    )
    .await;
    let during = inhibitor_after(&env, "app2/main").await;
    let log = env.log();
    assert!(
        !log.contains("hawkBit action 61: release read"),
        "the release was read before the lock came: the test proves nothing; make it slower\n{log}"
    );
    let bound = usual * 3 + Duration::from_millis(700);
    eprintln!("inhibitor after {during:?} while a release is read; usually {usual:?}");
    assert!(
        during <= bound,
        "inhibitor after {during:?} while a release was read (usually {usual:?})"
    );
    // And the release is still read and applied to the target.
    env.wait_log(
        "hawkBit action 61: release read",
        Duration::from_secs(120),
        "the read",
    )
    .await;
    for l in env.log().lines().filter(|l| l.contains("action 61: re")) {
        eprintln!("{l}");
    }
}

/// A read on the blocking pool cannot be stopped: a deployment
/// superseded (or canceled) while its release is read leaves the read
/// running. The next release is read once that read has ended, never
/// beside it (a server offering a new action at every poll piled up a
/// read per poll, each seconds of CPU and its memory).
#[tokio::test]
async fn a_superseded_release_read_ends_before_the_next_one_is_read() {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    // Action 81: a release with a 192 MiB image, hashed as it is read
    // (seconds on a debug build), verified and kept already, as its
    // download left it.
    let hb = env.state().join("hawkbit");
    std::fs::create_dir_all(&hb).unwrap();
    std::fs::set_permissions(&hb, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let hash = swu::image_release(&hb, 192 << 20);
    let j = json!({"action": {"id": "81", "hash": hash, "version": "1.0.0"}});
    std::fs::write(hb.join("journal.json"), j.to_string()).unwrap();
    let mut big = Offer::new("81", b"served from the cache".to_vec());
    big.sha256 = hash;
    fake.set(|s| s.offer = Some(big));
    start(&mut env, &fake, "").await;
    env.wait_log(
        "hawkBit action 81: reading its release",
        Duration::from_secs(30),
        "the read",
    )
    .await;
    // Action 82 supersedes it at the next poll, within about a second.
    let small = swu::target_release(br#"{"version": 1, "apps": {}}"#);
    fake.set(|s| s.offer = Some(Offer::new("82", small)));
    env.wait_log(
        "hawkBit action 82: reading its release",
        Duration::from_secs(90),
        "the next read",
    )
    .await;
    let log = env.log();
    for l in log.lines().filter(|l| l.contains("hawkBit action 8")) {
        eprintln!("{l}");
    }
    let ended = log.find("hawkBit action 81: release read");
    let next = log.find("hawkBit action 82: reading its release").unwrap();
    assert!(
        ended.is_some_and(|e| e < next),
        "82's release was read while 81's read went on\n{log}"
    );
    assert!(
        log.contains("hawkBit action 82: waiting for the read of an earlier release to end"),
        "81's read ended before 82 came: the test proves nothing; make it slower\n{log}"
    );
    assert!(
        log.contains("hawkBit action 81: superseded by action 82"),
        "{log}"
    );
}
