//! hawkBit over https with a target token: gooseBit 0.2.12 served by
//! uvicorn with TLS (`HARNESS_GOOSEBIT_TLS=1`: a CA and a certificate for
//! 127.0.0.1 made by openssl) in `strict` device-auth mode, so every DDI
//! request needs the device's `Authorization: TargetToken ...`. A release
//! deploys with `ca_file` and a 0600 `token_file`; a CA that did not sign
//! the server's certificate, a token file others may read and a wrong
//! token each stop holdfast at the first poll, with the reason in
//! `holdfast status`, and nothing runs.

#![cfg(feature = "fleet")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::goosebit::{app1_release, log_has, GooseBit};
use common::pki::Pki;
use common::Env;
use serde_json::{json, Value};

const UNKNOWN_ISSUER: &str = "TLS: invalid peer certificate: UnknownIssuer (the server's certificate is not signed by a CA holdfast trusts: ca_file or the system bundle)";

/// gooseBit over https, every device needing its token.
fn goosebit(env: &Env) -> GooseBit {
    let gb = GooseBit::start_with(
        env,
        &[
            ("HARNESS_GOOSEBIT_TLS", "1"),
            ("HARNESS_GOOSEBIT_DEVICE_AUTH", "strict"),
        ],
    );
    assert!(gb.url.starts_with("https://127.0.0.1:"), "{}", gb.url);
    gb
}

/// The token file, written with `mode`.
fn token_file(env: &Env, token: &str, mode: u32) -> PathBuf {
    let f = env.dir.join("hawkbit-token");
    std::fs::write(&f, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

fn config(gb: &GooseBit, dev: &str, ca_file: Option<&Path>, token_file: &Path) -> String {
    let ca = ca_file.map_or(String::new(), |f| {
        format!("ca_file = \"{}\"\n", f.display())
    });
    format!(
        "[update]\nhealthy_timeout = \"6s\"\n[fleet]\nid = \"{dev}\"\n[fleet.hawkbit]\nurl = \"{}\"\ntoken_file = \"{}\"\n{ca}",
        gb.url,
        token_file.display()
    )
}

fn stdout(env: &Env, args: &[&str]) -> String {
    String::from_utf8_lossy(&env.cli(args).stdout).into_owned()
}

/// `holdfast status`'s hawkBit line and `--json`'s `fleet.hawkbit`.
fn hawkbit_status(env: &Env) -> (String, Value) {
    let text = stdout(env, &["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("hawkBit "))
        .unwrap_or_else(|| panic!("no hawkBit line in: {text}"))
        .to_owned();
    let json: Value = serde_json::from_str(&stdout(env, &["status", "--json"])).unwrap();
    (line, json["fleet"]["hawkbit"].clone())
}

/// Waits until the status names a poll error containing `want`; answers
/// the error and the status line.
async fn wait_error(env: &Env, want: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let json: Value = serde_json::from_str(&stdout(env, &["status", "--json"])).unwrap();
        let e = json["fleet"]["hawkbit"]["error"].as_str().unwrap_or("");
        if e.contains(want) {
            let e = e.to_owned();
            let (line, _) = hawkbit_status(env);
            return (e, line);
        }
        assert!(
            Instant::now() < deadline,
            "no hawkBit error with {want:?}: {:#}\n{}",
            json["fleet"],
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_release_over_https_with_a_target_token() {
    let mut env = Env::with_docker();
    let gb = goosebit(&env);
    let ca = gb.ca_file.clone().expect("admin.json names the CA");
    let image = env.busybox_image();
    let dev = "hf-hawkbit-tls-1";
    let token = "hf-tls-7c1d55e0a93b48f2";
    // Strict mode registers no device by itself: the management API makes
    // it, with its token.
    gb.gb(&["token", dev, token]);
    let dir = env.dir.join("swu");
    std::fs::create_dir_all(&dir).unwrap();
    let r1 = app1_release(&dir, "1.0.0", &image, "r1", "true");
    gb.deploy(&r1, dev);

    let tf = token_file(&env, token, 0o600);
    env.write_config(&config(&gb, dev, Some(&ca), &tf));
    env.start_daemon().await;
    // configData, deploymentBase and the download all follow gooseBit's
    // links: they are https too, or nothing would arrive.
    let d = gb
        .wait(dev, "1.0.0 finished", |d| {
            d["last_state"] == "Finished" && d["sw_version"] == "1.0.0"
        })
        .await;
    assert!(log_has(&d, "applied: every app healthy"), "{d:#}");
    assert_eq!(d["auth_token"], token, "{d:#}");
    env.wait_release("app1", "applied", "r1").await;

    let (line, hb) = hawkbit_status(&env);
    assert!(
        line.starts_with(&format!("hawkBit {} as {dev}; polled ", gb.url)),
        "{line}"
    );
    assert!(!line.contains("error"), "{line}");
    assert!(hb.get("error").is_none(), "{hb:#}");
    assert!(!env.log().contains(token), "the token is in the log");
}

#[tokio::test]
async fn a_wrong_ca_or_a_loose_token_file_is_a_clear_error_and_nothing_runs() {
    let mut env = Env::with_docker();
    let gb = goosebit(&env);
    let ca = gb.ca_file.clone().unwrap();
    let other = Pki::make(&env.dir, "other");
    let image = env.busybox_image();
    let dev = "hf-hawkbit-tls-2";
    let token = "hf-tls-0e6f2b9d41a8c357";
    let wrong = "hf-tls-wrong-93d0c1b7e5";
    gb.gb(&["token", dev, token]);
    let dir = env.dir.join("swu");
    std::fs::create_dir_all(&dir).unwrap();
    let r1 = app1_release(&dir, "1.0.0", &image, "r1", "true");
    // A release waits for the device: any request that got through would
    // bring it.
    gb.deploy(&r1, dev);
    let not_reached = format!("hawkBit {} as {dev}; not reached yet; error: ", gb.url);

    // Each case: holdfastd (re)started with it, the error in both forms of
    // the status, no app, no container, and gooseBit never served the
    // device.
    let cases: [(&str, Option<&Path>, &str, u32, &str); 4] = [
        ("no ca_file", None, token, 0o600, UNKNOWN_ISSUER),
        (
            "another CA",
            Some(other.ca.as_path()),
            token,
            0o600,
            UNKNOWN_ISSUER,
        ),
        (
            "a token file of mode 0644",
            Some(&ca),
            token,
            0o644,
            "chmod 600",
        ),
        ("a wrong token", Some(&ca), wrong, 0o600, "HTTP 401"),
    ];
    for (what, ca_file, tok, mode, want) in cases {
        env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
        let tf = token_file(&env, tok, mode);
        env.write_config(&config(&gb, dev, ca_file, &tf));
        let t = Instant::now();
        env.start_daemon().await;
        let (e, line) = wait_error(&env, want).await;
        eprintln!("{what}: {:?}: {e}", t.elapsed());
        assert_eq!(line, format!("{not_reached}{e}"), "{what}");
        assert!(!e.contains(token) && !e.contains(wrong), "{what}: {e}");
        match mode {
            0o644 => assert_eq!(
                e,
                format!(
                    "{}: readable by group or others (mode 644); chmod 600 it",
                    tf.display()
                ),
                "{what}"
            ),
            _ if tok == wrong => assert!(
                e.contains("HTTP 401") && e.contains("Device authentication token does not match."),
                "{what}: {e}"
            ),
            _ => assert!(e.ends_with(UNKNOWN_ISSUER), "{what}: {e}"),
        }
        assert_eq!(env.apps().await, json!({}), "{what}");
        let ps = common::ok(&env.docker(&["ps", "-aq"]));
        assert!(ps.trim().is_empty(), "{what}: containers {ps}");
        let d = gb.device(dev);
        assert!(
            d["last_state"] == "Unknown" && d["sw_version"].is_null() && d["log"].is_null(),
            "{what}: {d:#}"
        );
    }
    let log = env.log();
    assert!(
        !log.contains(token) && !log.contains(wrong),
        "a token is in the log"
    );
}
