//! A gooseBit (hawkBit DDI server, `scripts/setup.sh hawkbit`) for one
//! test: started by `harness.sh goosebit` under the test's directory,
//! driven through its management API by scripts/goosebit.py; and the
//! `.swu` releases it serves, made by scripts/make-swu.py.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ok, Env, REPO};

/// The harness's settings for gooseBit; a caller's own are not passed on.
const SETTINGS: [&str; 4] = [
    "HARNESS_GOOSEBIT_POLL",
    "HARNESS_GOOSEBIT_TENANT",
    "HARNESS_GOOSEBIT_DEVICE_AUTH",
    "HARNESS_GOOSEBIT_TLS",
];

pub struct GooseBit {
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`, or `https://...` with TLS.
    pub url: String,
    /// With TLS: the CA that signed gooseBit's certificate.
    pub ca_file: Option<PathBuf>,
}

impl GooseBit {
    /// Started under the test's directory; `harness.sh down` (the Env's
    /// drop) stops it.
    pub fn start(env: &Env) -> GooseBit {
        GooseBit::start_with(env, &[])
    }

    /// With harness settings, e.g. `("HARNESS_GOOSEBIT_TLS", "1")`.
    pub fn start_with(env: &Env, settings: &[(&str, &str)]) -> GooseBit {
        let mut c = Command::new(format!("{REPO}/scripts/harness.sh"));
        c.arg("goosebit").arg(&env.dir);
        for v in SETTINGS {
            c.env_remove(v);
        }
        c.envs(settings.iter().copied());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "harness.sh goosebit {settings:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin: Value =
            serde_json::from_slice(&std::fs::read(env.dir.join("goosebit/admin.json")).unwrap())
                .unwrap();
        GooseBit {
            dir: env.dir.clone(),
            url: admin["url"].as_str().unwrap().to_owned(),
            ca_file: admin["ca_file"].as_str().map(PathBuf::from),
        }
    }

    pub fn gb(&self, args: &[&str]) -> Value {
        let out = Command::new("python3")
            .arg(format!("{REPO}/scripts/goosebit.py"))
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "goosebit.py {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Uploads a .swu and gives it to `dev`; answers the software id.
    pub fn deploy(&self, swu: &Path, dev: &str) -> String {
        let sw = self.gb(&["upload", &swu.display().to_string()]);
        let id = sw["id"].to_string();
        self.gb(&["assign", dev, &id]);
        id
    }

    pub fn device(&self, dev: &str) -> Value {
        self.gb(&["device", dev])
    }

    /// Waits until gooseBit's record of `dev` satisfies `f`.
    pub async fn wait(&self, dev: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let d = self.device(dev);
            if f(&d) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "gooseBit never saw {what}: {d:#}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A `.swu` of `version` carrying a target and optional image archives.
pub fn swu(dir: &Path, version: &str, target: &Value, images: &[&Path]) -> PathBuf {
    let t = dir.join(format!("target-{version}.json"));
    std::fs::write(&t, target.to_string()).unwrap();
    let out = dir.join(format!("r-{version}.swu"));
    let mut c = Command::new("python3");
    c.arg(format!("{REPO}/scripts/make-swu.py"))
        .arg(&out)
        .args(["--version", version, "--target"])
        .arg(&t);
    for i in images {
        c.arg("--image").arg(i);
    }
    ok(&c.output().unwrap());
    out
}

/// A `.swu` of `version` whose target is app1 alone at `release` (see
/// [`app`]), made in `dir`.
pub fn app1_release(dir: &Path, version: &str, image: &str, release: &str, check: &str) -> PathBuf {
    swu(
        dir,
        version,
        &json!({"version": 1, "apps": {"app1": app(image, release, check)}}),
        &[],
    )
}

/// A busybox service, healthy when `check` passes.
pub fn app(image: &str, release: &str, check: &str) -> Value {
    json!({"release": release, "services": {"main": {
        "image": image,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        "stop_timeout": 2,
        "environment": {"R": release},
        "healthcheck": {"test": ["CMD-SHELL", check], "interval": "200ms", "retries": 3}
    }}})
}

/// gooseBit's feedback log of a device has `line`.
pub fn log_has(d: &Value, line: &str) -> bool {
    d["log"].as_str().is_some_and(|l| l.contains(line))
}
