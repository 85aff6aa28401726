//! Config files, special files and reloads against a real holdfastd: the
//! user's config.txt bytes, a remounted boot partition, SIGHUP, FIFOs and
//! devices where files belong, and strict config.json / target parsing.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{ok, wait_for, Env};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

fn pid(env: &Env) -> Pid {
    Pid::from_raw(env.daemon.as_ref().unwrap().id() as i32)
}

fn hup(env: &Env) {
    kill(pid(env), Signal::SIGHUP).unwrap();
}

async fn wait_log(env: &Env, needle: &str) {
    let r = wait_for(Duration::from_secs(10), || async {
        env.log().contains(needle)
    })
    .await;
    assert!(r.is_ok(), "log never said {needle:?}:\n{}", env.log());
}

/// The inhibitor for `why` (or none) within `within`: the daemon's single
/// thread is not stuck on a file.
async fn inhibitor_within(env: &Env, why: Option<&str>, within: Duration) {
    let r = wait_for(within, || async {
        let inh = env.holdfast_inhibitors().await;
        match why {
            Some(w) => inh.len() == 1 && inh[0].1 == w,
            None => inh.is_empty(),
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "inhibitor not {why:?} within {within:?}; logind lists {:?}\nlog:\n{}",
        env.holdfast_inhibitors().await,
        env.log()
    );
}

/// An app locks app1/main: the inhibitor follows within 2 s; then it
/// unlocks and the inhibitor goes.
async fn lock_is_seen_within_2s(env: &Env) {
    env.service_dir("app1/main");
    ok(&env.sh("set -C; : > $L/app1/main/updates.lock"));
    inhibitor_within(
        env,
        Some("update lock held by app1/main"),
        Duration::from_secs(2),
    )
    .await;
    ok(&env.sh("rm $L/app1/main/updates.lock"));
    inhibitor_within(env, None, Duration::from_secs(10)).await;
}

async fn proxy(env: &Env) -> holdfast::dbus::Supervisor1Proxy<'static> {
    env.fresh_supervisor().await
}

async fn lock_override(env: &Env) -> bool {
    proxy(env).await.lock_override().await.unwrap()
}

/// A FIFO renamed over `path`, as a writer that swaps files in would: the
/// watch sees a rename onto the name.
fn fifo_over(path: &Path) {
    let tmp = path.with_extension("fifo-tmp");
    nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn mount_tmpfs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .output()
        .unwrap();
    ok(&out);
}

/// A tmpfs on `dir` for this test, unmounted (lazily) when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(dir: &Path) -> Self {
        mount_tmpfs(dir);
        Mounted(dir.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // The test may have stacked a second one on it.
        for _ in 0..4 {
            let mounted = Command::new("mountpoint")
                .arg("-q")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if !mounted {
                break;
            }
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

// ---------------------------------------------------------------- item 2

/// A Raspberry Pi config.txt as users leave them: a latin-1 comment, CRLF
/// lines, no final newline.
const CONFIG_TXT: &[u8] =
    b"dtoverlay=vc4\n# caf\xe9 \xff\r\nenable_uart=1\r\ngpu_mem=16\r\nhdmi_group=2";

#[tokio::test]
async fn config_txt_keeps_every_byte_outside_holdfasts_keys() {
    let mut env = Env::new();
    let txt = env.dir.join("boot/config.txt");
    std::fs::create_dir_all(txt.parent().unwrap()).unwrap();
    std::fs::write(&txt, CONFIG_TXT).unwrap();
    env.start_with_app1_main_locked().await;

    // Staged while app1 holds its lock: nothing is written yet.
    ok(&env.apply(&json!({"version": 1, "apps": {},
        "config": {"BALENA_HOST_CONFIG_gpu_mem": "64"}})));
    wait_log(&env, "boot config change staged").await;
    assert_eq!(std::fs::read(&txt).unwrap(), CONFIG_TXT);

    // A forced reboot writes it before asking logind (which refuses here).
    let out = env.cli(&["reboot", "--force"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logind refused"),
        "{out:?}"
    );
    wait_log(&env, "staged boot config written before the reboot").await;
    // The old code read the file as UTF-8 and, failing, as empty: it wrote
    // "gpu_mem=64\n" alone.
    let want = b"dtoverlay=vc4\n# caf\xe9 \xff\r\nenable_uart=1\r\ngpu_mem=64\r\nhdmi_group=2";
    let got = std::fs::read(&txt).unwrap();
    assert!(
        got == want,
        "config.txt is now {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn damaged_boot_state_writes_nothing_and_says_so() {
    let mut env = Env::new();
    let txt = env.dir.join("boot/config.txt");
    std::fs::create_dir_all(txt.parent().unwrap()).unwrap();
    std::fs::write(&txt, CONFIG_TXT).unwrap();
    env.start_with_app1_main_locked().await;
    ok(&env.apply(&json!({"version": 1, "apps": {},
        "config": {"BALENA_HOST_CONFIG_gpu_mem": "64"}})));
    wait_log(&env, "boot config change staged").await;

    // The record of what holdfast manages is damaged after staging.
    let state = env.state().join("boot-config.json");
    let damaged = b"{\"managed\": [\"gpu_mem\"], \"staged\": {\"gpu_m";
    std::fs::write(&state, damaged).unwrap();

    // The reboot may go, but config.txt is not touched (the old code read a
    // damaged record as "nothing staged, nothing managed").
    let out = env.cli(&["reboot", "--force"]);
    assert!(!out.status.success(), "{out:?}");
    wait_log(&env, "cannot write the staged boot config").await;
    assert!(env.log().contains("boot-config.json is damaged"));

    // A new target cannot be staged either; the record is left for the
    // user to look at, not overwritten with a fresh one.
    ok(&env.apply(&json!({"version": 1, "apps": {},
        "config": {"BALENA_HOST_CONFIG_gpu_mem": "128"}})));
    wait_log(&env, "cannot stage device config").await;
    assert_eq!(std::fs::read(&txt).unwrap(), CONFIG_TXT);
    assert_eq!(std::fs::read(&state).unwrap(), damaged);
}

// ---------------------------------------------------------------- item 7

#[tokio::test]
async fn a_remounted_boot_partition_is_followed() {
    let mut env = Env::new();
    let boot = env.dir.join("boot");
    let _mounted = Mounted::new(&boot);
    let config_json = boot.join("config.json");
    std::fs::write(
        &config_json,
        r#"{"deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "0"}}"#,
    )
    .unwrap();
    env.start_daemon().await;
    assert!(!lock_override(&env).await);

    // The boot partition goes (fsck, an OS update) and a fresh one comes.
    ok(&Command::new("umount").arg(&boot).output().unwrap());
    // It notices (and watches the bare mount point meanwhile).
    wait_log(&env, "config.json is gone").await;
    mount_tmpfs(&boot);
    std::fs::write(
        &config_json,
        r#"{"deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": "1"}}"#,
    )
    .unwrap();
    // The old code ignored IN_UNMOUNT/IN_IGNORED: its watch was dead.
    let r = wait_for(Duration::from_secs(8), || lock_override(&env)).await;
    assert!(
        r.is_ok(),
        "the override in the new config.json was never seen:\n{}",
        env.log()
    );
}

/// The main config with every path of this test's directories, and
/// `changes` (dotted key -> TOML value) replacing or adding keys.
fn write_main_config(env: &Env, changes: &[(&str, String)]) {
    let d = env.dir.display();
    let q = |s: String| format!("\"{s}\"");
    let mut keys: Vec<(&str, String)> = vec![
        ("lock_root", q(format!("{d}/locks"))),
        ("state_dir", q(format!("{d}/state"))),
        ("config_dirs", format!("[\"{d}/config.d\"]")),
        ("config_json", q(format!("{d}/boot/config.json"))),
        ("target.file", q(format!("{d}/state/target.json"))),
        ("engine.socket", q(format!("{d}/docker/docker.sock"))),
        ("api.socket", q(format!("{d}/api.sock"))),
        ("boot.config_txt", q(format!("{d}/boot/config.txt"))),
        ("inhibit.what", "[\"shutdown\"]".into()),
    ];
    for (k, v) in changes {
        match keys.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => keys.push((k, v.clone())),
        }
    }
    let text: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    std::fs::write(env.config_path(), text).unwrap();
}

fn curl_ping(socket: &Path) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "--unix-socket"])
        .arg(socket)
        .arg("http://localhost/ping")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn sighup_applies_every_key_it_can_and_names_the_rest() {
    let mut env = Env::new();
    write_main_config(&env, &[]);
    env.start_with_app1_main_locked().await;
    let d = env.dir.clone();

    let new_target = d.join("targets/target.json");
    let new_api = d.join("api2.sock");
    let new_json = d.join("boot2/config.json");
    std::fs::create_dir_all(new_json.parent().unwrap()).unwrap();
    std::fs::write(
        &new_json,
        r#"{"deviceConfig": {"RESIN_OVERRIDE_LOCK": "0"}}"#,
    )
    .unwrap();
    write_main_config(
        &env,
        &[
            ("config_json", format!("\"{}\"", new_json.display())),
            ("inhibit.what", "[\"shutdown\", \"sleep\"]".into()),
            ("engine.socket", format!("\"{}/engine2.sock\"", d.display())),
            ("api.socket", format!("\"{}\"", new_api.display())),
            ("target.file", format!("\"{}\"", new_target.display())),
            ("lock_root", format!("\"{}/locks2\"", d.display())),
        ],
    );
    hup(&env);
    wait_log(&env, "configuration reloaded").await;
    let log = env.log();
    assert!(
        log.contains(
            "configuration reloaded: applied config_json, inhibit.what, engine.socket, target.file, api.socket"
        ),
        "{log}"
    );
    assert!(
        log.contains("lock_root changed; it takes effect at the next restart"),
        "{log}"
    );

    // In force: the new values, the old lock root.
    let cfg: Value =
        serde_json::from_str(&proxy(&env).await.config_in_force().await.unwrap()).unwrap();
    assert_eq!(cfg["inhibit_what"], json!(["shutdown", "sleep"]));
    assert_eq!(
        cfg["engine_socket"],
        json!(format!("{}/engine2.sock", d.display()))
    );
    assert_eq!(cfg["api_socket"], json!(new_api));
    assert_eq!(cfg["target_file"], json!(new_target));
    assert_eq!(cfg["config_json"], json!(new_json));
    assert_eq!(cfg["lock_root"], json!(env.locks()));

    // ...and acted on: the inhibitor's what, the API's socket, the
    // config.json and target file followed.
    let r = wait_for(Duration::from_secs(10), || async {
        proxy(&env).await.lock_override_source().await.unwrap()
            == "deviceConfig.RESIN_OVERRIDE_LOCK"
    })
    .await;
    assert!(
        r.is_ok(),
        "the new config.json was not read:\n{}",
        env.log()
    );
    let r = wait_for(Duration::from_secs(10), || async {
        env.holdfast_inhibitors()
            .await
            .first()
            .is_some_and(|i| i.0 == "shutdown:sleep")
    })
    .await;
    assert!(r.is_ok(), "inhibitor what never changed:\n{}", env.log());
    let r = wait_for(Duration::from_secs(10), || async {
        curl_ping(&new_api) == "OK"
    })
    .await;
    assert!(r.is_ok(), "no API on {}:\n{}", new_api.display(), env.log());
    std::fs::write(
        &new_target,
        r#"{"version": 1, "apps": {}, "config": {"HOLDFAST_NOTE": "from the new file"}}"#,
    )
    .unwrap();
    wait_log(&env, "target file read").await;

    // config show marks only what is not in force: the lock root.
    let shown = ok(&env.cli(&["config", "show"]));
    let marked: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("not in force"))
        .collect();
    assert_eq!(marked.len(), 1, "{shown}");
    assert!(marked[0].starts_with("lock_root = "), "{shown}");
}

// ---------------------------------------------------------------- item 13

fn vm_rss_kib(env: &Env) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid(env))).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_dropin_on_dev_zero_is_refused_without_growing() {
    let mut env = Env::new();
    env.start_daemon().await;
    let dropin = env.dir.join("config.d/50-zero.toml");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    symlink("/dev/zero", &dropin).unwrap();

    hup(&env);
    wait_log(&env, "configuration rejected").await;
    let log = env.log();
    assert!(
        log.contains(&format!("{}: is a character device", dropin.display())),
        "{log}"
    );
    // The old code read /dev/zero to the end: 4.3 GB in 15 s.
    let rss = vm_rss_kib(&env);
    assert!(rss < 30 * 1024, "VmRSS {rss} KiB");
    assert!(proxy(&env).await.version().await.is_ok());
    lock_is_seen_within_2s(&env).await;
}

#[tokio::test]
async fn fifos_as_config_files_block_nothing() {
    let mut env = Env::new();
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
    std::fs::write(env.dir.join("boot/config.json"), "{}").unwrap();
    env.start_daemon().await;

    // A drop-in: the old code's open() waited for a writer, forever.
    let dropin = env.dir.join("config.d/60-fifo.toml");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&dropin, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    hup(&env);
    lock_is_seen_within_2s(&env).await;
    wait_log(
        &env,
        &format!("{}: is a FIFO, not a regular file", dropin.display()),
    )
    .await;
    std::fs::remove_file(&dropin).unwrap();

    // The target file, renamed over (an event the target task acts on).
    fifo_over(&env.target_file());
    lock_is_seen_within_2s(&env).await;
    wait_log(&env, "target file rejected").await;

    // config.json.
    fifo_over(&env.dir.join("boot/config.json"));
    lock_is_seen_within_2s(&env).await;
    wait_log(&env, "cannot read config.json").await;
    assert!(env.log().contains("is a FIFO"));
    assert!(proxy(&env).await.version().await.is_ok());
}

// ---------------------------------------------------------------- item 14

#[tokio::test]
async fn a_nul_in_an_app_name_is_refused_and_the_daemon_stays_on_the_bus() {
    let mut env = Env::new();
    env.start_daemon().await;
    let sup = env.supervisor().await;
    let t = r#"{"version": 1, "apps": {"a\u0000b": {"release": "r1", "services": {}}}}"#;
    let e = sup.set_target(t).await.unwrap_err();
    assert!(e.to_string().contains("Error.InvalidTarget"), "{e}");
    // The old code put the NUL into its reply, and the bus dropped it.
    assert!(
        common::name_has_owner(&env.bus, "org.holdfast.Supervisor1").await,
        "{}",
        env.log()
    );
    assert!(sup.version().await.is_ok());
    let ping = sup.set_target(r#"{"version": 1, "apps": {}}"#).await;
    assert!(ping.is_ok(), "{ping:?}");
    assert!(
        !env.log().contains("reconnected to the system bus"),
        "{}",
        env.log()
    );
}

/// config.json written in place (open with truncate, write, close), as
/// `printf ... > config.json` does.
fn write_in_place(env: &Env, text: &str) {
    std::fs::write(env.dir.join("boot/config.json"), text).unwrap();
}

#[tokio::test]
async fn config_json_integer_one_is_on_and_duplicate_keys_change_nothing() {
    let mut env = Env::new();
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
    env.start_with_app1_main_locked().await;
    let lock = env.locks().join("app1/main/updates.lock");

    // Which copy wins would decide whether the lock is deleted: rejected.
    write_in_place(
        &env,
        "{\"deviceConfig\": {\"BALENA_SUPERVISOR_OVERRIDE_LOCK\": \"0\",\n  \"BALENA_SUPERVISOR_OVERRIDE_LOCK\": \"1\"}}",
    );
    wait_log(&env, "duplicate key").await;
    assert!(
        env.log().contains("line 2 column 37"),
        "no line and column:\n{}",
        env.log()
    );
    assert!(!lock_override(&env).await);
    assert!(lock.exists(), "the duplicate deleted the app's lock");
    inhibitor_within(
        &env,
        Some("update lock held by app1/main"),
        Duration::from_secs(1),
    )
    .await;

    // balena's truthy 1 (a number) is on, as the error text always said.
    write_in_place(
        &env,
        r#"{"deviceConfig": {"BALENA_SUPERVISOR_OVERRIDE_LOCK": 1}}"#,
    );
    let r = wait_for(Duration::from_secs(5), || lock_override(&env)).await;
    assert!(r.is_ok(), "integer 1 not taken as on:\n{}", env.log());
    assert!(!env.log().contains("is not one of"), "{}", env.log());
}

#[tokio::test]
async fn in_place_rewrites_of_config_json_log_no_error() {
    let mut env = Env::new();
    std::fs::create_dir_all(env.dir.join("boot")).unwrap();
    write_in_place(&env, r#"{"uuid": "d0"}"#);
    env.start_daemon().await;

    // 200 rewrites, paced unevenly so that some reads of the daemon fall
    // between a truncate and its write.
    for i in 0..200u64 {
        let v = if i == 199 { "1" } else { "0" };
        write_in_place(
            &env,
            &format!(
                r#"{{"uuid": "d{i}", "deviceConfig": {{"BALENA_SUPERVISOR_OVERRIDE_LOCK": "{v}"}}}}"#
            ),
        );
        tokio::time::sleep(Duration::from_micros((i * 7919) % 60_000)).await;
    }
    let r = wait_for(Duration::from_secs(5), || lock_override(&env)).await;
    assert!(r.is_ok(), "the last rewrite was not taken:\n{}", env.log());
    let log = env.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("ERROR") || l.contains("WARN")) && l.contains("config.json"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
