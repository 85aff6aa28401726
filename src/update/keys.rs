//! What the updater injects into containers beyond their specs: the
//! host's values (os-release, architecture) with config.json's, and each
//! app's API key, made when the app first appears in the target, rotated
//! on request, removed when the app is gone. Keys are never logged.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::api::{self, ApiKeys};
use crate::command::CommandError;
use crate::config::Settings;
use crate::devconfig::DeviceInfo;
use crate::engine::{machine_arch, os_pretty_name};
use crate::names::AppName;
use crate::target::{Injected, Target, DEFAULT_API_PORT};

/// os-release is small; anything bigger is not one.
const MAX_OS_RELEASE_BYTES: u64 = 64 * 1024;

/// The host's own values, read when the settings are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Host {
    os_version: String,
    arch: String,
}

impl Host {
    pub fn read(settings: &Settings) -> Self {
        let path = &settings.os_release;
        let os_version = match crate::fsutil::read_regular(path, MAX_OS_RELEASE_BYTES) {
            Ok(Some(bytes)) => os_pretty_name(&String::from_utf8_lossy(&bytes)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read os-release; containers get an empty BALENA_HOST_OS_VERSION");
                None
            }
        };
        Self {
            os_version: os_version.unwrap_or_default(),
            arch: machine_arch(),
        }
    }

    /// The values every container of every app is told (no key yet).
    pub fn injected(&self, device: &DeviceInfo) -> Injected {
        Injected {
            device_uuid: device.uuid.clone().unwrap_or_default(),
            device_type: device.device_type.clone().unwrap_or_default(),
            device_arch: self.arch.clone(),
            os_version: self.os_version.clone(),
            api_port: self.port(Some(device)),
            api_key: None,
        }
    }

    /// config.json's `listenPort`, else balena's 48484.
    pub fn port(&self, device: Option<&DeviceInfo>) -> u16 {
        device
            .and_then(|d| d.listen_port)
            .unwrap_or(DEFAULT_API_PORT)
    }
}

/// Every app of the target has its key: read from its file, or made.
/// A key file that cannot be read is reported (the app's containers then
/// get no API variables) and left for the operator.
pub(super) fn ensure(keys: &watch::Sender<Arc<ApiKeys>>, state_dir: &Path, target: &Target) {
    let missing: Vec<&AppName> = {
        let k = keys.borrow();
        target.apps.keys().filter(|a| k.app(a).is_none()).collect()
    };
    if missing.is_empty() {
        return;
    }
    let mut found = Vec::new();
    for app in missing {
        // A few small files, once per app: not worth the blocking pool.
        match api::load_or_create_app_key(state_dir, app) {
            Ok(key) => found.push((app.clone(), key)),
            Err(e) => tracing::error!(app = %app, error = %e, "app {app} has no HTTP API key: {e}"),
        }
    }
    if !found.is_empty() {
        keys.send_modify(|k| {
            let mut new = ApiKeys::clone(k);
            for (app, key) in found {
                new.set_app(app, key);
            }
            *k = Arc::new(new);
        });
    }
}

/// The app is gone: so is its key.
pub(super) fn forget(keys: &watch::Sender<Arc<ApiKeys>>, state_dir: &Path, app: &AppName) {
    if let Err(e) = api::remove_app_key(state_dir, app) {
        tracing::warn!(app = %app, error = %e, "cannot remove the HTTP API key of app {app}, which is gone");
    }
    keys.send_if_modified(|k| {
        let mut new = ApiKeys::clone(k);
        let removed = new.remove_app(app);
        if removed {
            *k = Arc::new(new);
        }
        removed
    });
}

/// A new key for `app` (None: the device key), in force at once.
pub(super) fn rotate(
    keys: &watch::Sender<Arc<ApiKeys>>,
    state_dir: &Path,
    app: Option<&AppName>,
    who: &str,
) -> Result<(), CommandError> {
    let path = match app {
        Some(a) => api::app_key_path(state_dir, a),
        None => api::device_key_path(state_dir),
    };
    let key = api::rotate_key(&path).map_err(|e| CommandError::Failed(e.to_string()))?;
    keys.send_modify(|k| {
        let mut new = ApiKeys::clone(k);
        match app {
            Some(a) => new.set_app(a.clone(), key),
            None => new.set_device(key),
        }
        *k = Arc::new(new);
    });
    match app {
        Some(a) => tracing::info!(app = %a, who = %who,
            "new HTTP API key for app {a}, asked by {who}; its containers labelled for the API are made again with it, under its locks"),
        None => tracing::info!(who = %who, "new device HTTP API key, asked by {who}"),
    }
    Ok(())
}
