//! Private registries (`engine.registry_auth`) through a real dockerd and
//! a real docker-registry that wants basic auth (htpasswd): no file, the
//! `auth` and `username`/`password` forms, a file readable by others, a
//! file fixed while holdfastd runs, and the password nowhere in its log or
//! status.

mod common;

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::engine::release;
use common::{ok, run_script, Env};
use serde_json::{json, Value};

const USER: &str = "holdfast-test";
/// With `:` (the `auth` form splits at the first one) and `+`.
const PASSWORD: &str = "hf-S3cret:pw+7f3a";
const WRONG: &str = "hf-Wr0ng:pw+0000";

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// holdfastd up, a registry wanting USER/PASSWORD; returns `127.0.0.1:PORT`.
async fn env_with_private_registry() -> (Env, String) {
    let mut env = Env::with_docker();
    let dir = env.dir.display().to_string();
    run_script("harness.sh", &["registry-auth", &dir, USER, PASSWORD]);
    let port = std::fs::read_to_string(env.dir.join("registry-auth/port")).unwrap();
    let reg = format!("127.0.0.1:{}", port.trim());
    env.start_daemon().await;
    (env, reg)
}

/// `docker` on the test's dockerd with its own client config (its logins).
fn docker_as_client(env: &Env, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(env.dir.join("docker-client"))
        .arg("-H")
        .arg(env.docker.as_ref().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Pushes the local busybox image as `reg/name_tag` (logged in), and
/// removes it locally so holdfast has to pull it.
fn push_private(env: &Env, reg: &str, name_tag: &str) -> String {
    let local = env.busybox_image();
    let remote = format!("{reg}/{name_tag}");
    ok(&docker_as_client(
        env,
        &["login", "-u", USER, "--password-stdin", reg],
        Some(PASSWORD),
    ));
    ok(&env.docker(&["tag", &local, &remote]));
    ok(&docker_as_client(env, &["push", "-q", &remote], None));
    ok(&env.docker(&["rmi", &remote]));
    remote
}

/// Writes the credentials file with `mode` (created with it, never
/// looser on the way).
fn write_auth(path: &Path, doc: &Value, mode: u32) {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(serde_json::to_string_pretty(doc).unwrap().as_bytes())
        .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn auth_form(reg: &str, password: &str) -> Value {
    json!({"auths": {reg: {"auth": b64(&format!("{USER}:{password}"))}}})
}

/// The password (and its base64 forms) appears in neither holdfastd's log
/// nor `holdfast status --json`.
fn assert_no_secret(env: &Env) {
    let status = ok(&env.cli(&["status", "--json"]));
    let log = env.log();
    for secret in [
        PASSWORD.to_owned(),
        "S3cret".to_owned(),
        WRONG.to_owned(),
        b64(&format!("{USER}:{PASSWORD}")),
        b64(&format!("{USER}:{WRONG}")),
    ] {
        assert!(!log.contains(&secret), "{secret} in the log:\n{log}");
        assert!(
            !status.contains(&secret),
            "{secret} in the status:\n{status}"
        );
    }
}

fn started_at(env: &Env, id: &str) -> String {
    ok(&env.docker(&["inspect", "-f", "{{.State.StartedAt}}", id]))
}

#[tokio::test]
async fn without_credentials_the_pull_fails_and_the_running_release_stays() {
    let (env, reg) = env_with_private_registry().await;
    let private = push_private(&env, &reg, "app1:2");
    // r1 from a local image (nothing to pull), running.
    ok(&env.apply(&release(&env.busybox_image(), 1)));
    env.wait_release("app1", "applied", "r1").await;
    let old = env.container_of("app1", "main");
    let since = started_at(&env, &old);

    ok(&env.apply(&release(&private, 2)));
    let st = env.wait_release("app1", "failed", "r2").await;
    let error = st["error"].as_str().unwrap();
    let file = env.registry_auth_path();
    assert!(
        error.starts_with(&format!("pull of {private} refused: ")),
        "{error}"
    );
    assert!(
        error.contains("no basic auth credentials") || error.contains("unauthorized"),
        "{error}"
    );
    assert!(
        error.ends_with(&format!(
            "(no credentials for {reg}: {} does not exist)",
            file.display()
        )),
        "{error}"
    );
    // Nothing that ran was touched: the same container, never restarted.
    assert_eq!(env.container_of("app1", "main"), old);
    assert_eq!(started_at(&env, &old), since);
    assert_eq!(
        env.containers("app1").len(),
        1,
        "{:?}",
        env.containers("app1")
    );
    assert_no_secret(&env);
}

#[tokio::test]
async fn auth_form_credentials_pull_and_apply() {
    let (env, reg) = env_with_private_registry().await;
    let private = push_private(&env, &reg, "app1:1");
    write_auth(&env.registry_auth_path(), &auth_form(&reg, PASSWORD), 0o600);
    ok(&env.apply(&release(&private, 1)));
    env.wait_release("app1", "applied", "r1").await;
    ok(&env.docker(&["image", "inspect", &private]));
    assert!(
        env.log().contains(&format!(
            "registry credentials read from {} for: {reg}",
            env.registry_auth_path().display()
        )),
        "{}",
        env.log()
    );
    assert_no_secret(&env);
}

#[tokio::test]
async fn username_and_password_form_and_a_url_key() {
    let (env, reg) = env_with_private_registry().await;
    let private = push_private(&env, &reg, "app1:1");
    // Written as docker writes some keys: with a scheme and a path.
    let doc = json!({"auths": {
        format!("http://{reg}/v2/"): {"username": USER, "password": PASSWORD, "email": "x@example.com"}
    }});
    write_auth(&env.registry_auth_path(), &doc, 0o400);
    ok(&env.apply(&release(&private, 1)));
    env.wait_release("app1", "applied", "r1").await;
    assert_no_secret(&env);
}

#[tokio::test]
async fn a_file_readable_by_others_is_refused_and_names_the_fix() {
    let (env, reg) = env_with_private_registry().await;
    let private = push_private(&env, &reg, "app1:1");
    let file = env.registry_auth_path();
    // The right credentials, but readable by everyone: not used.
    write_auth(&file, &auth_form(&reg, PASSWORD), 0o644);
    ok(&env.apply(&release(&private, 1)));
    let st = env.wait_release("app1", "failed", "r1").await;
    let error = st["error"].as_str().unwrap();
    let why = format!(
        "{0} is accessible by group or others (mode 0644), so holdfast uses no credentials from it; make it private: chmod 600 {0}",
        file.display()
    );
    assert!(
        error.contains(&format!("(no credentials sent: {why})")),
        "{error}"
    );
    assert!(env.log().contains(&why), "{}", env.log());
    assert!(env.containers("app1").is_empty());

    // chmod 600 is the fix, and the next attempt uses it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&env.cli(&["update"]));
    env.wait_release("app1", "applied", "r1").await;
    assert_no_secret(&env);
}

#[tokio::test]
async fn a_corrected_file_counts_for_the_next_pull_without_a_restart() {
    let (env, reg) = env_with_private_registry().await;
    let private = push_private(&env, &reg, "app1:1");
    let file = env.registry_auth_path();
    write_auth(&file, &auth_form(&reg, WRONG), 0o600);
    ok(&env.apply(&release(&private, 1)));
    let st = env.wait_release("app1", "failed", "r1").await;
    let error = st["error"].as_str().unwrap();
    assert!(
        error.ends_with(&format!(
            "(credentials for {reg} from {} were sent)",
            file.display()
        )),
        "{error}"
    );
    let pid = env.daemon_pid();

    // Broken JSON: refused with line and column, nothing stale sent.
    std::fs::write(&file, "{\"auths\": {\n  \"x\": }\n}").unwrap();
    ok(&env.cli(&["update"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let apps = env.apps().await;
        let e = apps["app1"]["error"].as_str().unwrap_or("");
        if e.contains("no credentials sent:") {
            assert!(
                e.contains(&format!("{}: line 2 column 8", file.display())),
                "{e}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{apps}\n{}",
            env.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Fixed while holdfastd runs: the next attempt pulls with it.
    write_auth(&file, &auth_form(&reg, PASSWORD), 0o600);
    ok(&env.cli(&["update"]));
    env.wait_release("app1", "applied", "r1").await;
    assert_eq!(env.daemon_pid(), pid, "no restart");
    assert_no_secret(&env);
}
