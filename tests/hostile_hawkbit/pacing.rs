//! What an action that waits or fails costs (requests, downloads, files
//! on disk) against the hostile server: part of tests/hostile_hawkbit.rs.

use std::time::{Duration, Instant};

use super::common::{self, Env};
use super::fake::{Dl, Fake, Link, Offer};
use super::{details, release, start, swu};
/// What one hostile behaviour costs with the server's interval at 2 s:
/// polls and requests over `window` from the first try, downloads in all.
struct Cost {
    polls: usize,
    downloads: usize,
    requests: usize,
    fake: Fake,
    env: Env,
}

async fn cost(offer: Offer, window: Duration) -> Cost {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    fake.set(|s| {
        s.sleep = "00:00:02".into();
        s.offer = Some(offer.clone());
    });
    start(&mut env, &fake, "").await;
    let id = offer.id.clone();
    // The first try: a download asked for, or (a link holdfast does not
    // follow) the action closed.
    fake.wait(Duration::from_secs(20), "the first try", |f| {
        f.count("/dl/") > 0 || !f.closed(&id).is_empty()
    })
    .await;
    let from = fake.requests().len();
    let polls = fake.polls();
    let cpu = cpu_ticks(env.daemon_pid());
    // A bounded wait is the measure here: what did not happen in it.
    tokio::time::sleep(window).await;
    let ticks = cpu_ticks(env.daemon_pid()) - cpu;
    eprintln!(
        "holdfastd used {}% of a core",
        ticks as f64 / window.as_secs_f64()
    );
    Cost {
        polls: fake.polls() - polls,
        downloads: fake.count("/dl/"),
        requests: fake.requests().len() - from,
        fake,
        env,
    }
}

/// holdfastd's CPU time so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// 8 s at a 2 s interval: about 4 polls (5 with the spread), each a poll
/// and a deploymentBase; the old code made hundreds of cycles a second.
const WINDOW: Duration = Duration::from_secs(8);

fn assert_paced(c: &Cost, max_downloads: usize) {
    eprintln!(
        "in {WINDOW:?}: {} polls, {} requests; {} downloads in all",
        c.polls, c.requests, c.downloads
    );
    assert!(c.polls <= 6, "{} polls in {WINDOW:?}", c.polls);
    assert!(
        c.downloads <= max_downloads,
        "{} downloads in {WINDOW:?}",
        c.downloads
    );
    assert!(
        c.requests <= 2 * 6 + 4 * max_downloads + 12,
        "{} requests in {WINDOW:?}; log:\n{}",
        c.requests,
        c.env.log()
    );
}

#[tokio::test]
async fn a_closed_window_is_downloaded_once_and_waits_without_asking_again() {
    let mut o = Offer::new("21", release());
    o.window_closed = true;
    let c = cost(o, WINDOW).await;
    assert_paced(&c, 1);
    let fb = c.fake.feedback("21");
    assert!(
        fb.iter()
            .any(|v| details(v).contains("waiting for the maintenance window")),
        "{fb:?}"
    );
    assert!(fb.len() <= 14, "{fb:?}");
}

#[tokio::test]
async fn update_skip_is_downloaded_once() {
    let mut o = Offer::new("22", release());
    o.update = "skip";
    let c = cost(o, WINDOW).await;
    assert_paced(&c, 1);
    assert!(c.env.log().contains("update: skip"), "{}", c.env.log());
}

#[tokio::test]
async fn a_503_backs_off() {
    let mut o = Offer::new("23", release());
    o.dl = Dl::Unavailable;
    let c = cost(o, WINDOW).await;
    // At 0 s, then after 5 s (the next poll after it), then 10 s later.
    assert_paced(&c, 2);
    let fb = c.fake.feedback("23");
    assert!(
        fb.iter()
            .any(|v| details(v).contains("HTTP 503; trying again")),
        "{fb:?}"
    );
    assert!(c.fake.closed("23").is_empty(), "a 503 is not the end");
}

#[tokio::test]
async fn a_download_reset_every_time_backs_off_and_resumes() {
    let mut o = Offer::new("24", release());
    o.dl = Dl::Reset;
    let c = cost(o, WINDOW).await;
    assert_paced(&c, 2);
    // The second try asks for the rest.
    let tries: Vec<_> = c
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/dl/"))
        .collect();
    assert!(
        tries.len() < 2
            || tries[1]
                .headers
                .get("range")
                .is_some_and(|r| r != "bytes=0-"),
        "{:?}",
        tries[1].headers
    );
}

#[tokio::test]
async fn a_206_with_the_wrong_range_says_what_was_wrong_and_backs_off() {
    let mut o = Offer::new("25", release());
    o.dl = Dl::BadRange;
    let c = cost(o, Duration::from_secs(10)).await;
    assert_paced(&c, 2);
    let fb = c.fake.feedback("25");
    assert!(
        fb.iter()
            .any(|v| details(v).contains("the server answered 206 Partial Content from byte 0")),
        "{fb:?}"
    );
}

#[tokio::test]
async fn a_wrong_hash_is_reported_once_and_not_downloaded_again() {
    let mut o = Offer::new("26", release());
    o.sha256 = "0".repeat(64);
    let c = cost(o, WINDOW).await;
    assert_paced(&c, 1);
    let closed = c.fake.closed("26");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["status"]["result"]["finished"], "failure");
    assert!(details(&closed[0]).contains("sha256 is"), "{closed:?}");
}

#[tokio::test]
async fn a_file_link_or_a_redirect_is_refused_once() {
    let mut o = Offer::new("27", release());
    o.link = Link::File;
    let c = cost(o, WINDOW).await;
    assert_paced(&c, 0);
    let closed = c.fake.closed("27");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(
        details(&closed[0]).contains("holdfast follows only http and https links"),
        "{closed:?}"
    );

    let mut o = Offer::new("28", release());
    o.dl = Dl::Redirect;
    let c = cost(o, WINDOW).await;
    assert_paced(&c, 1);
    let closed = c.fake.closed("28");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(
        details(&closed[0]).contains("holdfast does not follow redirects"),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_server_that_always_asks_for_config_data_is_polled_at_its_interval() {
    let mut env = Env::new();
    let fake = Fake::start(None).await;
    fake.set(|s| {
        s.sleep = "00:00:03".into();
        s.always_config = true;
    });
    start(&mut env, &fake, "").await;
    fake.wait(Duration::from_secs(10), "configData", |f| {
        f.count("/configData") > 0
    })
    .await;
    // What did not happen in a bounded time is the measure.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The first answer brings the next poll within a second, then the
    // server's 3 s (spread by a tenth).
    let polls = fake.polls();
    assert!((2..=6).contains(&polls), "{polls} polls in 10 s");
}

/// The `.swu` and `.part` files in the download directory.
fn artifacts(env: &Env) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(env.state().join("hawkbit")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".swu") || n.ends_with(".part") || n.starts_with("images-"))
        .collect()
}

/// A new action (id and artifact) at every poll: each downloaded, each
/// superseded by the next; the directory never holds more than two.
async fn superseded(dl: Dl) {
    let mut env = Env::new();
    // Left by an earlier run: gone at start.
    let hb = env.state().join("hawkbit");
    std::fs::create_dir_all(hb.join("images-9")).unwrap();
    std::fs::set_permissions(&hb, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for f in ["0000.swu", "1111.part", "images-9/app.tar"] {
        std::fs::write(hb.join(f), "old").unwrap();
    }
    let fake = Fake::start(None).await;
    let mut o = Offer::new("x", swu::noise(1 << 20, 7));
    o.window_closed = true;
    o.dl = dl;
    fake.set(|s| s.rotate = Some(o));
    start(&mut env, &fake, "").await;
    common::wait_for(Duration::from_secs(10), || async {
        ["0000.swu", "1111.part", "images-9"]
            .iter()
            .all(|f| !hb.join(f).exists())
    })
    .await
    .expect("what an earlier run left is removed at start");
    let start = Instant::now();
    let mut most = Vec::new();
    while start.elapsed() < Duration::from_secs(8) {
        let now = artifacts(&env);
        if now.len() > most.len() {
            most = now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let downloads = fake.count("/dl/");
    assert!(
        downloads >= 4,
        "only {downloads} downloads: the test saw too little"
    );
    assert!(most.len() <= 2, "at once: {most:?}");
}

#[tokio::test]
async fn superseded_downloads_are_deleted() {
    superseded(Dl::Full).await;
}

#[tokio::test]
async fn superseded_partial_downloads_are_deleted() {
    superseded(Dl::Reset).await;
}

/// Unmounts on drop, so the test's directory can go.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_and_leaves_nothing_half_written() {
    let mut env = Env::new();
    // The download directory on a 1 MiB file system; the release is 2 MiB.
    let hb = env.state().join("hawkbit");
    std::fs::create_dir_all(&hb).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &hb,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m,mode=0700"),
    )
    .unwrap();
    let _mount = Mount(hb.clone());
    let fake = Fake::start(None).await;
    fake.set(|s| s.offer = Some(Offer::new("71", release())));
    start(&mut env, &fake, "").await;
    fake.wait(Duration::from_secs(20), "the report", |f| {
        f.feedback("71").iter().any(|v| {
            let d = details(v);
            d.contains("No space left on device") && d.contains("trying again")
        })
    })
    .await;
    assert!(fake.closed("71").is_empty(), "a full disk is not the end");
    let left: Vec<String> = artifacts(&env);
    assert!(left.is_empty(), "half-written: {left:?}");
    env.wait_log(
        "No space left on device",
        Duration::from_secs(10),
        "the log",
    )
    .await;
}
