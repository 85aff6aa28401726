//! TLS to etcd: one member (Debian's etcd-server) with `--client-cert-auth`
//! and certificates made by openssl in the test's directory. holdfastd
//! takes and gives back a slot over https with `ca_file` and a client
//! certificate; a wrong CA, a missing or foreign client certificate and an
//! unreadable `ca_file` fail naming the problem, and no reboot goes
//! without a slot.
#![cfg(feature = "fleet")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::etcd::Cluster;
use common::pki::Pki;
use common::{wait_for, Env};
use holdfast::config::TlsFiles;
use holdfast::fleet::etcd::Etcd;
use serde_json::Value;

const KEY: &str = "com.coreos.airlock/groups/default/v1/semaphore";
const UNKNOWN_ISSUER: &str = "TLS: invalid peer certificate: UnknownIssuer (the server's certificate is not signed by a CA holdfast trusts: ca_file or the system bundle)";

fn config(cluster: &Cluster, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "[fleet]\nid = \"dev-a\"\n[fleet.lock]\nbackend = \"etcd\"\nendpoints = {}\nlease_ttl = \"2s\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cluster.toml_endpoints(),
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// What holdfastd logged since `from` (its log's length then).
fn log_since(env: &Env, from: usize) -> String {
    env.log()[from..].to_owned()
}

fn stderr(env: &Env, args: &[&str]) -> String {
    String::from_utf8_lossy(&env.cli(args).stderr).into_owned()
}

async fn fleet_error(env: &Env) -> String {
    let f: Value = serde_json::from_str(&env.supervisor().await.fleet().await.unwrap()).unwrap();
    f["lock"]["error"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_slot_over_https_with_a_client_certificate_and_clear_tls_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = Pki::make(tmp.path(), "good");
    let other = Pki::make(tmp.path(), "other");
    let (ca, cert, key) = (
        good.ca.clone(),
        good.client_cert.clone(),
        good.client_key.clone(),
    );
    let cluster = Cluster::start_tls(tmp.path(), good);
    assert!(cluster.endpoints()[0].starts_with("https://127.0.0.1:"));

    let mut env = Env::new();
    env.write_config(&config(&cluster, &ca, &cert, &key));
    env.start_daemon().await;
    let err = stderr(&env, &["reboot"]);
    assert!(
        err.contains("logind refused to reboot"),
        "{err}\n{}",
        env.log()
    );
    assert!(env.log().contains("fleet slot taken in group default"));
    // The refused reboot gives the slot back.
    wait_for(Duration::from_secs(10), || async {
        cluster.get(KEY, 0).unwrap().0 == r#"{"total_slots":1,"holders":[]}"#
    })
    .await
    .unwrap_or_else(|_| panic!("the slot was not given back: {}", env.log()));
    let held = (1..=cluster.revision()).any(|r| {
        cluster
            .get(KEY, r)
            .is_some_and(|(v, _)| v == r#"{"total_slots":1,"holders":["dev-a"]}"#)
    });
    assert!(held, "dev-a never held the slot");
    // The liveness key's lease is kept over https too.
    assert!(cluster
        .get("com.holdfast/groups/default/v1/alive/dev-a", 0)
        .is_some());

    // A CA that did not sign etcd's certificate: no slot, and why.
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    env.write_config(&config(&cluster, &other.ca, &cert, &key));
    let from = env.log().len();
    env.start_daemon().await;
    let err = stderr(&env, &["reboot"]);
    assert!(
        err.contains("no fleet slot is free in group default (unreachable)"),
        "{err}\n{}",
        env.log()
    );
    assert!(!log_since(&env, from).contains("logind refused to reboot"));
    let e = fleet_error(&env).await;
    assert!(e.contains(UNKNOWN_ISSUER), "{e}");

    // A ca_file that is not there: no slot (never a reboot without
    // one), and the status names the file.
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let missing = tmp.path().join("missing-ca.pem");
    env.write_config(&config(&cluster, &missing, &cert, &key));
    let from = env.log().len();
    env.start_daemon().await;
    let err = stderr(&env, &["reboot"]);
    assert!(
        err.contains("no fleet slot is free in group default (unreachable)"),
        "{err}\n{}",
        env.log()
    );
    assert!(!log_since(&env, from).contains("logind refused to reboot"));
    let e = fleet_error(&env).await;
    assert!(
        e.starts_with(&format!(
            "fleet slots unavailable: {}: No such file",
            missing.display()
        )),
        "{e}"
    );
}

/// The etcd client itself, for the exact messages.
#[tokio::test]
async fn the_etcd_client_names_each_tls_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let good = Pki::make(tmp.path(), "good");
    let other = Pki::make(tmp.path(), "other");
    let files = |ca: &Path, client: Option<&Pki>| TlsFiles {
        ca_file: Some(ca.to_owned()),
        cert_file: client.map(|p| p.client_cert.clone()),
        key_file: client.map(|p| p.client_key.clone()),
    };
    let ok_files = files(&good.ca, Some(&good));
    let wrong_ca = files(&other.ca, Some(&good));
    let no_cert = files(&good.ca, None);
    let foreign_cert = files(&good.ca, Some(&other));
    let cluster = Cluster::start_tls(tmp.path(), good);
    let endpoints = cluster.endpoints();
    let authority = endpoints[0].trim_start_matches("https://").to_owned();
    let read = |tls: TlsFiles| {
        let endpoints = endpoints.clone();
        async move {
            let mut etcd = Etcd::new(&endpoints, None, None, &tls).unwrap();
            etcd.get(KEY).await
        }
    };
    assert_eq!(read(ok_files).await, Ok(None));
    assert_eq!(
        read(wrong_ca).await.unwrap_err(),
        format!("no etcd endpoint answered: {authority}: {UNKNOWN_ISSUER}")
    );
    // etcd (Go) answers both with a bad_certificate alert.
    for tls in [no_cert, foreign_cert] {
        let e = read(tls).await.unwrap_err();
        assert_eq!(
            e,
            format!("no etcd endpoint answered: {authority}: TLS: received fatal alert: BadCertificate (the server wants a client certificate signed by a CA it trusts: cert_file and key_file)")
        );
    }
    // Plain http to the TLS port: an error, not a hang.
    let http = vec![format!("http://{authority}")];
    let mut etcd = Etcd::new(&http, None, None, &TlsFiles::default()).unwrap();
    assert!(etcd.get(KEY).await.is_err());
}
