//! The environment of a managed container (pure): the service's own
//! variables, then what balena's supervisor gives every container, each
//! `BALENA_` name with its `RESIN_` twin, where the service did not set
//! the name itself; then, for a service labelled
//! `io.balena.features.supervisor-api`, where the API is and its app's key
//! (these replace the service's own: they say where this supervisor is).

use super::ServiceContext;
use crate::target::{Injected, SUPERVISOR_API_LABEL};

/// Where a container reaches holdfast's HTTP API, balena style.
#[derive(Clone, PartialEq, Eq)]
pub struct SupervisorApi {
    /// The gateway of the container's network on the host, or 127.0.0.1
    /// with host networking.
    pub host: String,
    pub port: u16,
    /// The app's key.
    pub key: String,
}

impl std::fmt::Debug for SupervisorApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorApi")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SupervisorApi {
    pub fn address(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("http://{host}:{}", self.port)
    }
}

pub const LOCK_PATH: &str = "/tmp/balena/updates.lock";
pub const HANDOVER_COMPLETE_PATH: &str = "/tmp/balena/handover-complete";

/// `NAME=value` entries, the service's first.
pub(super) fn environment(cx: &ServiceContext<'_>) -> Vec<String> {
    let spec = cx.spec;
    let none = Injected::default();
    let i = cx.target.injected.as_deref().unwrap_or(&none);
    let app = cx.app.as_str();
    let api = cx
        .supervisor_api
        .filter(|_| spec.labels.contains_key(SUPERVISOR_API_LABEL));
    let api_vars: Vec<(String, String)> = api
        .map(|a| {
            let port = a.port.to_string();
            twins(&[
                ("SUPERVISOR_ADDRESS", &a.address()),
                ("SUPERVISOR_HOST", &a.host),
                ("SUPERVISOR_PORT", &port),
                ("SUPERVISOR_API_KEY", &a.key),
            ])
        })
        .unwrap_or_default();
    let mut env: Vec<String> = spec
        .environment
        .iter()
        .filter(|(k, _)| !api_vars.iter().any(|(n, _)| n == *k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut defaults = twins(&[
        ("APP_ID", app),
        ("APP_UUID", app),
        ("APP_NAME", app),
        ("SERVICE_NAME", cx.service.as_str()),
        ("DEVICE_UUID", &i.device_uuid),
        ("DEVICE_TYPE", &i.device_type),
        ("DEVICE_ARCH", &i.device_arch),
        ("HOST_OS_VERSION", &i.os_version),
        ("APP_LOCK_PATH", LOCK_PATH),
    ]);
    for (k, v) in [
        ("BALENA", "1"),
        ("RESIN", "1"),
        (
            "BALENA_SERVICE_HANDOVER_COMPLETE_PATH",
            HANDOVER_COMPLETE_PATH,
        ),
        // balena's value: the legacy name, the current file.
        ("RESIN_SERVICE_KILL_ME_PATH", HANDOVER_COMPLETE_PATH),
        ("BALENA_APP_RELEASE", cx.release),
    ] {
        defaults.push((k.to_owned(), v.to_owned()));
    }
    for (k, v) in defaults {
        if !spec.environment.contains_key(&k) {
            env.push(format!("{k}={v}"));
        }
    }
    env.extend(api_vars.into_iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// Each `NAME` as `BALENA_NAME` and `RESIN_NAME`.
fn twins(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    ["BALENA", "RESIN"]
        .iter()
        .flat_map(|ns| {
            vars.iter()
                .map(move |(k, v)| (format!("{ns}_{k}"), (*v).to_owned()))
        })
        .collect()
}

/// The machine's architecture in balena's names, from the kernel's
/// (`uname -m`) and the one this program was built for (a 32-bit ARM
/// userland on a 64-bit kernel runs armv7hf containers).
pub fn balena_arch(machine: &str, built_for: &str) -> String {
    let arm32 = built_for == "arm";
    match machine {
        "aarch64" | "arm64" | "armv8l" if arm32 => "armv7hf".into(),
        "aarch64" | "arm64" => "aarch64".into(),
        m if m.starts_with("armv7") || m == "armv8l" => "armv7hf".into(),
        m if m.starts_with("armv6") => "rpi".into(),
        m if m.starts_with("armv5") => "armv5e".into(),
        "x86_64" | "amd64" if built_for == "x86" => "i386".into(),
        "x86_64" | "amd64" => "amd64".into(),
        "i386" | "i486" | "i586" | "i686" => "i386".into(),
        other => other.to_owned(),
    }
}

/// This machine's architecture in balena's names.
pub fn machine_arch() -> String {
    let machine = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    balena_arch(&machine, std::env::consts::ARCH)
}

/// `PRETTY_NAME` of an os-release file (the host OS version balena
/// reports), unquoted as os-release(5) quotes it.
pub fn os_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("PRETTY_NAME=")?;
        let v = v.trim();
        let unquoted = match v.as_bytes().first() {
            Some(q @ (b'"' | b'\'')) if v.len() >= 2 && v.as_bytes()[v.len() - 1] == *q => {
                &v[1..v.len() - 1]
            }
            _ => v,
        };
        let mut out = String::new();
        let mut chars = unquoted.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.extend(chars.next());
            } else {
                out.push(c);
            }
        }
        Some(out)
    })
}
