//! Maintenance windows (`[update.periodic]`) against a real holdfastd,
//! dockerd and logind: outside every window no app is updated and holdfast
//! does not reboot; a window opening (by the clock, or a reload) lets both
//! go.

mod common;

use std::time::Duration;

use common::engine::release;
use common::{ok, periodic_window, wait_for, Env};
use jiff::{Timestamp, ToSpan};

/// How the daemon shows a window edge: `Mon 22:30 UTC`.
fn shown(at: Timestamp) -> String {
    at.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a %H:%M UTC")
        .to_string()
}

async fn maintenance_window(env: &Env) -> String {
    env.fresh_supervisor()
        .await
        .maintenance_window()
        .await
        .unwrap()
}

/// A POST to the HTTP API with the device key: (status, body).
fn post(env: &Env, path: &str, body: &str) -> (String, String) {
    let key = std::fs::read_to_string(env.state().join("api-key")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(env.dir.join("api.sock"))
        .args([
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {}", key.trim()),
        ])
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or_default();
    (code.to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_closed_window_holds_back_an_apply_and_a_reboot_until_a_window_opens() {
    let mut env = Env::with_docker();
    let reg = env.registry();
    let image = env.push(&reg, "w:1");
    // Three days from now, for an hour: closed now whatever the time.
    let opens = Timestamp::now() + 72.hours();
    env.write_config(&periodic_window(opens, 60));
    env.start_daemon().await;
    let closed = format!("closed until {}", shown(opens));
    assert_eq!(maintenance_window(&env).await, closed);

    // An apply waits, and says for what. It is prepared (pulled, its
    // container created) as a download would be; nothing starts.
    ok(&env.apply(&release(&image, 1)));
    let app = env.wait_release("app1", "waiting", "r1").await;
    assert_eq!(
        app["blocked_by"],
        serde_json::json!([format!("window:{closed}")])
    );
    let made = env.containers("app1");
    assert!(
        made.iter().all(|c| c.2 == "created"),
        "{made:?}\n{}",
        env.log()
    );
    // A second pass finds the container made and has no lock to take: the
    // window still holds its start back.
    let waits = |env: &Env| {
        env.log()
            .matches("update of app app1 waits: window:")
            .count()
    };
    assert_eq!(waits(&env), 1);
    ok(&env.cli(&["update"]));
    wait_for(Duration::from_secs(10), || async { waits(&env) == 2 })
        .await
        .unwrap_or_else(|_| panic!("no second pass: {}", env.log()));
    let made = env.containers("app1");
    assert!(
        made.iter().all(|c| c.2 == "created"),
        "{made:?}\n{}",
        env.log()
    );
    let text = ok(&env.cli(&["status"]));
    assert!(
        text.contains(&format!("maintenance window: {closed}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("; maintenance window {closed}")),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&env.cli(&["status", "--json"]))).unwrap();
    assert_eq!(json["maintenance_window"], closed.as_str());

    // A reboot is refused for the window (a power-off is not held back by
    // it; forced, a reboot goes: this logind refuses it).
    let out = env.cli(&["reboot"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the maintenance window is {closed}; not going to reboot"
        )),
        "{err}"
    );
    let out = env.cli(&["reboot", "--force"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logind refused to reboot"),
        "{out:?}"
    );
    assert!(
        env.log()
            .contains("forced reboot through the closed maintenance window"),
        "{}",
        env.log()
    );

    // A window open now, by a reload: the apply goes on at once.
    env.write_config(&periodic_window(Timestamp::now() - 30.minutes(), 120));
    env.reload();
    env.wait_release("app1", "applied", "r1").await;
    assert_eq!(maintenance_window(&env).await, "open");
    assert!(
        env.log().contains("applied update.periodic"),
        "{}",
        env.log()
    );
    let out = env.cli(&["reboot"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logind refused to reboot"),
        "{out:?}"
    );

    // Closed again: a purge (an operator's repair) brings the app back at
    // once rather than leaving it down until the next window.
    let before = env.container_of("app1", "main");
    env.write_config(&periodic_window(opens, 60));
    env.reload();
    wait_for(Duration::from_secs(10), || async {
        maintenance_window(&env).await.starts_with("closed")
    })
    .await
    .unwrap_or_else(|_| panic!("never closed: {}", env.log()));
    let (code, body) = post(&env, "/v2/applications/app1/purge", "{}");
    assert_eq!(code, "200", "{body}\n{}", env.log());
    let purged = env.container_of("app1", "main");
    assert_ne!(purged, before);
    // A restart is no release: not held back either.
    let (code, body) = post(&env, "/v2/applications/app1/restart", "{}");
    assert_eq!(code, "200", "{body}\n{}", env.log());
    assert_eq!(
        env.container_of("app1", "main"),
        purged,
        "restarted in place"
    );

    // A new release held back is prepared next to the one that runs; a
    // service's restart, stop and start act on the one that runs and
    // never start the prepared one past the window.
    ok(&env.apply(&release(&image, 2)));
    env.wait_release("app1", "waiting", "r2").await;
    let prepared = |env: &Env| {
        let all = env.containers("app1");
        let new: Vec<_> = all.iter().filter(|c| c.1 != purged).collect();
        assert_eq!(new.len(), 1, "{all:?}");
        assert_eq!(new[0].2, "created", "{all:?}\n{}", env.log());
    };
    prepared(&env);
    for action in ["restart", "stop", "start"] {
        let (code, body) = post(
            &env,
            &format!("/v2/applications/app1/{action}-service"),
            r#"{"serviceName":"main"}"#,
        );
        assert_eq!(code, "200", "{action}: {body}\n{}", env.log());
        prepared(&env);
    }
    assert_eq!(env.container_of("app1", "main"), purged, "started again");

    // No windows: at any time, and the property says nothing; the held
    // release goes on.
    env.write_config("");
    env.reload();
    wait_for(Duration::from_secs(10), || async {
        maintenance_window(&env).await.is_empty()
    })
    .await
    .unwrap_or_else(|_| panic!("still a window: {}", env.log()));
    env.wait_release("app1", "applied", "r2").await;
}

/// A window that opens on the next minute: a pending reboot waits for it,
/// with no polling by the test beyond reading what holdfast says.
#[tokio::test]
async fn a_pending_reboot_waits_for_the_window_to_open_on_the_clock() {
    let mut env = Env::new();
    // The next minute, or the one after when this one is nearly over (the
    // daemon must come up while the window is still closed).
    let now = Timestamp::now().as_second();
    let ahead = if now % 60 > 50 { 120 } else { 60 };
    let next_minute = Timestamp::from_second(now - now % 60 + ahead).unwrap();
    env.write_config(&periodic_window(next_minute, 1));
    env.start_daemon().await;
    assert_eq!(
        maintenance_window(&env).await,
        format!("closed until {}", shown(next_minute))
    );

    ok(&env.cli(&["reboot", "--when-unlocked"]));
    env.wait_log(
        "pending reboot waits: the maintenance window is closed until",
        Duration::from_secs(10),
        "the pending reboot did not say it waits for the window",
    )
    .await;
    assert!(!env.log().contains("logind refused to reboot"));

    // At the window's minute the reboot goes (this logind refuses it).
    env.wait_log(
        "logind refused to reboot",
        Duration::from_secs(100),
        "the reboot never went",
    )
    .await;
    assert!(
        Timestamp::now() >= next_minute,
        "went before the window opened"
    );
    let log = env.log();
    assert!(log.contains("maintenance window open until"), "{log}");
}
