//! Configuration: TOML fragments (main file + drop-ins) -> merged inputs
//! with provenance -> validated [`Settings`].
//!
//! Drop-ins are `*.toml` in `/usr/lib/holdfast/config.d`,
//! `/etc/holdfast/config.d` and `/run/holdfast/config.d`; a file in a later
//! directory replaces one of the same name in an earlier one, a symlink to
//! `/dev/null` masks it, and files apply in name order after the main file
//! (later wins).

mod fragment;
mod load;
mod render;
mod settings;

pub use load::{load, ConfigError};
pub use settings::{
    FleetLockSettings, FleetSettings, HawkbitAuth, HawkbitSettings, InhibitWhat, LocalTarget,
    LockBackend, Settings, Source, Sourced, TlsFiles, DEFAULT_DIRS, DEFAULT_MAIN,
};

use std::path::PathBuf;

/// Where the main config file is: `--config`, else `HOLDFAST_CONFIG`, else
/// the default. The bool says whether the user named it (then it must exist).
pub fn main_path(cli: Option<PathBuf>) -> (PathBuf, bool) {
    if let Some(p) = cli {
        return (p, true);
    }
    match std::env::var_os("HOLDFAST_CONFIG") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_MAIN), false),
    }
}
