//! Helpers for tests that run containers through holdfastd: a private
//! registry, target states, the Apps property, the engine's view.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ok, run_script, Env};

impl Env {
    /// Starts a private registry on loopback; returns `127.0.0.1:PORT`.
    pub fn registry(&self) -> String {
        run_script("harness.sh", &["registry", &self.dir.display().to_string()]);
        let port = std::fs::read_to_string(self.dir.join("registry/port")).unwrap();
        format!("127.0.0.1:{}", port.trim())
    }

    /// Pushes the local busybox image as `registry/name:tag` and removes
    /// that tag locally, so holdfast has to pull it.
    pub fn push(&self, registry: &str, name_tag: &str) -> String {
        let local = self.busybox_image();
        let remote = format!("{registry}/{name_tag}");
        ok(&self.docker(&["tag", &local, &remote]));
        ok(&self.docker(&["push", "-q", &remote]));
        ok(&self.docker(&["rmi", &remote]));
        remote
    }

    pub fn restart_docker(&self) {
        run_script(
            "harness.sh",
            &["restart-docker", &self.dir.display().to_string()],
        );
    }

    /// `holdfast apply` of a target written to a file.
    pub fn apply(&self, target: &Value) -> Output {
        let path = self.dir.join(format!("apply-{}.json", unique()));
        std::fs::write(&path, serde_json::to_vec_pretty(target).unwrap()).unwrap();
        self.cli(&["apply", path.to_str().unwrap()])
    }

    /// The Apps property, read fresh (not from a proxy's cache).
    pub async fn apps(&self) -> Value {
        let p = self.fresh_supervisor().await;
        serde_json::from_str(&p.apps().await.unwrap()).unwrap()
    }

    /// Waits until `app` reaches `state`; returns its status.
    pub async fn wait_app(&self, app: &str, state: &str) -> Value {
        self.wait_app_for(app, state, Duration::from_secs(60)).await
    }

    /// Waits until `app` reaches `state` for `release`.
    pub async fn wait_release(&self, app: &str, state: &str, release: &str) -> Value {
        self.wait_app_release(app, state, Some(release), Duration::from_secs(60))
            .await
    }

    pub async fn wait_app_for(&self, app: &str, state: &str, timeout: Duration) -> Value {
        self.wait_app_release(app, state, None, timeout).await
    }

    async fn wait_app_release(
        &self,
        app: &str,
        state: &str,
        release: Option<&str>,
        timeout: Duration,
    ) -> Value {
        let start = Instant::now();
        loop {
            let apps = self.apps().await;
            if apps[app]["state"] == state && release.is_none_or(|r| apps[app]["release"] == r) {
                return apps[app].clone();
            }
            if start.elapsed() > timeout {
                panic!(
                    "{app} never became {state}; apps {apps}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Managed containers of `app`: (name, id, state, image), by name.
    pub fn containers(&self, app: &str) -> Vec<(String, String, String, String)> {
        let out = ok(&self.docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=io.holdfast.app={app}"),
            "--format",
            "{{.Names}} {{.ID}} {{.State}} {{.Image}}",
        ]));
        let mut v: Vec<_> = out
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].into(), f[1].into(), f[2].into(), f[3].into())
            })
            .collect();
        v.sort();
        v
    }

    /// The running container of `app/service` (exactly one expected).
    pub fn container_of(&self, app: &str, service: &str) -> String {
        let prefix = format!("{app}_{service}_");
        let running: Vec<_> = self
            .containers(app)
            .into_iter()
            .filter(|c| c.0.starts_with(&prefix) && c.2 == "running")
            .collect();
        assert_eq!(
            running.len(),
            1,
            "running containers of {app}/{service}: {running:?}"
        );
        running[0].1.clone()
    }

    /// app1 at release r1 (one service of `image`), its app locked from
    /// inside the container, then release r2 applied: waiting on the lock.
    /// Returns the r1 container.
    pub async fn app1_waiting_on_its_lock(&self, image: &str) -> String {
        ok(&self.apply(&release(image, 1)));
        self.wait_release("app1", "applied", "r1").await;
        let c = self.container_of("app1", "main");
        ok(&self.exec(&c, "set -C; : > /tmp/balena/updates.lock"));
        self.wait_locks(&["app1/main"]).await;
        ok(&self.apply(&release(image, 2)));
        self.wait_release("app1", "waiting", "r2").await;
        c
    }

    pub fn exec(&self, container: &str, script: &str) -> Output {
        self.docker(&["exec", container, "sh", "-c", script])
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A service that stops at once on SIGTERM (`sleep` as PID 1 ignores it).
pub fn service(image: &str) -> Value {
    serde_json::json!({
        "image": image,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        "network_mode": "none",
        "stop_timeout": 2,
    })
}

pub fn target(apps: Value) -> Value {
    serde_json::json!({"version": 1, "apps": apps})
}

/// app1 release `r<n>`: one service whose environment names the release.
pub fn release(image: &str, n: u32) -> Value {
    let mut s = service(image);
    s["environment"] = serde_json::json!({"R": n.to_string()});
    target(serde_json::json!({"app1": {"release": format!("r{n}"), "services": {"main": s}}}))
}
