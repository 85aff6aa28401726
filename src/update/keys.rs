//! What the updater injects into containers beyond their specs: the
//! host's values (os-release, architecture) with config.json's, and each
//! app's API key, made when the app first appears in the target, rotated
//! on request, removed when the app is gone. Keys are never logged.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{self, ApiKeys};
use crate::command::CommandError;
use crate::config::Settings;
use crate::devconfig::DeviceInfo;
use crate::engine::{api_route, machine_arch, os_pretty_name, ApiRoute};
use crate::names::AppName;
use crate::target::{Injected, Target, DEFAULT_API_PORT, SUPERVISOR_API_LABEL};

/// os-release is small; anything bigger is not one.
const MAX_OS_RELEASE_BYTES: u64 = 64 * 1024;

/// What could not be read (os-release, an app's key) is read again this
/// often until it is.
pub(super) const RETRY: Duration = Duration::from_secs(5);

/// The host's own values, read when the settings are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Host {
    /// os-release's `PRETTY_NAME` (empty when there is no os-release);
    /// None while it could never be read (then nothing is injected).
    os_version: Option<String>,
    arch: String,
}

impl Host {
    /// Reads os-release (on the blocking pool). One that cannot be read
    /// keeps the version `last` had; with none known, the host is not
    /// known and the updater holds until a read succeeds.
    pub async fn read(settings: &Settings, last: Option<&Host>) -> Self {
        let path = settings.os_release.clone();
        let shown = path.display().to_string();
        let read = tokio::task::spawn_blocking(move || {
            crate::fsutil::read_regular(&path, MAX_OS_RELEASE_BYTES)
        })
        .await
        .expect("reading os-release does not panic");
        let os_version = match read {
            Ok(Some(bytes)) => {
                Some(os_pretty_name(&String::from_utf8_lossy(&bytes)).unwrap_or_default())
            }
            // No os-release at all: nothing to tell.
            Ok(None) => Some(String::new()),
            Err(e) => match last.map(|h| &h.os_version) {
                Some(Some(v)) => {
                    tracing::warn!(file = %shown, error = %e, "cannot read os-release: {e}; containers keep the BALENA_HOST_OS_VERSION last read");
                    Some(v.clone())
                }
                // Said already; still not read.
                Some(None) => None,
                None => {
                    tracing::error!(file = %shown, error = %e, "cannot read os-release: {e}; no container is made or changed until it reads (tried again every {}s)", RETRY.as_secs());
                    None
                }
            },
        };
        if last.is_some_and(|h| h.os_version.is_none()) && os_version.is_some() {
            tracing::info!(file = %shown, "os-release reads again");
        }
        Self {
            os_version,
            arch: machine_arch(),
        }
    }

    /// Whether os-release was read (else the updater holds).
    pub fn known(&self) -> bool {
        self.os_version.is_some()
    }

    /// The values every container of every app is told (no key yet); None
    /// while os-release was never read.
    pub fn injected(&self, device: &DeviceInfo) -> Option<Injected> {
        Some(Injected {
            device_uuid: device.uuid.clone().unwrap_or_default(),
            device_type: device.device_type.clone().unwrap_or_default(),
            device_arch: self.arch.clone(),
            os_version: self.os_version.clone()?,
            api_port: self.port(Some(device)),
            api_key: None,
            hash_secret: String::new(),
            lock_root: None,
        })
    }

    /// config.json's `listenPort`, else balena's 48484.
    pub fn port(&self, device: Option<&DeviceInfo>) -> u16 {
        device
            .and_then(|d| d.listen_port)
            .unwrap_or(DEFAULT_API_PORT)
    }
}

/// The secret app keys are hashed with (`Injected::hash_secret`), read
/// or made on the blocking pool; None (reported when `report`) when it
/// cannot be had: then the updater holds.
pub(super) async fn hash_secret(state_dir: &Path, report: bool) -> Option<String> {
    let dir = state_dir.to_owned();
    let r = tokio::task::spawn_blocking(move || api::load_or_create_hash_secret(&dir))
        .await
        .expect("reading the hash secret does not panic");
    match r {
        Ok(s) => Some(s),
        Err(e) => {
            if report {
                tracing::error!(error = %e, "{e}; no container is made or changed until it reads (tried again every {}s)", RETRY.as_secs());
            }
            None
        }
    }
}

/// Every app of the target has its key: read from its file, or made (on
/// the blocking pool). An app whose key file cannot be read is `held`:
/// left out of what the updater changes (its containers stay as they
/// are) until the key reads; reported once, read again at each pass.
pub(super) async fn ensure(
    keys: &watch::Sender<Arc<ApiKeys>>,
    state_dir: &Path,
    target: &Target,
    held: &mut BTreeSet<AppName>,
) {
    let missing: Vec<AppName> = {
        let k = keys.borrow();
        target
            .apps
            .keys()
            .filter(|a| k.app(a).is_none())
            .cloned()
            .collect()
    };
    held.retain(|a| missing.contains(a));
    if missing.is_empty() {
        return;
    }
    let dir = state_dir.to_owned();
    let results = tokio::task::spawn_blocking(move || {
        missing
            .into_iter()
            .map(|app| {
                let r = api::load_or_create_app_key(&dir, &app);
                (app, r)
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("reading the app keys does not panic");
    let mut found = Vec::new();
    for (app, r) in results {
        match r {
            Ok(key) => {
                if held.remove(&app) {
                    tracing::info!(app = %app, "the HTTP API key of app {app} reads again; its updates go on");
                }
                found.push((app, key));
            }
            Err(e) => {
                if held.insert(app.clone()) {
                    tracing::error!(app = %app, error = %e,
                        "app {app} is held: {e}; its containers are left as they are until its key reads (tried again every {}s)", RETRY.as_secs());
                }
            }
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
pub(super) async fn forget(keys: &watch::Sender<Arc<ApiKeys>>, state_dir: &Path, app: &AppName) {
    let (dir, a) = (state_dir.to_owned(), app.clone());
    let removed = tokio::task::spawn_blocking(move || api::remove_app_key(&dir, &a))
        .await
        .expect("removing a key does not panic");
    if let Err(e) = removed {
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

/// A new key for `app` (None: the device key), in force at once; an
/// app's old key stays accepted until its containers have the new one
/// (`settle`).
pub(super) async fn rotate(
    keys: &watch::Sender<Arc<ApiKeys>>,
    state_dir: &Path,
    app: Option<&AppName>,
    who: &str,
) -> Result<(), CommandError> {
    let (dir, path) = match app {
        Some(a) => (Some(state_dir.to_owned()), api::app_key_path(state_dir, a)),
        None => (None, api::device_key_path(state_dir)),
    };
    let key = tokio::task::spawn_blocking(move || {
        if let Some(dir) = dir {
            api::app_key_dir(&dir, true)?;
        }
        api::rotate_key(&path)
    })
    .await
    .expect("rotating a key does not panic")
    .map_err(|e| CommandError::Failed(e.to_string()))?;
    keys.send_modify(|k| {
        let mut new = ApiKeys::clone(k);
        match app {
            Some(a) => new.rotate_app(a.clone(), key),
            None => new.set_device(key),
        }
        *k = Arc::new(new);
    });
    match app {
        Some(a) => tracing::info!(app = %a, who = %who,
            "new HTTP API key for app {a}, asked by {who}; its containers labelled for the API are made again with it, under its locks; the old key is accepted for app {a} until they are"),
        None => tracing::info!(who = %who, "new device HTTP API key, asked by {who}"),
    }
    Ok(())
}

/// The target with each app's injected values: the device's, and the
/// app's API key. A `held` app (its key cannot be read) keeps what it had
/// in `prev`, the effective target before, so nothing of it changes; one
/// that had nothing there is left out (and gets no task).
pub(super) fn effective(
    target: &Target,
    device: &Injected,
    keys: &ApiKeys,
    held: &BTreeSet<AppName>,
    prev: Option<&Target>,
) -> Arc<Target> {
    let mut t = target.clone();
    t.apps
        .retain(|app, _| !held.contains(app) || prev.is_some_and(|p| p.apps.contains_key(app)));
    for (app, a) in t.apps.iter_mut() {
        if held.contains(app) {
            if let Some(old) = prev.and_then(|p| p.apps.get(app)) {
                *a = old.clone();
            }
            continue;
        }
        a.injected = Some(Arc::new(Injected {
            api_key: keys.app(app).map(str::to_owned),
            ..device.clone()
        }));
    }
    Arc::new(t)
}

/// Whether a service with host networking asks for the API: then it is
/// served on loopback too.
pub(super) fn wants_loopback(target: &Target) -> bool {
    target.apps.iter().any(|(app, a)| {
        a.services.iter().any(|(name, s)| {
            s.labels.contains_key(SUPERVISOR_API_LABEL)
                && api_route(app, a, name) == ApiRoute::Loopback
        })
    })
}

/// The apps with a container that may hold what they were told before
/// (an old key, an old port): one whose config hash is not its service's
/// in the effective target, or whose service or app is not in it.
pub(super) async fn stale_apps(
    exec: &crate::update::exec::Executor,
    target: Option<&Target>,
) -> Result<BTreeSet<AppName>, crate::engine::EngineError> {
    let containers = exec.containers(None).await?;
    Ok(containers
        .into_iter()
        .filter(|c| {
            let app = target.and_then(|t| t.apps.get(&c.app));
            !app.is_some_and(|a| {
                a.services.contains_key(&c.service) && a.config_hash(&c.service) == c.hash
            })
        })
        .map(|c| c.app)
        .collect())
}

/// After a look at the containers: the previous key of each app whose
/// containers are all current is refused from now on. Whether anything
/// is still pending (a previous key kept).
pub(super) fn settle(keys: &watch::Sender<Arc<ApiKeys>>, stale: &BTreeSet<AppName>) -> bool {
    keys.send_if_modified(|k| {
        let done: Vec<AppName> = k.previous_apps().filter(|a| !stale.contains(*a)).cloned().collect();
        if done.is_empty() {
            return false;
        }
        let mut new = ApiKeys::clone(k);
        for app in done {
            new.drop_previous(&app);
            tracing::info!(app = %app, "the containers of app {app} all have its new HTTP API key; its old key is refused from now on");
        }
        *k = Arc::new(new);
        true
    });
    keys.borrow().previous_apps().next().is_some()
}

#[cfg(test)]
mod tests;
