//! One TOML file as written: every key optional, unknown keys rejected.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    pub lock_root: Option<Spanned<String>>,
    pub state_dir: Option<Spanned<String>>,
    pub config_json: Option<Spanned<String>>,
    pub os_release: Option<Spanned<String>>,
    /// Drop-in directories; only the main file may set them.
    pub config_dirs: Option<Spanned<Vec<String>>>,
    pub inhibit: Option<InhibitFragment>,
    pub engine: Option<EngineFragment>,
    pub target: Option<TargetFragment>,
    pub api: Option<ApiFragment>,
    pub boot: Option<BootFragment>,
    pub update: Option<UpdateFragment>,
    pub fleet: Option<FleetFragment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitFragment {
    pub what: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFragment {
    pub socket: Option<Spanned<String>>,
    pub registry_auth: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateFragment {
    pub healthy_timeout: Option<Spanned<String>>,
    pub rollback: Option<bool>,
    pub remove_volumes_with_app: Option<bool>,
    // Not Spanned: toml cannot span a table made implicitly by
    // `[[update.periodic.window]]`.
    pub periodic: Option<PeriodicFragment>,
}

/// `[update.periodic]`: Zincati's maintenance windows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicFragment {
    pub time_zone: Option<Spanned<String>>,
    #[serde(default)]
    pub window: Vec<WindowFragment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFragment {
    pub days: Spanned<Vec<String>>,
    pub start_time: Spanned<String>,
    pub length_minutes: Spanned<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFragment {
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFragment {
    pub socket: Option<Spanned<String>>,
    pub tcp: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootFragment {
    pub config_txt: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFragment {
    pub id: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    /// Refused as a whole by a build without the `fleet` feature.
    pub lock: Option<Spanned<FleetLockFragment>>,
    /// Refused as a whole by a build without the `fleet` feature.
    pub hawkbit: Option<Spanned<HawkbitFragment>>,
}

/// `[fleet.hawkbit]` (read only to be refused without the `fleet` feature).
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HawkbitFragment {
    pub url: Option<Spanned<String>>,
    pub tenant: Option<Spanned<String>>,
    pub controller_id: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub gateway_token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub local_target: Option<Spanned<String>>,
    pub max_download: Option<Spanned<String>>,
}

/// `[fleet.lock]` (read only to be refused without the `fleet` feature).
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetLockFragment {
    pub backend: Option<Spanned<String>>,
    pub endpoints: Option<Spanned<Vec<String>>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub reboots: Option<bool>,
    pub updates: Option<bool>,
    pub stale_after: Option<Spanned<String>>,
    pub lease_ttl: Option<Spanned<String>>,
}
