//! Validated settings: types that cannot hold a bad value, plus where each
//! value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub const DEFAULT_MAIN: &str = "/etc/holdfast/holdfast.toml";
pub const DEFAULT_DIRS: [&str; 3] = [
    "/usr/lib/holdfast/config.d",
    "/etc/holdfast/config.d",
    "/run/holdfast/config.d",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InhibitWhat {
    Shutdown,
    Sleep,
}

impl InhibitWhat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shutdown" => Some(Self::Shutdown),
            "sleep" => Some(Self::Sleep),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::Sleep => "sleep",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub lock_root: PathBuf,
    pub state_dir: PathBuf,
    pub config_json: PathBuf,
    /// os-release(5) of the host OS: its `PRETTY_NAME` is the containers'
    /// `BALENA_HOST_OS_VERSION`.
    pub os_release: PathBuf,
    pub config_dirs: Vec<PathBuf>,
    pub inhibit_what: Vec<InhibitWhat>,
    /// `None`: the balena-engine socket when it exists, else docker's.
    pub engine_socket: Option<PathBuf>,
    pub target_file: PathBuf,
    /// The boot partition's `config.txt` (reboot-requiring device config).
    pub boot_config_txt: PathBuf,
    pub api_socket: PathBuf,
    pub api_tcp: Option<SocketAddr>,
    /// docker `config.json`-style credentials for private registries.
    pub registry_auth: PathBuf,
    /// How long a new release's containers get to become healthy (or
    /// running, without a healthcheck) before the release counts as failed.
    #[serde(serialize_with = "human_duration")]
    pub healthy_timeout: Duration,
    /// Roll a failed release back to the app's last healthy one.
    pub rollback: bool,
    /// Remove an app's volumes when it leaves the target (balena's way);
    /// off: they stay, shown as orphaned, until `holdfast volumes prune`.
    pub remove_volumes_with_app: bool,
    /// `[update.periodic]`: updates and reboots only inside these windows;
    /// `None`: at any time.
    #[serde(rename = "update_periodic")]
    pub periodic: Option<crate::window::Periodic>,
    /// `[fleet]`: identity and fleet-wide slots.
    pub fleet: FleetSettings,
}

/// `[fleet]`. The id actually used is resolved once at start-up
/// (`crate::fleet::identity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetSettings {
    /// Set in the config; `None`: config.json's `uuid`, else derived from
    /// `/etc/machine-id`.
    pub id: Option<String>,
    /// `^[a-zA-Z0-9.-]+$`.
    pub group: String,
    /// `[fleet.lock]`; `None`: no fleet-wide slots.
    pub lock: Option<FleetLockSettings>,
    /// `[fleet.hawkbit]`; `None`: no releases from a hawkBit server.
    pub hawkbit: Option<HawkbitSettings>,
}

/// `[fleet.hawkbit]`: where releases come from (docs/hawkbit.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HawkbitSettings {
    /// The server's base URL, without the tenant.
    pub url: String,
    pub tenant: String,
    /// `None`: the fleet id.
    pub controller_id: Option<String>,
    pub auth: HawkbitAuth,
    /// Extra CA certificates (PEM) trusted beside the system's.
    pub ca_file: Option<PathBuf>,
    /// What a local target (file, D-Bus, CLI, HTTP) may do to an app that
    /// hawkBit deployed.
    pub local_target: LocalTarget,
    /// Largest artifact downloaded, in bytes.
    pub max_download: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "file", rename_all = "snake_case")]
pub enum HawkbitAuth {
    None,
    /// `Authorization: TargetToken <file's content>`.
    TargetToken(PathBuf),
    /// `Authorization: GatewayToken <file's content>`.
    GatewayToken(PathBuf),
}

/// Who wins when a local target touches an app hawkBit deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalTarget {
    /// hawkBit's apps are hawkBit's: a local change to one is refused.
    Refuse,
    /// A local change wins; the app is the device's until hawkBit deploys
    /// it again.
    Allow,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            id: None,
            group: "default".into(),
            lock: None,
            hawkbit: None,
        }
    }
}

/// `[fleet.lock]`: where the fleet-wide slots are and what takes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetLockSettings {
    pub backend: LockBackend,
    /// Take a slot before every reboot holdfast makes.
    pub reboots: bool,
    /// Take a slot before an app's containers are replaced, given back
    /// when the apply (and its health check) is over.
    pub updates: bool,
    /// Remove a holder whose liveness key has been gone this long (etcd
    /// only); `None`: a stale holder is reported, never removed.
    #[serde(serialize_with = "human_duration_opt")]
    pub stale_after: Option<Duration>,
    /// TTL of the etcd lease behind our liveness key.
    #[serde(serialize_with = "human_duration")]
    pub lease_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LockBackend {
    /// airlock's semaphore, kept in etcd through its v3 JSON gateway.
    Etcd {
        endpoints: Vec<String>,
        user: Option<String>,
        password_file: Option<PathBuf>,
        tls: TlsFiles,
    },
    /// A FleetLock server (airlock, poseidon); `tls` has a `ca_file` at most.
    Fleetlock { url: String, tls: TlsFiles },
}

/// The files behind an https fleet client (`ca_file`, `cert_file`,
/// `key_file`; absolute paths, read when the client is made).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    /// PEM certificates trusted besides the system's bundle.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) and its PEM key: both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl LockBackend {
    pub fn name(&self) -> &'static str {
        match self {
            LockBackend::Etcd { .. } => "etcd",
            LockBackend::Fleetlock { .. } => "fleetlock",
        }
    }
}

fn human_duration_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => human_duration(d, s),
        None => s.serialize_none(),
    }
}

fn human_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lock_root: "/run/holdfast/locks".into(),
            state_dir: "/var/lib/holdfast".into(),
            config_json: "/mnt/boot/config.json".into(),
            os_release: "/etc/os-release".into(),
            config_dirs: DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
            inhibit_what: vec![InhibitWhat::Shutdown],
            engine_socket: None,
            target_file: "/var/lib/holdfast/target.json".into(),
            boot_config_txt: "/mnt/boot/config.txt".into(),
            api_socket: "/run/holdfast/api.sock".into(),
            api_tcp: None,
            registry_auth: "/etc/holdfast/registry-auth.json".into(),
            healthy_timeout: Duration::from_secs(120),
            rollback: true,
            remove_volumes_with_app: false,
            periodic: None,
            fleet: FleetSettings::default(),
        }
    }
}

impl Settings {
    /// logind's `what` argument, e.g. `shutdown:sleep`.
    pub fn inhibit_what_arg(&self) -> String {
        self.inhibit_what
            .iter()
            .map(|w| w.as_str())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// As `holdfast config show --json` prints them, the engine socket
    /// resolved (also the D-Bus `ConfigInForce` property).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("settings serialize");
        v["engine_socket"] = serde_json::json!(self.engine_socket());
        v
    }

    /// The effective engine socket.
    pub fn engine_socket(&self) -> PathBuf {
        self.engine_socket.clone().unwrap_or_else(|| {
            let balena = Path::new("/var/run/balena-engine.sock");
            if balena.exists() {
                balena.into()
            } else {
                "/var/run/docker.sock".into()
            }
        })
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Source {
    #[serde(rename = "default")]
    Default,
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Settings with the source of every key (dotted key -> source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub settings: Settings,
    pub sources: BTreeMap<&'static str, Source>,
    /// Files read, in the order applied.
    pub files: Vec<PathBuf>,
}

impl Sourced {
    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }

    /// `key = value  # source` lines, for `holdfast config show`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "settings": self.settings.to_json(),
            "sources": self.sources.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "files": self.files,
        })
    }
}
