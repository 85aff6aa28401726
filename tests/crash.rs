//! holdfastd SIGKILLed at many points of an update, then restarted:
//! it converges to the target with no duplicate or lost container, its
//! own leftover locks cleaned and app locks untouched.

mod common;

use std::time::Duration;

use common::engine::{service, target};
use common::{ok, Env};
use nix::sys::signal::Signal;
use serde_json::json;

fn app(image: &str, round: usize) -> serde_json::Value {
    let svc = |deps: &[&str]| {
        let mut s = service(image);
        s["environment"] = json!({"ROUND": round.to_string()});
        s["depends_on"] = json!(deps);
        s
    };
    json!({"release": format!("r{round}"), "services": {"a": svc(&[]), "b": svc(&["a"]), "c": svc(&["b"])}})
}

#[tokio::test]
async fn sigkill_at_any_step_converges_after_restart() {
    let mut env = Env::with_docker();
    let reg = env.registry();
    let image = env.push(&reg, "crash:1");
    // Another app's lock, outside the target: never touched.
    let other = env.service_dir("app2/main");
    ok(&env.sh("set -C; : > $L/app2/main/updates.lock"));
    env.start_daemon().await;

    // Rounds 1..: killed 0 ms (during the pull of round 1) up to 800 ms
    // after the target was accepted.
    for (round, delay_ms) in [0u64, 5, 20, 50, 100, 200, 400, 800]
        .into_iter()
        .enumerate()
    {
        let round = round + 1;
        ok(&env.apply(&target(json!({"k": app(&image, round)}))));
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        env.kill_daemon(Signal::SIGKILL);
        env.start_daemon().await;
        let st = env.wait_app("k", "applied").await;
        assert_eq!(st["release"], format!("r{round}"), "round {round}");
        let containers = env.containers("k");
        assert_eq!(
            containers.len(),
            3,
            "round {round}: {containers:?}\n{}",
            env.log()
        );
        for svc in ["a", "b", "c"] {
            let c = env.container_of("k", svc);
            let e = ok(&env.exec(&c, "echo $ROUND"));
            assert_eq!(e.trim(), round.to_string(), "round {round} {svc}");
        }
        // No lock of holdfast's is left; the app's lock is still there.
        env.wait_locks(&["app2/main"]).await;
        assert!(other.join("updates.lock").exists());
    }

    // Some kills hit while holdfast held the app's locks (mid-apply).
    let leftovers = env
        .log()
        .matches("removed holdfast's own lock left over")
        .count();
    assert!(leftovers > 0, "no kill landed mid-apply:\n{}", env.log());

    // Killed during a hand-over, with both containers up.
    let ho = |img: &str, rel: &str| {
        let mut s = service(img);
        s["labels"] = json!({"io.balena.update.strategy": "hand-over",
                             "io.balena.update.handover-timeout": "1000"});
        target(json!({"h": {"release": rel, "services": {"main": s}}}))
    };
    ok(&env.apply(&ho(&image, "r1")));
    env.wait_app("h", "applied").await;
    let mut next = ho(&image, "r2");
    next["apps"]["h"]["services"]["main"]["environment"] = json!({"V": "2"});
    ok(&env.apply(&next));
    let start = std::time::Instant::now();
    while env
        .containers("h")
        .iter()
        .filter(|c| c.2 == "running")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "hand-over never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.kill_daemon(Signal::SIGKILL);
    env.start_daemon().await;
    let st = env.wait_app("h", "applied").await;
    assert_eq!(st["release"], "r2");
    assert_eq!(env.containers("h").len(), 1);
    assert!(ok(&env.exec(&env.container_of("h", "main"), "echo $V")).contains('2'));
    env.wait_locks(&["app2/main"]).await;
}
