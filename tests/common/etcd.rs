//! A real etcd cluster (Debian's `etcd-server`) on loopback: members on
//! free ports, data in the test's temporary directory, stopped by PID.
//! With a [`Pki`], clients speak https and must show a client certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::free_port;
use super::pki::Pki;

pub struct Member {
    pub name: String,
    pub client: String,
    /// `None` once killed.
    child: Mutex<Option<Child>>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    dir: PathBuf,
    tls: Option<Pki>,
}

impl Cluster {
    /// `n` members under `dir`, healthy on return.
    pub fn start(dir: &Path, n: usize) -> Cluster {
        Cluster::start_with(dir, n, None)
    }

    /// One member whose clients need TLS and a certificate from `pki`'s CA
    /// (`--client-cert-auth`); peers stay on plain http.
    pub fn start_tls(dir: &Path, pki: Pki) -> Cluster {
        Cluster::start_with(dir, 1, Some(pki))
    }

    fn start_with(dir: &Path, n: usize, tls: Option<Pki>) -> Cluster {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let token = format!("hf-{}", std::process::id());
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let data = dir.join(format!("etcd-{name}"));
            let log = std::fs::File::create(dir.join(format!("etcd-{name}.log"))).unwrap();
            let mut cmd = Command::new("setsid");
            cmd.arg("etcd");
            if let Some(p) = &tls {
                cmd.arg("--cert-file").arg(&p.server_cert);
                cmd.arg("--key-file").arg(&p.server_key);
                cmd.arg("--trusted-ca-file").arg(&p.ca);
                cmd.arg("--client-cert-auth");
            }
            let child = cmd
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &format!("{scheme}://127.0.0.1:{c}")])
                .args([
                    "--advertise-client-urls",
                    &format!("{scheme}://127.0.0.1:{c}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-token", &token])
                .args(["--initial-cluster-state", "new"])
                // Fast elections: a killed member's loss is over quickly.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("etcd (apt-get install etcd-server; scripts/setup.sh)");
            members.push(Member {
                name,
                client: format!("{scheme}://127.0.0.1:{c}"),
                child: Mutex::new(Some(child)),
            });
        }
        let cluster = Cluster {
            members,
            dir: dir.to_owned(),
            tls,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = cluster.ctl(&["endpoint", "health", "--cluster"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// `endpoints = [...]` for holdfast's config.
    pub fn toml_endpoints(&self) -> String {
        let e: Vec<String> = self.endpoints().iter().map(|e| format!("{e:?}")).collect();
        format!("[{}]", e.join(", "))
    }

    /// etcdctl against the members still running.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_stdin(args, "")
    }

    pub fn ctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.lock().unwrap().is_some())
            .map(|m| m.client.clone())
            .collect();
        let mut cmd = Command::new("etcdctl");
        if let Some(p) = &self.tls {
            cmd.arg("--cacert").arg(&p.ca);
            cmd.arg("--cert").arg(&p.client_cert);
            cmd.arg("--key").arg(&p.client_key);
        }
        let mut child = cmd
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", live.join(",")))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The key's value and mod revision at `rev` (0: now); `None` if absent.
    pub fn get(&self, key: &str, rev: i64) -> Option<(String, i64)> {
        let mut args = vec!["get", key, "-w", "json"];
        let r = format!("--rev={rev}");
        if rev > 0 {
            args.push(&r);
        }
        let out = self.ctl(&args);
        assert!(
            out.status.success(),
            "etcdctl get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let kv = v["kvs"].as_array()?.first()?.clone();
        use base64::Engine;
        let value = base64::engine::general_purpose::STANDARD
            .decode(kv["value"].as_str().unwrap_or(""))
            .unwrap();
        Some((
            String::from_utf8(value).unwrap(),
            kv["mod_revision"].as_i64().unwrap(),
        ))
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["get", "nothing-here", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    }

    /// SIGKILL one member.
    pub fn kill(&self, i: usize) {
        let child = self.members[i].child.lock().unwrap().take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(self.dir.join(format!("etcd-{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {}\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
