//! config.json (balenaOS style, on the boot partition) followed on disk:
//! read when a write to it finishes or it is renamed over, parsed strictly
//! (`devconfig`), its lock override handed to the core and the device's
//! values (uuid, device type, API port) published to the updater. A bad or
//! missing file keeps the settings in force, and so does a value that is
//! unusable (a uuid with control characters keeps the last good uuid, and
//! says why); a remounted boot partition is
//! watched again when it is back. A read that does not parse is reported
//! only if no write completes it soon (a rewrite in place was read midway).
//! Only a config.json that is not there gives the defaults at start: one
//! that cannot be read or does not parse leaves the device's values not
//! known (the updater touches no container) and is read again until it is.

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
    /// config.json's device values; None until it was read, or found
    /// absent (the updater waits for them, so containers are not made with
    /// values about to change, nor with defaults for a file not read).
    pub device: watch::Sender<Option<DeviceInfo>>,
}

/// A rejected file is reported only when no finished write follows it
/// within this: a rewrite in place (truncate, write, close) read between
/// its truncate and its close is not the file. Longer than the longest
/// settle of the watch, so the close that completes it is always seen first.
const REJECT_GRACE: Duration = Duration::from_secs(2);
const _: () = assert!(REJECT_GRACE.as_nanos() > crate::inotify::SETTLE_MAX.as_nanos());

/// While the device's values are not known (config.json could not be read
/// or did not parse), it is read again this often, beside every event.
const UNKNOWN_RETRY: Duration = Duration::from_secs(5);

/// What a read of config.json found.
enum Loaded {
    /// Read and applied, or the same bytes as reported rejected already.
    Read,
    /// No file there (ENOENT): the defaults stand for it.
    Absent,
    /// Could not be read: nothing is known from it.
    Unreadable,
    /// Did not parse; reported unless a write completes it soon.
    Rejected(Rejected),
}

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
        let first = self.load(&path, true, &mut reported).await;
        let mut doubt = self.settle(first);
        loop {
            let report_at = doubt.as_ref().map(|d| d.report_at);
            // Not known yet: read again, whatever the watch says.
            let retry_at = self
                .device
                .borrow()
                .is_none()
                .then(|| Instant::now() + UNKNOWN_RETRY);
            tokio::select! {
                r = watch.changed() => match r {
                    Ok(()) => {
                        let l = self.load(&path, false, &mut reported).await;
                        doubt = self.settle(l);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "watching config.json failed; watching it anew");
                        watch = watch_file(&path);
                    }
                },
                _ = until(retry_at) => {
                    let l = self.load(&path, false, &mut reported).await;
                    doubt = self.settle(l).or(doubt);
                }
                _ = until(report_at) => {
                    let d = doubt.take().expect("armed only with a rejection");
                    if self.device.borrow().is_none() {
                        tracing::error!(error = %d.error, "config.json rejected: {}; the device's values are not known, so no container is made or changed until it is fixed", d.error);
                    } else {
                        tracing::error!(error = %d.error, "config.json rejected; its last settings stay in force: {}", d.error);
                    }
                    reported = Some(d.bytes);
                }
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    let now = self.settings.borrow_and_update().config_json.clone();
                    if now != path {
                        tracing::info!(file = %now.display(), "config.json is now {}", now.display());
                        path = now;
                        watch = watch_file(&path);
                        let l = self.load(&path, false, &mut reported).await;
                        doubt = self.settle(l);
                    }
                }
            }
        }
    }

    /// After a read: an absent file while nothing is known yet gives the
    /// defaults; a file that could not be read or did not parse gives
    /// nothing (not known stays not known). A rejection comes back to be
    /// reported later.
    fn settle(&self, loaded: Loaded) -> Option<Rejected> {
        match loaded {
            Loaded::Absent => {
                self.device.send_if_modified(|d| {
                    let first = d.is_none();
                    d.get_or_insert_with(DeviceInfo::default);
                    first
                });
                None
            }
            Loaded::Read | Loaded::Unreadable => None,
            Loaded::Rejected(r) => Some(r),
        }
    }

    /// Reads and applies config.json; a file that does not parse comes
    /// back to be reported unless a write follows soon.
    async fn load(&self, path: &Path, initial: bool, reported: &mut Option<Vec<u8>>) -> Loaded {
        let shown = path.display().to_string();
        let p = path.to_owned();
        let read = tokio::task::spawn_blocking(move || read_regular(&p, MAX_CONFIG_JSON_BYTES))
            .await
            .expect("reading config.json does not panic");
        let bytes = match read {
            Ok(Some(b)) => b,
            Ok(None) if initial || self.device.borrow().is_none() => {
                tracing::info!(file = %shown, "no config.json: the lock override is off, the device's values are the defaults");
                return Loaded::Absent;
            }
            Ok(None) => {
                tracing::warn!(file = %shown, "config.json is gone; its last settings stay in force");
                return Loaded::Absent;
            }
            Err(e) if self.device.borrow().is_none() => {
                tracing::error!(file = %shown, error = %e, "cannot read config.json: {e}; the device's values are not known, so no container is made or changed until it reads (tried again every {}s)", UNKNOWN_RETRY.as_secs());
                return Loaded::Unreadable;
            }
            Err(e) => {
                tracing::error!(file = %shown, error = %e, "cannot read config.json; its last settings stay in force");
                return Loaded::Unreadable;
            }
        };
        if reported.as_ref() == Some(&bytes) {
            return Loaded::Read;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("{shown}: not UTF-8: {e}"))
            .and_then(|text| devconfig::parse(text, &shown).map_err(|e| e.to_string()));
        let value = match parsed {
            Ok(v) => v,
            Err(error) => {
                return Loaded::Rejected(Rejected {
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
        let last = self.device.borrow().clone();
        let (info, errors) = devconfig::device_info(&value, last.as_ref());
        if !errors.is_empty() {
            for err in &errors {
                tracing::error!(file = %shown, "config.json: {err}");
            }
            // Said once for these bytes: read again unchanged (the retry
            // while the values are not known), nothing is repeated.
            *reported = Some(bytes);
        }
        // An unusable value with nothing good before: not known stays so.
        let Some(info) = info else {
            return Loaded::Read;
        };
        self.device.send_if_modified(|d| {
            let changed = d.as_ref() != Some(&info);
            if changed && d.is_some() {
                tracing::info!(file = %shown, "config.json: the device's uuid, type or API port changed; containers that are told them are made again, under their locks");
            }
            *d = Some(info);
            changed
        });
        Loaded::Read
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InhibitorStatus, Snapshot, UpdateStatus, Views};

    /// A follower of `dir/config.json`, its device values, and the inboxes
    /// it sends the override to and its settings (kept open).
    type Kept = (crate::command::Inboxes, watch::Sender<Arc<Settings>>);

    fn follow(dir: &Path) -> (watch::Receiver<Option<DeviceInfo>>, Kept) {
        let settings = Settings {
            config_json: dir.join("config.json"),
            ..Settings::default()
        };
        let (keep, settings) = watch::channel(Arc::new(settings));
        let views = Views {
            snapshot: watch::channel(Snapshot::default()).1,
            apps: watch::channel(UpdateStatus::default()).1,
            inhibitor: watch::channel(InhibitorStatus::default()).1,
            settings: settings.clone(),
            fleet: watch::channel(crate::fleet::FleetStatus::default()).1,
        };
        let (handle, inboxes) = Handle::new(views, "/proc".into());
        let (device, rx) = watch::channel(None);
        tokio::spawn(
            DeviceConfig {
                handle,
                settings,
                device,
            }
            .run(),
        );
        (rx, (inboxes, keep))
    }

    #[tokio::test]
    async fn an_absent_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (mut device, _inboxes) = follow(dir.path());
        let d = device.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(d, Some(DeviceInfo::default()));
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_leaves_the_device_unknown_until_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        // Not a regular file: an error, not an absence.
        std::fs::create_dir(&path).unwrap();
        let (mut device, _inboxes) = follow(dir.path());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*device.borrow(), None, "unreadable is not absent");
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, r#"{"uuid": "abc123"}"#).unwrap();
        let d = tokio::time::timeout(UNKNOWN_RETRY * 3, device.wait_for(Option::is_some))
            .await
            .expect("read again")
            .unwrap()
            .clone();
        assert_eq!(d.unwrap().uuid.as_deref(), Some("abc123"));
    }

    #[tokio::test]
    async fn a_file_that_does_not_parse_leaves_the_device_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"uuid": "#).unwrap();
        let (mut device, _inboxes) = follow(dir.path());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*device.borrow(), None, "rejected is not absent");
        // The rewrite completes it.
        std::fs::write(&path, r#"{"uuid": "abc123"}"#).unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), device.wait_for(Option::is_some))
            .await
            .expect("read again")
            .unwrap()
            .clone();
        assert_eq!(d.unwrap().uuid.as_deref(), Some("abc123"));
    }

    #[tokio::test]
    async fn a_uuid_with_a_control_character_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"uuid": "abc123", "deviceType": "rpi"}"#).unwrap();
        let (mut device, _inboxes) = follow(dir.path());
        device.wait_for(Option::is_some).await.unwrap();
        // A rename over it, as balenaOS writes it: a bad uuid, a new type.
        let tmp = dir.path().join("config.json.new");
        std::fs::write(
            &tmp,
            "{\"uuid\": \"abc\\u0007123\", \"deviceType\": \"rpi5\"}",
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let d = tokio::time::timeout(
            Duration::from_secs(10),
            device.wait_for(|d| {
                d.as_ref()
                    .is_some_and(|d| d.device_type.as_deref() == Some("rpi5"))
            }),
        )
        .await
        .expect("the good values apply")
        .unwrap()
        .clone()
        .unwrap();
        assert_eq!(
            d.uuid.as_deref(),
            Some("abc123"),
            "the last good uuid stays"
        );
    }
}
