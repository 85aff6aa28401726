//! config.json (balenaOS style, on the boot partition) followed on disk:
//! read when a write to it finishes or it is renamed over, parsed strictly
//! (`devconfig`), its lock override handed to the core and the device's
//! values (uuid, device type, API port) published to the updater. A bad or
//! missing file keeps the settings in force; a remounted boot partition is
//! watched again when it is back. A read that does not parse is reported
//! only if no write completes it soon (a rewrite in place was read midway).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::command::{Command, Handle};
use crate::config::Settings;
use crate::devconfig::{self, DeviceInfo};
use crate::fsutil::read_regular;
use crate::inotify::NamesWatch;

/// config.json is small; anything bigger is not one.
pub const MAX_CONFIG_JSON_BYTES: u64 = 1 << 20;

pub struct DeviceConfig {
    pub handle: Handle,
    pub settings: watch::Receiver<Arc<Settings>>,
    /// config.json's device values; None until it was first looked at
    /// (the updater waits for them, so containers are not made with
    /// values about to change).
    pub device: watch::Sender<Option<DeviceInfo>>,
}

/// A rejected file is reported only when no finished write follows it
/// within this: a rewrite in place (truncate, write, close) read between
/// its truncate and its close is not the file. Longer than the longest
/// settle of the watch, so the close that completes it is always seen first.
const REJECT_GRACE: Duration = Duration::from_secs(2);
const _: () = assert!(REJECT_GRACE.as_nanos() > crate::inotify::SETTLE_MAX.as_nanos());

/// A read of config.json that did not parse, not yet reported.
struct Rejected {
    bytes: Vec<u8>,
    error: String,
    report_at: Instant,
}

impl DeviceConfig {
    /// Reads config.json once (before holdfast says it is ready), then
    /// follows it until the daemon stops.
    pub async fn run(mut self) {
        let mut path = self.settings.borrow_and_update().config_json.clone();
        let mut watch = watch_file(&path);
        // The bytes last reported as rejected: a file that stays bad is
        // reported once, not at every event.
        let mut reported: Option<Vec<u8>> = None;
        let mut doubt = self.load(&path, true, &mut reported).await;
        // Missing, unreadable or not parsed: the defaults, until it is.
        self.device.send_if_modified(|d| {
            let first = d.is_none();
            d.get_or_insert_with(DeviceInfo::default);
            first
        });
        loop {
            let report_at = doubt.as_ref().map(|d| d.report_at);
            tokio::select! {
                r = watch.changed() => match r {
                    Ok(()) => doubt = self.load(&path, false, &mut reported).await,
                    Err(e) => {
                        tracing::error!(error = %e, "watching config.json failed; watching it anew");
                        watch = watch_file(&path);
                    }
                },
                _ = until(report_at) => {
                    let d = doubt.take().expect("armed only with a rejection");
                    tracing::error!(error = %d.error, "config.json rejected; its last settings stay in force: {}", d.error);
                    reported = Some(d.bytes);
                }
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    let now = self.settings.borrow_and_update().config_json.clone();
                    if now != path {
                        tracing::info!(file = %now.display(), "config.json is now {}", now.display());
                        path = now;
                        watch = watch_file(&path);
                        doubt = self.load(&path, false, &mut reported).await;
                    }
                }
            }
        }
    }

    /// Reads and applies config.json; a file that does not parse comes
    /// back to be reported unless a write follows soon.
    async fn load(
        &self,
        path: &Path,
        initial: bool,
        reported: &mut Option<Vec<u8>>,
    ) -> Option<Rejected> {
        let shown = path.display().to_string();
        let p = path.to_owned();
        let read = tokio::task::spawn_blocking(move || read_regular(&p, MAX_CONFIG_JSON_BYTES))
            .await
            .expect("reading config.json does not panic");
        let bytes = match read {
            Ok(Some(b)) => b,
            Ok(None) if initial => {
                tracing::info!(file = %shown, "no config.json: the lock override is off");
                return None;
            }
            Ok(None) => {
                tracing::warn!(file = %shown, "config.json is gone; its last settings stay in force");
                return None;
            }
            Err(e) => {
                tracing::error!(file = %shown, error = %e, "cannot read config.json; its last settings stay in force");
                return None;
            }
        };
        if reported.as_ref() == Some(&bytes) {
            return None;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("{shown}: not UTF-8: {e}"))
            .and_then(|text| devconfig::parse(text, &shown).map_err(|e| e.to_string()));
        let value = match parsed {
            Ok(v) => v,
            Err(error) => {
                return Some(Rejected {
                    bytes,
                    error,
                    report_at: Instant::now() + REJECT_GRACE,
                })
            }
        };
        *reported = None;
        let new = devconfig::lock_override(&value);
        if let Some(err) = &new.error {
            tracing::error!(file = %shown, "config.json: {err}");
        }
        let _ = self.handle.send(Command::SetOverride(new)).await;
        let (info, errors) = devconfig::device_info(&value);
        for err in errors {
            tracing::error!(file = %shown, "config.json: {err}");
        }
        self.device.send_if_modified(|d| {
            let changed = d.as_ref() != Some(&info);
            if changed && d.is_some() {
                tracing::info!(file = %shown, "config.json: the device's uuid, type or API port changed; containers that are told them are made again, under their locks");
            }
            *d = Some(info);
            changed
        });
        None
    }
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
