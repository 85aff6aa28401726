//! inotify queue overflow: holdfastd rescans and ends up with the truth.
//! Alone in its test binary because it lowers a system-wide sysctl for a
//! moment (the queue size is fixed when an inotify instance is created).

mod common;

use std::time::Duration;

use common::{ok, wait_for, Env};

const SYSCTL: &str = "/proc/sys/fs/inotify/max_queued_events";

#[tokio::test]
async fn queue_overflow_triggers_a_rescan() {
    let mut env = Env::new();
    for i in 0..100 {
        env.service_dir(&format!("app1/s{i}"));
    }
    let saved = std::fs::read_to_string(SYSCTL).unwrap();
    std::fs::write(SYSCTL, "8").unwrap();
    env.start_daemon().await;
    std::fs::write(SYSCTL, saved.trim()).unwrap();

    // Stop the daemon's event loop while 100 locks appear, so its small
    // queue overflows for certain.
    let pid = nix::unistd::Pid::from_raw(env.daemon.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    ok(&env.sh("for i in $(seq 0 99); do set -C; : > $L/app1/s$i/updates.lock; done"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();

    let p = env.supervisor().await;
    let all = wait_for(Duration::from_secs(15), || async {
        p.locks().await.map(|l| l.len() == 100).unwrap_or(false)
    })
    .await;
    assert!(
        all.is_ok(),
        "{} locks seen\n{}",
        p.locks().await.unwrap().len(),
        env.log()
    );
    assert!(
        env.log().contains("inotify queue overflowed; rescanning"),
        "{}",
        env.log()
    );
    env.wait_inhibitor(Some("update lock held by app1/s0, app1/s1, app1/s10, app1/s11, app1/s12, app1/s13, app1/s14, app1/s15, app1/s16, app1/s17, and 90 more")).await;

    // Watching still works after the rescan.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    ok(&env.sh("rm -f $L/app1/s*/updates.lock"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    env.wait_inhibitor(None).await;
    // Read it fresh: a proxy's property cache follows change signals later.
    let fresh = env.fresh_supervisor().await;
    assert!(!fresh.locked().await.unwrap());
}
