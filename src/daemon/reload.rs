//! SIGHUP: the config files read again. Every key applies live (the tasks
//! follow the settings channel) except `lock_root`, `state_dir` and the
//! `[fleet]` section (the fleet id and the slot backend are set up once at
//! start), which keep their value until a restart; the log says which is which, and the
//! settings published (D-Bus `ConfigInForce`) are the ones in force.

use std::path::Path;

use sd_notify::NotifyState;

use crate::config::{self, Settings};

/// Keys a reload cannot apply: the lock root and the state dir hold what
/// holdfast is in the middle of (watches, own locks, records); the fleet
/// id, group and slot backend belong to a slot that may be held.
const RESTART_KEYS: [&str; 3] = ["lock_root", "state_dir", "fleet"];

/// The settings to put in force, or `None` when the files are rejected
/// (the running ones stay).
pub fn reload(path: &Path, required: bool, current: &Settings) -> Option<Settings> {
    let mut new = match config::load(path, required) {
        Ok(s) => s.settings,
        Err(e) => {
            tracing::error!(error = %e, "configuration rejected; keeping the running configuration");
            let _ = sd_notify::notify(
                false,
                &[NotifyState::Status(&format!("config rejected: {e}"))],
            );
            return None;
        }
    };
    let (live, restart) = changed_keys(current, &new);
    for key in &restart {
        tracing::warn!(
            key,
            "{key} changed; it takes effect at the next restart (systemctl restart holdfast)"
        );
    }
    new.lock_root = current.lock_root.clone();
    new.state_dir = current.state_dir.clone();
    new.fleet = current.fleet.clone();
    if live.is_empty() {
        tracing::info!(config = %path.display(), "configuration reloaded: nothing to apply");
    } else {
        tracing::info!(config = %path.display(), applied = ?live,
            "configuration reloaded: applied {}", live.join(", "));
    }
    Some(new)
}

/// (keys applied live, keys that need a restart) that differ.
pub fn changed_keys(old: &Settings, new: &Settings) -> (Vec<&'static str>, Vec<&'static str>) {
    let old = old.to_json();
    let new = new.to_json();
    let keys: [(&str, &str); 13] = [
        ("lock_root", "lock_root"),
        ("state_dir", "state_dir"),
        ("config_json", "config_json"),
        ("os_release", "os_release"),
        ("config_dirs", "config_dirs"),
        ("inhibit.what", "inhibit_what"),
        ("engine.socket", "engine_socket"),
        ("target.file", "target_file"),
        ("boot.config_txt", "boot_config_txt"),
        ("api.socket", "api_socket"),
        ("api.tcp", "api_tcp"),
        ("update.periodic", "update_periodic"),
        ("fleet", "fleet"),
    ];
    let mut live = Vec::new();
    let mut restart = Vec::new();
    for (key, field) in keys {
        if old[field] != new[field] {
            if RESTART_KEYS.contains(&key) {
                restart.push(key);
            } else {
                live.push(key);
            }
        }
    }
    (live, restart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_but_the_lock_root_state_dir_and_fleet_applies_live() {
        let old = Settings::default();
        let mut new = old.clone();
        new.lock_root = "/run/other".into();
        new.inhibit_what.push(crate::config::InhibitWhat::Sleep);
        new.api_tcp = Some("127.0.0.1:48484".parse().unwrap());
        new.engine_socket = Some("/run/e.sock".into());
        let (live, restart) = changed_keys(&old, &new);
        assert_eq!(live, ["inhibit.what", "engine.socket", "api.tcp"]);
        assert_eq!(restart, ["lock_root"]);
        new.fleet.group = "canary".into();
        assert_eq!(changed_keys(&old, &new).1, ["lock_root", "fleet"]);
    }
}
