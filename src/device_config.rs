//! config.json (balenaOS style, on the boot partition) followed on disk:
//! read when a write to it finishes or it is renamed over, parsed strictly
//! (`devconfig`), and its lock override handed to the core. A bad or
//! missing file keeps the settings in force; a remounted boot partition is
//! watched again when it is back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::command::{Command, Handle};
use crate::config::Settings;
use crate::devconfig;
use crate::fsutil::read_regular;
use crate::inotify::NamesWatch;

/// config.json is small; anything bigger is not one.
pub const MAX_CONFIG_JSON_BYTES: u64 = 1 << 20;

pub struct DeviceConfig {
    pub handle: Handle,
    pub settings: watch::Receiver<Arc<Settings>>,
}

impl DeviceConfig {
    /// Reads config.json once (before holdfast says it is ready), then
    /// follows it until the daemon stops.
    pub async fn run(mut self) {
        let mut path = self.settings.borrow_and_update().config_json.clone();
        let mut watch = watch_file(&path);
        let mut rejected: Option<Vec<u8>> = None;
        self.load(&path, true, &mut rejected).await;
        loop {
            tokio::select! {
                r = watch.changed() => match r {
                    Ok(()) => self.load(&path, false, &mut rejected).await,
                    Err(e) => {
                        tracing::error!(error = %e, "watching config.json failed; watching it anew");
                        watch = watch_file(&path);
                    }
                },
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    let now = self.settings.borrow_and_update().config_json.clone();
                    if now != path {
                        tracing::info!(file = %now.display(), "config.json is now {}", now.display());
                        path = now;
                        watch = watch_file(&path);
                        self.load(&path, false, &mut rejected).await;
                    }
                }
            }
        }
    }

    /// `rejected`: the bytes last rejected, so a file that stays bad is
    /// reported once, not at every event.
    async fn load(&self, path: &Path, initial: bool, rejected: &mut Option<Vec<u8>>) {
        let shown = path.display().to_string();
        let p = path.to_owned();
        let read = tokio::task::spawn_blocking(move || read_regular(&p, MAX_CONFIG_JSON_BYTES))
            .await
            .expect("reading config.json does not panic");
        let bytes = match read {
            Ok(Some(b)) => b,
            Ok(None) if initial => {
                tracing::info!(file = %shown, "no config.json: the lock override is off");
                return;
            }
            Ok(None) => {
                tracing::warn!(file = %shown, "config.json is gone; its last settings stay in force");
                return;
            }
            Err(e) => {
                tracing::error!(file = %shown, error = %e, "cannot read config.json; its last settings stay in force");
                return;
            }
        };
        if rejected.as_ref() == Some(&bytes) {
            return;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("{shown}: not UTF-8: {e}"))
            .and_then(|text| devconfig::parse(text, &shown).map_err(|e| e.to_string()));
        let value = match parsed {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "config.json rejected; its last settings stay in force: {e}");
                *rejected = Some(bytes);
                return;
            }
        };
        *rejected = None;
        let new = devconfig::lock_override(&value);
        if let Some(err) = &new.error {
            tracing::error!(file = %shown, "config.json: {err}");
        }
        let _ = self.handle.send(Command::SetOverride(new)).await;
    }
}

fn watch_file(path: &Path) -> NamesWatch {
    let dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| "/".into());
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    NamesWatch::content(&dir, &[name])
}
