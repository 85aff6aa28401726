//! Targets written to take apps down, on real components (dockerd,
//! logind, holdfastd, the `holdfast` CLI): a mount on the lock path, a
//! target bigger than holdfast reads back, a saved target that cannot be
//! read, engine objects of one app that another's names reach, a NUL byte
//! in a target file. Each is refused and loses nothing that runs.

mod common;

use std::process::Output;
use std::time::Duration;

use common::engine::target;
use common::{ok, Env};
use serde_json::{json, Value};

/// A private dockerd, holdfastd, the busybox image.
async fn env_up() -> (Env, String) {
    let mut env = Env::with_docker();
    env.write_config("");
    env.start_daemon().await;
    let image = env.busybox_image();
    (env, image)
}

/// A service that stops at once on SIGTERM, on no network.
fn service(image: &str) -> Value {
    json!({
        "image": image,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        "network_mode": "none",
        "stop_timeout": 2,
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Refused as bad input (exit 65), the message holding each of `want`.
fn refused(out: &Output, want: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    err
}

fn write(env: &Env, name: &str, data: &[u8]) -> String {
    let path = env.dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.display().to_string()
}

/// A docker command of words without spaces.
fn docker(env: &Env, args: &str) -> String {
    ok(&env.docker(&args.split(' ').collect::<Vec<_>>()))
}

fn status_line(env: &Env) -> String {
    let st: Value = serde_json::from_str(&ok(&env.cli(&["status", "--json"]))).unwrap();
    st["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_mount_on_the_lock_path_is_refused_and_leaves_no_lock() {
    let (env, image) = env_up().await;
    ok(&env.apply(&target(
        json!({"app1": {"release": "r1", "services": {"main": service(&image)}}}),
    )));
    env.wait_app("app1", "applied").await;
    let before = env.container_of("app1", "main");
    // JSON: tmpfs, a volume and a bind, each spelled otherwise.
    for (field, value) in [
        ("tmpfs", json!(["/tmp/balena/updates.lock"])),
        ("volumes", json!(["data:/tmp/balena//updates.lock/"])),
        (
            "volumes",
            json!(["/srv:/tmp/./resin/resin-updates.lock:ro"]),
        ),
        ("devices", json!(["/dev/null:/tmp/balena/updates.lock"])),
    ] {
        let mut s = service(&image);
        s[field] = value;
        let out = env.apply(&target(
            json!({"app1": {"release": "r2", "services": {"main": s}}}),
        ));
        refused(
            &out,
            &[
                &format!("apps.app1.services.main.{field}[0]"),
                "where holdfast mounts the service's lock directory",
            ],
        );
    }
    // Compose, long syntax: file, line and column.
    let yml = format!(
        "services:\n  main:\n    image: {image}\n    network_mode: none\n    volumes:\n      - type: tmpfs\n        target: /tmp/balena/updates.lock\n"
    );
    let file = write(&env, "c.yml", yml.as_bytes());
    let out = env.cli(&["apply", &file, "--app", "app1"]);
    refused(
        &out,
        &[
            &format!("{file}:"),
            "where holdfast mounts the service's lock directory",
        ],
    );
    // Nothing changed: no lock in the lock directory, the same container.
    let lock = env.locks().join("app1/main/updates.lock");
    assert!(!lock.exists(), "{} appeared", lock.display());
    assert!(env.lock_infos().await.is_empty());
    assert_eq!(env.container_of("app1", "main"), before);
    let st: Value = env.apps().await;
    assert_eq!(st["app1"]["release"], "r1", "{st}");
}

/// A target of `n` command items: 4 bytes each as sent, 19 as holdfast
/// saves it (indented).
fn with_command(image: &str, n: usize) -> Value {
    let mut s = service(image);
    s["command"] = json!(vec!["a"; n]);
    target(json!({"big": {"release": "r1", "services": {"main": s}}}))
}

#[tokio::test]
async fn a_target_too_big_to_read_back_is_refused_and_one_that_cannot_be_read_is_not_none() {
    let (mut env, image) = env_up().await;
    let app1 = json!({"release": "r1", "services": {"main": service(&image)}});
    ok(&env.apply(&target(json!({"app1": app1}))));
    env.wait_app("app1", "applied").await;
    let running = env.container_of("app1", "main");
    let saved = std::fs::read(env.target_file()).unwrap();

    // 1.3 MB as sent, over 4 MiB as saved: refused with the size and the
    // limit; nothing saved.
    let big = serde_json::to_vec(&with_command(&image, 300_000)).unwrap();
    assert!(big.len() < 4 << 20);
    let file = write(&env, "big.json", &big);
    let out = env.cli(&["apply", &file]);
    refused(
        &out,
        &[&file, "would be saved as", "over the 4194304 bytes"],
    );
    assert_eq!(std::fs::read(env.target_file()).unwrap(), saved);

    // A target file over the read limit and a corrupt last good copy:
    // after a restart nothing is in force, and that is not "no target".
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let mut over = vec![b' '; (4 << 20) + 1];
    over.extend_from_slice(b"{}");
    std::fs::write(env.target_file(), &over).unwrap();
    std::fs::write(env.state().join("target.last-good.json"), "{ corrupt").unwrap();
    env.start_daemon().await;
    env.wait_log(
        "the saved target cannot be read",
        Duration::from_secs(10),
        "the unreadable target was not noticed",
    )
    .await;
    let line = status_line(&env);
    assert!(
        line.contains("target unreadable:") && line.contains("larger than 4194304 bytes"),
        "{line}"
    );
    let human = ok(&env.cli(&["status"]));
    assert!(human.contains("target unreadable:"), "{human}");
    // One app merged into nothing would remove app1: refused.
    let small = write(
        &env,
        "small.yml",
        format!("services:\n  s:\n    image: {image}\n    network_mode: none\n").as_bytes(),
    );
    let out = env.cli(&["apply", &small, "--app", "small"]);
    refused(
        &out,
        &["the saved target cannot be read", "every other app"],
    );
    assert_eq!(
        ok(&env.docker(&["inspect", "--format", "{{.State.Running}}", &running])).trim(),
        "true"
    );
    // A whole target replaces it: app1 keeps its container, small comes.
    let whole = target(
        json!({"app1": app1, "small": {"release": "r1", "services": {"s": service(&image)}}}),
    );
    ok(&env.apply(&whole));
    env.wait_app("small", "applied").await;
    env.wait_app("app1", "applied").await;
    assert_eq!(env.container_of("app1", "main"), running);
    assert!(!status_line(&env).contains("target unreadable"));
}

#[tokio::test]
async fn engine_objects_of_another_app_are_neither_used_nor_removed() {
    let mut env = Env::with_docker();
    env.write_config("");
    let image = env.busybox_image();
    // What an earlier holdfast left: app a's volume a_b_data (a's b_data,
    // with data in it), app c's volume c_data that a container not
    // holdfast's mounts; and someone's network x_y_default (without a
    // label: one of a gone app would be removed by that app's task).
    docker(&env, "volume create --label io.holdfast.app=a a_b_data");
    let write = format!("run --rm --network none -v a_b_data:/d {image} sh -c");
    let mut args: Vec<&str> = write.split(' ').collect();
    args.push("echo a-wrote-this > /d/f");
    ok(&env.docker(&args));
    docker(&env, "network create x_y_default");
    docker(&env, "volume create --label io.holdfast.app=c c_data");
    docker(
        &env,
        &format!("create --name other --network none -v c_data:/d {image} true"),
    );
    env.start_daemon().await;
    // a_b's volume data and x_y's default network have those engine names.
    let mut ab = service(&image);
    ab["volumes"] = json!(["data:/d"]);
    let mut xy = service(&image);
    xy.as_object_mut().unwrap().remove("network_mode");
    ok(&env.apply(&target(json!({
        "a_b": {"release": "r1", "services": {"main": ab}},
        "x_y": {"release": "r1", "services": {"main": xy}},
    }))));
    let a_b = env.wait_app("a_b", "failed").await;
    let why = a_b["error"].as_str().unwrap();
    assert!(
        why.contains("volume a_b_data belongs to app a, not to app a_b"),
        "{a_b}"
    );
    let x_y = env.wait_app("x_y", "failed").await;
    let why = x_y["error"].as_str().unwrap();
    assert!(
        why.contains("network x_y_default belongs to nothing holdfast made"),
        "{x_y}"
    );
    assert!(env.containers("a_b").is_empty());
    let nets = ok(&env.docker(&["network", "ls", "--format", "{{.Name}}"]));
    assert_eq!(
        nets.lines().filter(|n| *n == "x_y_default").count(),
        1,
        "{nets}"
    );
    // a is gone from the target, but a_b's target names a_b_data: a prune
    // of a removes nothing.
    let out = env.cli(&["volumes", "prune", "a"]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("volume a_b_data") && err.contains("app a_b's target names it"),
        "{err}"
    );
    let data = docker(
        &env,
        &format!("run --rm --network none -v a_b_data:/d {image} cat /d/f"),
    );
    assert_eq!(data, "a-wrote-this\n");
    // c's volume is mounted by a container not holdfast's: it stays.
    let out = env.cli(&["volumes", "prune", "c"]);
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("volume c_data of app c is used by container other (not holdfast's)"),
        "{err}"
    );
    ok(&env.docker(&["volume", "inspect", "c_data"]));
}

/// The config hash does not cover the app's name: app a's service b_s and
/// app a_b's service s of one definition would be one container name.
#[tokio::test]
async fn a_container_of_another_app_with_the_wanted_name_is_not_taken() {
    let (env, image) = env_up().await;
    ok(&env.apply(&target(
        json!({"a": {"release": "r1", "services": {"b_s": service(&image)}}}),
    )));
    env.wait_app("a", "applied").await;
    let theirs = env.container_of("a", "b_s");
    // a holds its lock: leaving, its container stays until it lets go.
    env.service_dir("a/b_s");
    ok(&env.sh("set -C; : > $L/a/b_s/updates.lock"));
    env.wait_locks(&["a/b_s"]).await;
    ok(&env.apply(&target(
        json!({"a_b": {"release": "r1", "services": {"s": service(&image)}}}),
    )));
    let st = env.wait_app("a_b", "failed").await;
    let why = st["error"].as_str().unwrap();
    assert!(
        why.contains("container a_b_s_") && why.contains("belongs to app a, not to app a_b"),
        "{st}"
    );
    // a's container is as it was: running, a's.
    assert_eq!(env.container_of("a", "b_s"), theirs);
    assert!(env.containers("a_b").is_empty());
}

#[tokio::test]
async fn a_nul_byte_in_a_target_file_is_bad_input_named_by_offset() {
    let mut env = Env::new();
    env.start_daemon().await;
    let json = write(
        &env,
        "nul.json",
        b"{\"version\": 1,\n \"apps\": {\"a\0\": {}}}",
    );
    let out = env.cli(&["apply", &json]);
    refused(
        &out,
        &[&format!("{json}: line 2 column 13 (byte 27): a NUL byte")],
    );
    let yml = write(&env, "nul.yml", b"services:\n  s:\n    image: i\0\n");
    let out = env.cli(&["apply", &yml, "--app", "a"]);
    refused(
        &out,
        &[&format!("{yml}: line 3 column 13 (byte 27): a NUL byte")],
    );
    // Nothing reached holdfastd.
    assert!(!env.log().contains("target accepted"), "{}", env.log());
}

/// Until holdfast knows the device's values (config.json does not parse at
/// start), no app of the target is in force and none has a task; an app of
/// the target as set is still in the target: a prune of it removes none of
/// its volumes (it used to remove them all).
#[tokio::test]
async fn a_prune_of_an_app_of_the_target_not_yet_in_force_removes_nothing() {
    let mut env = Env::with_docker();
    env.write_config("");
    let image = env.busybox_image();
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
    std::fs::write(env.dir.join("boot/config.json"), "{ not json").unwrap();
    // app1's volume as an earlier start made it, with its data.
    docker(&env, "volume create --label io.holdfast.app=app1 app1_data");
    env.start_daemon().await;
    let mut s = service(&image);
    s["volumes"] = json!(["data:/d"]);
    ok(&env.apply(&target(
        json!({"app1": {"release": "r1", "services": {"main": s}}}),
    )));
    let out = env.cli(&["volumes", "prune", "app1"]);
    assert!(!out.status.success(), "{out:?}\n{}", env.log());
    let err = stderr(&out);
    assert!(err.contains("app app1 is in the target"), "{err}");
    ok(&env.docker(&["volume", "inspect", "app1_data"]));
}
