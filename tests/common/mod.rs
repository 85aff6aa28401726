//! Per-test real components: a private dbus-daemon with systemd-logind, a
//! tmpfs lock root, optionally a private dockerd (scripts/harness.sh), and
//! holdfastd itself started as a child. Nothing is shared between tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod engine;
pub mod etcd;
pub mod goosebit;
pub mod pki;

use holdfast::command::LockInfo;
use holdfast::dbus::Supervisor1Proxy;
use holdfast::system::logind::Login1ManagerProxy;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct Env {
    pub dir: PathBuf,
    pub bus: String,
    pub docker: Option<String>,
    pub daemon: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// A TCP port on loopback nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests start logind, mount tmpfs and run dockerd: run them as root (scripts/test.sh)"
    );
}

impl Env {
    pub fn new() -> Env {
        Self::with(false)
    }

    pub fn with_docker() -> Env {
        Self::with(true)
    }

    fn with(docker: bool) -> Env {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("hf-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_owned();
        let mut cmd = Command::new(format!("{REPO}/scripts/harness.sh"));
        cmd.arg("up").arg(&dir);
        if docker {
            cmd.arg("--docker");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "harness up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bus = format!("unix:path={}/system_bus_socket", dir.display());
        let docker = docker.then(|| format!("unix://{}/docker/docker.sock", dir.display()));
        let env = Env {
            dir,
            bus,
            docker,
            daemon: None,
            _tmp: tmp,
        };
        env.write_config("");
        env
    }

    pub fn locks(&self) -> PathBuf {
        self.dir.join("locks")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("holdfast.toml")
    }

    /// Main config pointing at this test's directories, plus `extra` lines.
    pub fn write_config(&self, extra: &str) {
        let mut text = format!(
            "lock_root = \"{}\"\nstate_dir = \"{}\"\nconfig_dirs = [\"{}\"]\ntarget.file = \"{}\"\n",
            self.locks().display(),
            self.state().display(),
            self.dir.join("config.d").display(),
            self.target_file().display(),
        );
        // Never the machine's registry credentials.
        text.push_str(&format!(
            "engine.registry_auth = \"{}\"\n",
            self.registry_auth_path().display()
        ));
        // Never the machine's engine: a private one, or a socket that is not there.
        text.push_str(&format!(
            "engine.socket = \"{0}/docker/docker.sock\"\napi.socket = \"{0}/api.sock\"\nconfig_json = \"{0}/boot/config.json\"\nboot.config_txt = \"{0}/boot/config.txt\"\n{extra}",
            self.dir.display()
        ));
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// `engine.registry_auth` (absent unless a test writes it).
    pub fn registry_auth_path(&self) -> PathBuf {
        self.dir.join("registry-auth.json")
    }

    pub fn target_file(&self) -> PathBuf {
        self.state().join("target.json")
    }

    pub fn service_dir(&self, id: &str) -> PathBuf {
        let p = self.locks().join(id);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn daemon_cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_holdfastd"));
        c.arg("--config")
            .arg(self.config_path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .env("HOLDFAST_LOG_TARGET", "stderr")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(append(&self.dir.join("holdfastd.log")));
        c
    }

    /// Starts holdfastd and waits for its bus name.
    pub async fn start_daemon(&mut self) {
        let log = self.log();
        let child = self.daemon_cmd().spawn().unwrap();
        self.daemon = Some(child);
        let bus = self.bus.clone();
        wait_for(Duration::from_secs(10), || {
            let bus = bus.clone();
            async move { name_has_owner(&bus, "org.holdfast.Supervisor1").await }
        })
        .await
        .unwrap_or_else(|_| panic!("holdfastd did not come up; log:\n{log}{}", self.log()));
    }

    /// The common start: app1/main locked by an app, holdfastd up and
    /// holding its inhibitor.
    pub async fn start_with_app1_main_locked(&mut self) {
        self.service_dir("app1/main");
        ok(&self.sh("set -C; : > $L/app1/main/updates.lock"));
        self.start_daemon().await;
        self.wait_inhibitor(Some("update lock held by app1/main"))
            .await;
    }

    pub fn kill_daemon(
        &mut self,
        sig: nix::sys::signal::Signal,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.daemon.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
        Some(child.wait().unwrap())
    }

    /// `systemctl reload holdfast`: SIGHUP to the running daemon.
    pub fn reload(&self) {
        let pid = nix::unistd::Pid::from_raw(self.daemon.as_ref().unwrap().id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("holdfastd.log")).unwrap_or_default()
    }

    /// Waits until the daemon's log says `text`; panics with `what` and
    /// the log after `bound`.
    pub async fn wait_log(&self, text: &str, bound: Duration, what: &str) {
        wait_for(bound, || async { self.log().contains(text) })
            .await
            .unwrap_or_else(|_| panic!("{what}: {}", self.log()));
    }

    /// Runs the CLI against this test's bus and config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .output()
            .unwrap()
    }

    pub fn sh(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .env("L", self.locks())
            .output()
            .unwrap()
    }

    pub async fn conn(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.bus.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    pub async fn supervisor(&self) -> Supervisor1Proxy<'static> {
        Supervisor1Proxy::new(&self.conn().await).await.unwrap()
    }

    /// A proxy that reads properties from the daemon on every call (a
    /// cached one follows change signals a moment later).
    pub async fn fresh_supervisor(&self) -> Supervisor1Proxy<'static> {
        Supervisor1Proxy::builder(&self.conn().await)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    /// holdfast's inhibitors as logind lists them: (what, why, mode).
    pub async fn holdfast_inhibitors(&self) -> Vec<(String, String, String)> {
        let conn = self.conn().await;
        let login = Login1ManagerProxy::new(&conn).await.unwrap();
        login
            .list_inhibitors()
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.1 == "holdfast")
            .map(|i| (i.0, i.2, i.3))
            .collect()
    }

    pub async fn wait_inhibitor(&self, why: Option<&str>) {
        let r = wait_for(Duration::from_secs(10), || async {
            let inh = self.holdfast_inhibitors().await;
            match why {
                Some(w) => inh.len() == 1 && inh[0].1 == w && inh[0].2 == "block",
                None => inh.is_empty(),
            }
        })
        .await;
        if r.is_err() {
            panic!(
                "inhibitor never became {why:?}; logind lists {:?}\nlog:\n{}",
                self.holdfast_inhibitors().await,
                self.log()
            );
        }
    }

    pub async fn lock_infos(&self) -> Vec<LockInfo> {
        self.supervisor().await.list_locks().await.unwrap()
    }

    pub async fn wait_locks(&self, want: &[&str]) -> Vec<LockInfo> {
        let start = Instant::now();
        loop {
            let got = self.lock_infos().await;
            let mut names: Vec<&str> = got.iter().map(|l| l.service.as_str()).collect();
            names.sort();
            if names == want {
                return got;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "locks never became {want:?}; last {names:?}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn restart_logind(&self) {
        self.harness("restart-logind");
    }

    pub fn restart_bus(&self) {
        self.harness("restart-bus");
    }

    /// Adds `lines` to logind's configuration (`[Login]` section, e.g.
    /// `InhibitorsMax=1`) and restarts logind with it.
    pub fn set_logind_conf(&self, lines: &str) {
        std::fs::write(self.dir.join("logind.extra"), format!("{lines}\n")).unwrap();
        self.restart_logind();
    }

    /// Makes the lock root read-only (`false`: a read-only bind mount over
    /// the tmpfs) or writable again.
    pub fn set_locks_writable(&self, writable: bool) {
        let dir = self.dir.display().to_string();
        let mode = if writable { "rw" } else { "ro" };
        run_script("harness.sh", &["remount-locks", &dir, mode]);
    }

    /// holdfastd's pid (it must be running).
    pub fn daemon_pid(&self) -> i32 {
        self.daemon.as_ref().expect("holdfastd is running").id() as i32
    }

    fn harness(&self, what: &str) {
        let dir = self.dir.display().to_string();
        run_script("harness.sh", &[what, &dir]);
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        let host = self.docker.as_ref().expect("env started without docker");
        Command::new("docker")
            .arg("-H")
            .arg(host)
            .args(args)
            .output()
            .unwrap()
    }

    /// A busybox image made locally (no registry is reachable).
    pub fn busybox_image(&self) -> String {
        let host = self.docker.as_ref().expect("env started without docker");
        run_script("busybox-image.sh", &[host, "holdfast-test/busybox:1"]);
        "holdfast-test/busybox:1".into()
    }
}

/// Runs one of the project's scripts; its failure fails the test.
pub fn run_script(name: &str, args: &[&str]) {
    let out = Command::new(format!("{REPO}/scripts/{name}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_daemon(nix::sys::signal::Signal::SIGKILL);
        let _ = Command::new(format!("{REPO}/scripts/harness.sh"))
            .arg("down")
            .arg(&self.dir)
            .output();
    }
}

pub async fn name_has_owner(bus: &str, name: &str) -> bool {
    let Ok(b) = zbus::connection::Builder::address(bus) else {
        return false;
    };
    let Ok(conn) = b.build().await else {
        return false;
    };
    let Ok(dbus) = zbus::fdo::DBusProxy::new(&conn).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(name) else {
        return false;
    };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

/// Polls `f` until true (tests only; the product never polls).
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> Result<(), ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(())
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `[update.periodic]` in UTC with one window of `len` minutes starting at
/// the wall-clock minute of `start`.
pub fn periodic_window(start: jiff::Timestamp, len: u32) -> String {
    let z = start.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "[update.periodic]\ntime_zone = \"UTC\"\n[[update.periodic.window]]\ndays = [\"{}\"]\nstart_time = \"{}\"\nlength_minutes = {len}\n",
        z.strftime("%a"),
        z.strftime("%H:%M")
    )
}
