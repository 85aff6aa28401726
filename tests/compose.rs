//! Compose files through the real CLI and daemon: `holdfast apply x.yml
//! --app web` runs the app's containers and leaves other apps alone, a
//! rejected file changes nothing and says where, `holdfast convert` output
//! applies to the same containers, and stdin works with `--format compose`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::engine::{service, target};
use common::{ok, Env};
use serde_json::json;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The CLI against this test's daemon, from `dir`, with `vars` set and
/// `stdin` fed.
fn cli_in(env: &Env, dir: &Path, vars: &[(&str, &str)], stdin: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    c.arg("--config")
        .arg(env.config_path())
        .args(args)
        .current_dir(dir)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &env.bus)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Two services on no network (app networks are not needed here), the
/// environment from the shell, `.env` and defaults.
fn compose_file(image: &str) -> String {
    format!(
        r#"name: ignored-for-app
x-service: &service
  image: {image}
  network_mode: none
  stop_grace_period: 2s
  command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
services:
  main:
    <<: *service
    environment:
      GREETING: ${{GREETING:-hello}}
      FROM_DOTENV: $DOTENV_VAR
      LITERAL: "$$HOME"
  worker:
    <<: *service
    depends_on:
      main:
        condition: service_started
"#
    )
}

fn target_in_force(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(env.target_file()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_compose_app_runs_beside_an_app_it_leaves_alone() {
    let mut env = Env::with_docker();
    env.start_daemon().await;
    let image = env.busybox_image();
    ok(&env.apply(&target(
        json!({"other": {"release": "o1", "services": {"main": service(&image)}}}),
    )));
    env.wait_release("other", "applied", "o1").await;
    let other = env.container_of("other", "main");

    let dir = env.dir.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), compose_file(&image)).unwrap();
    std::fs::write(
        dir.join(".env"),
        "DOTENV_VAR=from-dotenv\nGREETING=not-this\n",
    )
    .unwrap();
    let apply = |vars: &[(&str, &str)]| {
        cli_in(
            &env,
            &dir,
            vars,
            "",
            &["apply", "docker-compose.yml", "--app", "web"],
        )
    };
    let out = ok(&apply(&[("GREETING", "from-shell")]));
    assert!(
        out.contains("target accepted: other release o1 (1 services), web release "),
        "{out}"
    );
    let st = env.wait_app("web", "applied").await;
    let release = st["release"].as_str().unwrap().to_owned();
    assert_eq!(release.len(), 12, "{st}");
    let main = env.container_of("web", "main");
    env.container_of("web", "worker");
    let vars = ok(&env.exec(&main, "env"));
    for want in [
        "GREETING=from-shell",
        "FROM_DOTENV=from-dotenv",
        "LITERAL=$HOME",
        "BALENA_APP_NAME=web",
    ] {
        assert!(vars.contains(want), "{want} missing from\n{vars}");
    }
    assert_eq!(env.container_of("other", "main"), other);

    // The same file again: nothing to do.
    ok(&apply(&[("GREETING", "from-shell")]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.container_of("web", "main"), main);

    // A changed environment (GREETING now from .env) replaces web's main,
    // and only it.
    ok(&apply(&[]));
    env.wait_app("web", "applied").await;
    let start = std::time::Instant::now();
    while env.containers("web").iter().any(|c| c.1 == main) {
        assert!(
            start.elapsed().as_secs() < 60,
            "main never replaced: {:?}",
            env.containers("web")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let main2 = env.container_of("web", "main");
    // Not in the shell: .env's value.
    assert!(ok(&env.exec(&main2, "env")).contains("GREETING=not-this"));
    assert_eq!(env.container_of("other", "main"), other);
    let t = target_in_force(&env);
    assert_eq!(t["apps"]["other"]["release"], "o1");
    // The release is the file's hash (and .env's): unchanged by the shell.
    assert_eq!(t["apps"]["web"]["release"], release);
}

#[tokio::test]
async fn convert_output_applies_to_the_same_containers() {
    let mut env = Env::with_docker();
    env.start_daemon().await;
    let image = env.busybox_image();
    let dir = env.dir.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.yaml"), compose_file(&image)).unwrap();
    std::fs::write(dir.join(".env"), "DOTENV_VAR=x\n").unwrap();

    // No daemon needed: the bus named is not there.
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    let converted = c
        .args(["convert", "app.yaml", "--app", "web", "--release", "v1"])
        .current_dir(&dir)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    let text = ok(&converted);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["apps"]["web"]["release"], "v1");
    assert_eq!(
        doc["apps"]["web"]["services"]["main"]["environment"]["FROM_DOTENV"],
        "x"
    );
    std::fs::write(dir.join("converted.json"), &text).unwrap();

    ok(&cli_in(&env, &dir, &[], "", &["apply", "converted.json"]));
    env.wait_release("web", "applied", "v1").await;
    let main = env.container_of("web", "main");
    let worker = env.container_of("web", "worker");
    let from_json = target_in_force(&env);

    // The compose file itself: the same target, so the same containers.
    let out = ok(&cli_in(
        &env,
        &dir,
        &[],
        "",
        &["apply", "app.yaml", "--app", "web", "--release", "v1"],
    ));
    assert!(out.contains("web release v1 (2 services)"), "{out}");
    assert_eq!(target_in_force(&env), from_json);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.container_of("web", "main"), main);
    assert_eq!(env.container_of("web", "worker"), worker);

    // apply --app takes one app of a JSON file and keeps the others.
    ok(&env.apply(&target(
        json!({"other": {"release": "o1", "services": {"main": service(&image)}}}),
    )));
    let out = ok(&cli_in(
        &env,
        &dir,
        &[],
        "",
        &["apply", "converted.json", "--app", "web"],
    ));
    assert!(
        out.contains("other release o1 (1 services), web release v1 (2 services)"),
        "{out}"
    );
    assert_eq!(
        target_in_force(&env)["apps"]["web"],
        from_json["apps"]["web"]
    );
}

#[tokio::test]
async fn rejected_compose_files_change_nothing_and_say_where() {
    let mut env = Env::new();
    env.start_daemon().await;
    let t = target(json!({"keep": {"release": "k1", "services": {"main": {"image": "k:1"}}}}));
    ok(&env.apply(&t));
    let before = std::fs::read(env.target_file()).unwrap();
    let dir = env.dir.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let head = "services:\n  web:\n    image: i:1\n";
    let cases = [
        (format!("{head}    restrat: always\n"), "bad.yml:4:5: services.web.restrat: unknown key \"restrat\"; did you mean \"restart\"?"),
        (format!("{head}    build: .\n"), "bad.yml:4:5: services.web.build: holdfast runs images; build and push them first"),
        (format!("{head}    deploy: {{replicas: 2}}\n"), "bad.yml:4:5: services.web.deploy: \"deploy\" is not supported by holdfast"),
        (format!("{head}    user: ${{NO_SUCH_USER:?set it}}\n"), "bad.yml:4:11: services.web.user: interpolation: required variable NO_SUCH_USER is unset or empty: set it"),
        (format!("{head}    image: i:2\n"), "bad.yml:4:5: services.web.image: duplicate key \"image\""),
        (format!("{head}    ports: [\"80:80\"\n"), "bad.yml:5:1: (top): YAML syntax:"),
        (format!("{head}    ports: [\"70000:80\"]\n"), "bad.yml:4:13: services.web.ports[0]: \"70000:80\" is not"),
        (format!("{head}networks:\n  n:\n    external: true\n"), "bad.yml:6:5: networks.n.external: an external network is not supported by holdfast"),
        (format!("{head}    depends_on: [ghost]\n"), "bad.yml:4:17: services.web.depends_on.ghost: ghost is not a service of app web"),
    ];
    for (text, want) in cases {
        std::fs::write(dir.join("bad.yml"), &text).unwrap();
        let out = cli_in(&env, &dir, &[], "", &["apply", "bad.yml", "--app", "web"]);
        assert_eq!(out.status.code(), Some(65), "{text}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("holdfast: target rejected: {want}")),
            "{text}\n{want:?} not in\n{err}"
        );
        assert_eq!(std::fs::read(env.target_file()).unwrap(), before, "{text}");
    }
    // A compose file needs --app; a bad app name is refused before reading.
    std::fs::write(dir.join("ok.yml"), head).unwrap();
    let out = cli_in(&env, &dir, &[], "", &["apply", "ok.yml"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(stderr(&out).contains("give --app NAME"), "{out:?}");
    let out = cli_in(&env, &dir, &[], "", &["apply", "ok.yml", "--app", "../x"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    // The daemon refuses what it cannot parse as an app (SetAppTarget).
    let p = env.supervisor().await;
    let e = p
        .set_app_target("web", "{\"release\": \"r\", \"services\": 3}")
        .await
        .unwrap_err();
    let zbus::Error::MethodError(name, msg, _) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        name.as_str(),
        "org.holdfast.Supervisor1.Error.InvalidTarget"
    );
    let msg = msg.unwrap();
    assert!(
        msg.contains("D-Bus SetAppTarget: line 1 column 30: apps.web.services: invalid type"),
        "{msg}"
    );
    let e = p.set_app_target("a/b", "{}").await.unwrap_err();
    assert!(e.to_string().contains("InvalidName"), "{e}");
    assert_eq!(std::fs::read(env.target_file()).unwrap(), before);
    assert!(!env.log().contains("panicked"));
}

#[tokio::test]
async fn compose_from_stdin_with_format_compose() {
    let mut env = Env::new();
    env.start_daemon().await;
    let dir = env.dir.join("cwd");
    std::fs::create_dir_all(&dir).unwrap();
    // .env and relative binds are taken from the working directory.
    std::fs::write(dir.join(".env"), "TAG=7\n").unwrap();
    let yaml = "services:\n  s:\n    image: busybox:${TAG}\n    volumes: [./data:/data]\n";
    let out = cli_in(
        &env,
        &dir,
        &[],
        yaml,
        &["apply", "-", "--format", "compose", "--app", "piped"],
    );
    let out = ok(&out);
    assert!(out.contains("target accepted: piped release "), "{out}");
    let t = target_in_force(&env);
    let s = &t["apps"]["piped"]["services"]["s"];
    assert_eq!(s["image"], "busybox:7");
    assert_eq!(
        s["volumes"],
        json!([format!("{}/data:/data", dir.display())])
    );
    // Without --format, stdin is JSON.
    let out = cli_in(&env, &dir, &[], yaml, &["apply", "-", "--app", "piped"]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        stderr(&out).contains("<stdin>") || stderr(&out).contains("-: line 1"),
        "{out:?}"
    );
    // Errors in stdin name it.
    let out = cli_in(
        &env,
        &dir,
        &[],
        "services:\n  s: {imag: x}\n",
        &["apply", "-", "--format", "compose", "--app", "piped"],
    );
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        stderr(&out).contains("<stdin>:2:7: services.s.imag: unknown key"),
        "{out:?}"
    );
}
