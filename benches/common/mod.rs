//! Shared by the benches: private real components (scripts/harness.sh),
//! holdfastd started with a notify socket, percentiles.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const DAEMON: &str = env!("CARGO_BIN_EXE_holdfastd");

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct Harness {
    pub dir: PathBuf,
    pub bus: String,
}

impl Harness {
    pub fn up() -> Harness {
        Self::up_with(&[])
    }

    /// `extra`: harness options, e.g. `--docker`.
    pub fn up_with(extra: &[&str]) -> Harness {
        let dir = PathBuf::from(format!("/tmp/hf-bench-{}", std::process::id()));
        let bus = format!("unix:path={}/system_bus_socket", dir.display());
        let h = Harness { dir, bus };
        h.run_with("up", extra);
        h
    }

    /// `harness.sh VERB DIR` for this harness (e.g. `registry`).
    pub fn run(&self, verb: &str) {
        self.run_with(verb, &[]);
    }

    fn run_with(&self, verb: &str, extra: &[&str]) {
        let out = Command::new(format!("{REPO}/scripts/harness.sh"))
            .arg(verb)
            .arg(&self.dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn config(&self, root: &Path) -> PathBuf {
        self.config_with(root, "")
    }

    /// A config for lock root `root`, plus `extra` top-level lines.
    pub fn config_with(&self, root: &Path, extra: &str) -> PathBuf {
        let p = self.dir.join(format!(
            "{}.toml",
            root.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(
            &p,
            format!(
                "lock_root = \"{}\"\nstate_dir = \"{}\"\nconfig_dirs = []\napi.socket = \"{}\"\n{extra}",
                root.display(),
                self.dir.join("state").display(),
                self.dir.join("api.sock").display()
            ),
        )
        .unwrap();
        p
    }

    /// Starts holdfastd with a notify socket; returns it, the time to
    /// READY=1, and its stderr log path.
    pub fn start(&self, config: &Path, tag: &str) -> (Child, Duration, PathBuf) {
        let sock_path = self.dir.join(format!("notify-{tag}.sock"));
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let log = self.dir.join(format!("holdfastd-{tag}.log"));
        let start = Instant::now();
        let mut child = Command::new(DAEMON)
            .arg("--config")
            .arg(config)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("HOLDFAST_LOG_TARGET", "stderr")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let Ok(n) = sock.recv(&mut buf) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no READY=1 within 10 s; see {}", log.display());
            };
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return (child, start.elapsed(), log);
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = Command::new(format!("{REPO}/scripts/harness.sh"))
            .arg("down")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// "p50 X ms, p99 Y ms" (or max) with `digits` decimals.
pub fn spread(v: &mut [f64], high: f64, digits: usize) -> String {
    let label = if high >= 1.0 { "max" } else { "p99" };
    format!(
        "p50 {:.digits$} ms, {label} {:.digits$} ms",
        pct(v, 0.5),
        pct(v, high)
    )
}

/// One `Name:  N kB` field of `/proc/PID/<file>`, in KiB.
pub fn proc_kib(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmRSS:")
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
