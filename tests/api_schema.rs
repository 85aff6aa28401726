//! docs/openapi.yaml against a real holdfastd: schemathesis (installed in
//! .cache/schemathesis by scripts/setup.sh) sends generated requests, valid
//! and invalid, to every documented operation on the API's TCP listener and
//! fails on any status, content type or body the document does not allow.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::engine::release;
use common::{free_port, ok, wait_for, Env, REPO};

/// Generated cases per operation and phase; keeps the run well under a
/// minute. HOLDFAST_SCHEMA_EXAMPLES=N asks for more, by hand.
const MAX_EXAMPLES: &str = "25";

/// Fixed, so a failure in CI replays the same requests locally.
/// HOLDFAST_SCHEMA_SEED=N tries other ones, by hand.
const SEED: &str = "48484";

#[tokio::test]
async fn responses_conform_to_docs_openapi_yaml() {
    let st = format!("{REPO}/.cache/schemathesis/bin/st");
    assert!(
        Path::new(&st).exists(),
        "{st} is missing: scripts/setup.sh installs schemathesis there"
    );

    // A private dockerd and one app running, so the state routes have data
    // and /v2/applications/app1/restart has something to restart.
    let mut env = Env::with_docker();
    let port = free_port();
    env.write_config(&format!("api.tcp = \"127.0.0.1:{port}\"\n"));
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let up = wait_for(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up.is_ok(), "API not listening on {port}:\n{}", env.log());
    // /v1/reboot and /v1/shutdown are called too, forced or not: the
    // harness's logind is on the test's private bus, where no service
    // manager answers its StartUnit(reboot.target), so it refuses (500 in
    // the document) and nothing powers off. Make sure of that first.
    assert!(
        !common::name_has_owner(&env.bus, "org.freedesktop.systemd1").await,
        "a service manager is on the test's bus: /v1/reboot could reboot"
    );
    let key = std::fs::read_to_string(env.state().join("api-key")).unwrap();

    let mut cmd = Command::new(&st);
    cmd.arg("run")
        .arg(format!("{REPO}/docs/openapi.yaml"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--header", &format!("Authorization: Bearer {}", key.trim())])
        // Otherwise it also makes up `?apikey=` values, which are checked
        // first and fail: every request would be a 401.
        .args(["--generation-with-security-parameters", "false"])
        .args([
            "--checks",
            "status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args([
            "--max-examples",
            &setting("HOLDFAST_SCHEMA_EXAMPLES", MAX_EXAMPLES),
        ])
        .args(["--seed", &setting("HOLDFAST_SCHEMA_SEED", SEED)])
        // One worker: with two, hypothesis' lambda descriptions run
        // ast.parse in both threads and Python 3.11.7 fails with
        // "SystemError: AST constructor recursion depth mismatch" (seen on
        // POST /v1/apps/{app}/start, the same every run).
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"]);
    // Its working files (if any) stay in the test's directory.
    cmd.current_dir(&env.dir).env("NO_COLOR", "1");
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("schemathesis took {:?}", start.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found responses docs/openapi.yaml does not allow ({}):\n{report}\nholdfastd log:\n{}",
        out.status,
        env.log()
    );
    eprintln!("{report}");
    // It really tested every documented operation.
    let spec = std::fs::read_to_string(format!("{REPO}/docs/openapi.yaml")).unwrap();
    let ops = spec
        .lines()
        .filter(|l| ["    get:", "    post:", "    put:", "    delete:"].contains(l))
        .count();
    assert!(
        report.contains(&format!("Tested: {ops}\n")),
        "not all {ops} operations were tested:\n{report}"
    );
    // And holdfastd is still running and answering.
    assert!(env.daemon.as_mut().unwrap().try_wait().unwrap().is_none());
    let apps = env.apps().await;
    assert_eq!(apps["app1"]["state"], "applied", "{apps}");
}

fn setting(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}
