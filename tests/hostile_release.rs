//! A release that cannot start (issue 24, item 3), on a real dockerd: its
//! pass stops the running release, the new container is refused, the old
//! one is started again, and then holdfast must leave the running release
//! alone. It used to retry on its back-off (5 s, 10 s, 20 s, ...), stopping
//! the running app at every try. Now the app is `failed`, says it is not
//! retried until a new target or `update --force`, and a restart of
//! holdfastd does not retry it either.
//!
//! The running container is watched through the engine's own events (a
//! `die` of it is a stop); where the test must let time pass to show that
//! nothing happens, it waits one of holdfast's retry periods (RETRY_MIN,
//! when the old code stopped the app again) plus a margin, inside an
//! engine `events --until` call.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::engine::release;
use common::{ok, wait_for, Env};
use serde_json::{json, Value};

const RETRY_MIN: Duration = holdfast::update::machine::RETRY_MIN;
const NOT_RETRIED: &str = "not retried until a new target or update --force";
/// The journal line of such a failure (once per failed pass).
const FAILED_LINE: &str = "failed after the pass stopped its running containers";

/// The engine's clock (the host's), as `docker events` reads it.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every `die` of container `id` between `since` and `until` (engine
/// time, seconds). Returns at `until` when that is still to come: the
/// bounded observation.
fn deaths(env: &Env, id: &str, since: f64, until: f64) -> Vec<String> {
    let out = ok(&env.docker(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=die",
        "--format",
        "{{.Status}} {{.TimeNano}}",
    ]));
    out.lines().map(str::to_owned).collect()
}

fn started_at(env: &Env, id: &str) -> String {
    ok(&env.docker(&["inspect", "-f", "{{.State.StartedAt}}", id]))
        .trim()
        .to_owned()
}

fn key(env: &Env) -> String {
    std::fs::read_to_string(env.state().join("api-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// curl over the API socket with the device key: (status, body).
fn api(env: &Env, method: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(env.dir.join("api.sock"))
        .args(["-X", method])
        .args(["-H", &format!("Authorization: Bearer {}", key(env))])
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

/// app1 at r1, then `r2` (r1's service changed by `change`) applied:
/// returns the r1 container once the app is `failed` at r2, and r2.
async fn r2_fails(env: &Env, image: &str, change: impl Fn(&mut Value)) -> (String, Value) {
    ok(&env.apply(&release(image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");
    let mut r2 = release(image, 2);
    change(&mut r2["apps"]["app1"]["services"]["main"]);
    ok(&env.apply(&r2));
    let st = env.wait_release("app1", "failed", "r2").await;
    assert!(st.get("retry_at").is_none(), "{st}");
    assert!(st["error"].as_str().unwrap().ends_with(NOT_RETRIED), "{st}");
    assert_eq!(env.container_of("app1", "main"), c1, "r1 runs again");
    (c1, r2)
}

/// Over one retry period and a margin, starting with an update check (which
/// used to run a pass, too): r1's container is never stopped, nor started
/// again, and the app stays failed at r2.
async fn left_alone(env: &Env, c1: &str) {
    let before = started_at(env, c1);
    let since = now();
    ok(&env.cli(&["update"]));
    let seen = deaths(env, c1, since, since + RETRY_MIN.as_secs_f64() + 3.0);
    assert_eq!(
        seen,
        Vec::<String>::new(),
        "r1 stopped again:\n{}",
        env.log()
    );
    assert_eq!(started_at(env, c1), before, "r1 started again");
    assert_eq!(env.container_of("app1", "main"), c1);
    let st = env.apps().await;
    assert_eq!(st["app1"]["state"], "failed", "{st}");
    assert_eq!(st["app1"]["attempts"], 1, "{st}");
}

#[tokio::test]
async fn a_release_that_cannot_start_is_not_retried_against_the_running_app() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let (c1, r2) = r2_fails(&env, &image, |s| s["command"] = json!(["/bin/sleeep"])).await;
    // The same release applied again (as a fleet server may send it) is no
    // new target.
    ok(&env.apply(&r2));
    left_alone(&env, &c1).await;

    // Said once in the journal, and in every status.
    let log = env.log();
    assert_eq!(log.matches(FAILED_LINE).count(), 1, "{log}");
    assert_eq!(log.matches("apply failed midway").count(), 1, "{log}");
    let st = env.apps().await;
    let error = st["app1"]["error"].as_str().unwrap();
    assert!(
        error.contains("cannot start service main") && error.contains("/bin/sleeep"),
        "{st}"
    );
    let status = ok(&env.cli(&["status"]));
    assert!(
        status.contains("app1 failed release r2: cannot start service main")
            && status.contains(&format!("{NOT_RETRIED}\n")),
        "{status}"
    );
    let (code, body) = api(&env, "GET", "/v2/applications/state");
    assert_eq!(code, 200, "{body}");
    let http: Value = serde_json::from_str(&body).unwrap();
    assert!(
        http["app1"]["error"]
            .as_str()
            .unwrap_or_default()
            .ends_with(NOT_RETRIED),
        "{http}"
    );
    // A purge would remove the containers that run and bring nothing back.
    let (code, body) = api(&env, "POST", "/v2/applications/app1/purge");
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("runs its previous containers again"),
        "{body}"
    );
    assert_eq!(env.container_of("app1", "main"), c1);

    // A forced update tries r2 once more: r1 stops once, runs again, and
    // the app is failed again, not retried.
    let since = now();
    ok(&env.cli(&["update", "--force"]));
    wait_for(Duration::from_secs(30), || async {
        env.log().matches(FAILED_LINE).count() == 2
    })
    .await
    .unwrap_or_else(|_| panic!("the forced retry did not fail:\n{}", env.log()));
    let st = env.wait_release("app1", "failed", "r2").await;
    assert_eq!(st["attempts"], 2, "{st}");
    assert_eq!(deaths(&env, &c1, since, now()).len(), 1, "{}", env.log());
    assert_eq!(env.container_of("app1", "main"), c1);

    // A corrected release applies at once.
    ok(&env.apply(&release(&image, 3)));
    env.wait_release("app1", "applied", "r3").await;
    let c3 = env.container_of("app1", "main");
    assert_ne!(c3, c1);
    assert_eq!(
        env.containers("app1").len(),
        1,
        "{:?}",
        env.containers("app1")
    );
    assert!(
        !env.state().join("rejected/app1.json").exists(),
        "the mark goes with its release"
    );
}

#[tokio::test]
async fn a_volume_onto_proc_is_not_retried_against_the_running_app() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&release(&image, 1)));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");
    let mut r2 = release(&image, 2);
    r2["apps"]["app1"]["services"]["main"]["volumes"] = json!(["data:/proc"]);
    r2["apps"]["app1"]["volumes"] = json!({"data": {}});
    let out = env.apply(&r2);
    if out.status.code() == Some(65) {
        // Refused by the target's checks before anything was touched: as
        // good (nothing to retry).
        assert_eq!(env.container_of("app1", "main"), c1);
        assert!(!env.log().contains("stopping app1/main"), "{}", env.log());
        return;
    }
    ok(&out);
    let st = env.wait_release("app1", "failed", "r2").await;
    assert!(st["error"].as_str().unwrap().ends_with(NOT_RETRIED), "{st}");
    assert_eq!(env.container_of("app1", "main"), c1, "r1 runs again");
    left_alone(&env, &c1).await;
    assert_eq!(env.log().matches(FAILED_LINE).count(), 1, "{}", env.log());
}

#[tokio::test]
async fn a_restart_of_holdfastd_does_not_retry_it() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let (c1, _) = r2_fails(&env, &image, |s| s["command"] = json!(["/bin/sleeep"])).await;
    let before = started_at(&env, &c1);
    let since = now();
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    env.start_daemon().await;
    env.wait_log(
        "was rejected before holdfastd started",
        Duration::from_secs(30),
        "the mark did not survive the restart",
    )
    .await;
    let st = env.wait_release("app1", "failed", "r2").await;
    assert!(
        st["error"].as_str().unwrap().contains("/bin/sleeep"),
        "{st}"
    );
    assert!(st["error"].as_str().unwrap().ends_with(NOT_RETRIED), "{st}");
    left_alone(&env, &c1).await;
    assert_eq!(deaths(&env, &c1, since, now()), Vec::<String>::new());
    assert_eq!(started_at(&env, &c1), before, "{}", env.log());
    // One failure line in all: the restart added none.
    assert_eq!(env.log().matches(FAILED_LINE).count(), 1, "{}", env.log());

    // A new release is tried at once.
    ok(&env.apply(&release(&image, 3)));
    env.wait_release("app1", "applied", "r3").await;
}

// The same for a dependency whose condition is never met once the old
// containers are stopped: worker waits for main to be healthy, main's
// healthcheck fails. The old ones run again and are left alone (this
// used to be judged a rollback to the release that already ran again).
#[tokio::test]
async fn a_dependency_that_never_comes_up_is_not_retried_against_the_running_app() {
    let mut env = Env::with_docker();
    env.write_config("[update]\nhealthy_timeout = \"5s\"\n");
    let image = env.busybox_image();
    env.start_daemon().await;
    let app = |n: u32, healthcheck: Option<&str>| {
        let mut main = release(&image, n)["apps"]["app1"]["services"]["main"].clone();
        let mut worker = main.clone();
        worker["depends_on"] = json!(["main"]);
        if let Some(test) = healthcheck {
            main["healthcheck"] =
                json!({"test": ["CMD-SHELL", test], "interval": "200ms", "retries": 2});
            worker["depends_on"] = json!({"main": {"condition": "service_healthy"}});
        }
        json!({"version": 1, "apps": {"app1": {"release": format!("r{n}"),
            "services": {"main": main, "worker": worker}}}})
    };
    ok(&env.apply(&app(1, None)));
    env.wait_release("app1", "applied", "r1").await;
    let (c1, w1) = (
        env.container_of("app1", "main"),
        env.container_of("app1", "worker"),
    );
    ok(&env.apply(&app(2, Some("false"))));
    let st = env.wait_release("app1", "failed", "r2").await;
    let error = st["error"].as_str().unwrap();
    assert!(
        error.contains("worker") && error.contains("main") && error.ends_with(NOT_RETRIED),
        "{st}"
    );
    assert!(st.get("rolled_back_to").is_none(), "{st}");
    assert_eq!(env.container_of("app1", "main"), c1, "r1 runs again");
    assert_eq!(env.container_of("app1", "worker"), w1, "r1 runs again");
    left_alone(&env, &c1).await;
    assert_eq!(env.container_of("app1", "worker"), w1);
    assert_eq!(env.log().matches(FAILED_LINE).count(), 1, "{}", env.log());
}

/// r1 runs a program from its lock directory, removed since it started:
/// when r2 cannot start and the pass starts r1 again, r1 cannot start
/// either, and nothing of the app runs. A retry stops nothing then, so r2
/// stays on the back-off (it used to be "not retried", leaving the app
/// down until someone came); once r1 can start again, the next retry puts
/// it back, and from then on r2 is not retried.
#[tokio::test]
async fn a_release_whose_put_back_fails_too_is_retried_while_nothing_runs() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let program = env.service_dir("app1/main").join("run");
    let put = || {
        std::fs::write(
            &program,
            "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.2; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    put();
    let with = |n: u32, command: &str| {
        let mut r = release(&image, n);
        r["apps"]["app1"]["services"]["main"]["command"] = json!([command]);
        r
    };
    ok(&env.apply(&with(1, "/tmp/balena/run")));
    env.wait_release("app1", "applied", "r1").await;
    let c1 = env.container_of("app1", "main");
    std::fs::remove_file(&program).unwrap();

    ok(&env.apply(&with(2, "/bin/sleeep")));
    let st = env.wait_release("app1", "failed", "r2").await;
    let error = st["error"].as_str().unwrap();
    assert!(
        error.contains("the previous containers could not be started again"),
        "{st}"
    );
    assert!(!error.ends_with(NOT_RETRIED), "{st}");
    assert!(st.get("retry_at").is_some(), "a retry stops nothing: {st}");

    // r1 can start again: a retry fails on r2 and puts r1 back for good.
    put();
    wait_for(Duration::from_secs(90), || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let st = env.apps().await;
        let error = st["app1"]["error"].as_str().unwrap_or_default().to_owned();
        st["app1"]["state"] == "failed" && error.ends_with(NOT_RETRIED)
    })
    .await
    .unwrap_or_else(|_| panic!("r1 was not put back:\n{}", env.log()));
    assert_eq!(env.container_of("app1", "main"), c1, "r1 runs again");
    let since = now();
    let seen = deaths(&env, &c1, since, since + RETRY_MIN.as_secs_f64() + 3.0);
    assert_eq!(seen, Vec::<String>::new(), "{}", env.log());
    assert_eq!(env.container_of("app1", "main"), c1);
}

/// The engine's refusal quotes the target's command raw (`stat
/// /bin/x<ESC>[31m: no such file`): a new app whose container cannot
/// start is failed with that text, which reached the status, `holdfast
/// status` and the journal line with the escape sequence in it.
#[tokio::test]
async fn an_engine_refusal_quoting_the_target_is_shown_escaped() {
    let mut env = Env::with_docker();
    let image = env.busybox_image();
    env.start_daemon().await;
    let mut r1 = release(&image, 1);
    r1["apps"]["app1"]["services"]["main"]["command"] = json!(["/bin/x\u{1b}[31mred"]);
    ok(&env.apply(&r1));
    let st = env.wait_release("app1", "failed", "r1").await;
    let error = st["error"].as_str().unwrap();
    assert!(error.contains("/bin/x\\u{1b}[31mred"), "{st}");
    assert!(!error.contains('\u{1b}'), "{st}");
    let status = ok(&env.cli(&["status"]));
    assert!(status.contains("app app1 failed release r1"), "{status}");
    assert!(!status.contains('\u{1b}'), "{status}");
    let log = env.log();
    assert!(log.contains("update of app app1 failed"), "{log}");
    assert!(!log.contains("\u{1b}[31m"), "{log}");
}
