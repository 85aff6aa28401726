//! The target store's task ([`TargetTask`]): serves SetTarget, SetApp and
//! SetFleetApps, follows the target file on disk, and takes the device
//! config of each target put in force; file work on the blocking pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Reloaded, StoreError, TargetStore};
use crate::bootcfg::BootConfig;
use crate::command::{Command, CommandError, FleetApplied, Handle};
use crate::config::{LocalTarget, Settings};
use crate::inotify::NamesWatch;
use crate::target::Target;
use crate::text::{clip, shown};

/// How much of a refusal's reason a log line or an answer carries: a
/// reason may quote the document, and a message is one line.
const REASON_MAX: usize = 1000;

/// The target store's task.
pub struct TargetTask {
    pub store: TargetStore,
    pub handle: Handle,
    pub settings: watch::Receiver<Arc<Settings>>,
}

impl TargetTask {
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.store.set_policy(local_policy(&self.settings.borrow()));
        let mut watch = self.watch_file();
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::SetTarget { json, source, reply }) => {
                        let store = self.store.clone();
                        let what = source.clone();
                        let r = blocking(move || store.accept(&json, &source)).await;
                        let _ = reply.send(self.answer(r, &what).await);
                    }
                    Some(Command::SetApp { app, target, source, reply }) => {
                        let store = self.store.clone();
                        let what = format!("{source} (app {app})");
                        let r = blocking(move || store.accept_app(app, target, &source)).await;
                        let _ = reply.send(self.answer(r, &what).await);
                    }
                    Some(Command::SetFleetApps { owner, apps, source, reply }) => {
                        let store = self.store.clone();
                        let what = source.clone();
                        let r = blocking(move || store.accept_fleet(&owner, apps, &source)).await;
                        let (r, previous) = match r {
                            Ok((t, previous)) => (Ok(t), previous),
                            Err(e) => (Err(e), BTreeMap::new()),
                        };
                        let r = self.answer(r, &what).await;
                        let _ = reply.send(r.map(|summary| FleetApplied { summary, previous }));
                    }
                    Some(Command::ReloadTarget) => self.reload().await,
                    Some(other) => tracing::error!(command = %other.shown(), "command sent to the target store by mistake; dropped"),
                    None => return,
                },
                r = watch.changed() => match r {
                    Ok(()) => self.reload().await,
                    Err(e) => {
                        tracing::error!(error = %e, "watching the target file failed; watching it anew");
                        watch = self.watch_file();
                    }
                },
                r = self.settings.changed() => {
                    if r.is_err() { return }
                    let file = self.settings.borrow_and_update().target_file.clone();
                    self.store.set_policy(local_policy(&self.settings.borrow()));
                    if file != self.store.file {
                        tracing::info!(file = %file.display(), "target file is now {}", file.display());
                        self.store.file = file;
                        watch = self.watch_file();
                        self.reload().await;
                    }
                }
            }
        }
    }

    /// A new target accepted (its device config taken, its summary the
    /// answer) or rejected (the previous one stays).
    async fn answer(
        &self,
        r: Result<Arc<Target>, StoreError>,
        source: &str,
    ) -> Result<String, CommandError> {
        match r {
            Ok(t) => {
                let summary = summary(&t);
                tracing::info!(source, "target accepted from {source}: {summary}");
                self.take_device_config(&t).await;
                Ok(summary)
            }
            Err(e) => {
                // A reason may quote the document: bounded in the log and
                // the answer alike.
                let why = clip(&e.to_string(), REASON_MAX);
                tracing::warn!(error = %why, "target rejected; the previous one stays in force");
                Err(match e {
                    StoreError::Invalid(_) => CommandError::InvalidTarget(why),
                    StoreError::Owned(_) | StoreError::Unreadable(_) => CommandError::Conflict(why),
                    _ => CommandError::Failed(why),
                })
            }
        }
    }

    fn watch_file(&self) -> NamesWatch {
        let file = &self.store.file;
        let dir = file.parent().unwrap_or(Path::new("/"));
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let _ = std::fs::create_dir_all(dir);
        NamesWatch::content(dir, &[name])
    }

    async fn reload(&self) {
        let store = self.store.clone();
        let file = store.file.display().to_string();
        let r = blocking(move || store.reload_file()).await;
        // Reading it (up to 4 MiB) leaves its parse's heap behind.
        crate::memory::give_back_soon();
        match r {
            Ok(Reloaded::Changed(t)) => {
                tracing::info!(file = %file, "target file read: {}", summary(&t));
                self.take_device_config(&t).await;
            }
            Ok(Reloaded::Unchanged) => {}
            Ok(Reloaded::Missing) => {
                tracing::warn!(file = %file, "target file is gone; the target in force stays")
            }
            Err(e) => {
                let why = clip(&e.to_string(), REASON_MAX);
                tracing::error!(error = %why, "target file rejected; the previous target stays in force")
            }
        }
    }

    /// The target's device config: immediate keys now, boot keys staged
    /// with a reboot requested for when the locks allow it.
    async fn take_device_config(&self, target: &Target) {
        let s = self.settings.borrow().clone();
        let boot = BootConfig::new(&s.boot_config_txt, &s.state_dir);
        let config = target.config.clone();
        match blocking(move || boot.take(&config)).await {
            Ok(true) if self.handle.views.snapshot.borrow().pending_reboot.is_none() => {
                let r = self
                    .handle
                    .request(|reply| Command::RequestReboot {
                        not_after_usec: 0,
                        who: "holdfast".into(),
                        reason: "staged boot config".into(),
                        reply,
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot request the reboot for staged boot config");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot stage device config: {e}"),
        }
    }
}

fn local_policy(s: &Settings) -> Option<LocalTarget> {
    s.fleet.hawkbit.as_ref().map(|h| h.local_target)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("target file work does not panic")
}

/// Apps a summary names; the rest are counted.
const SUMMARY_APPS: usize = 10;

/// One line of bounded length: the answer to the caller and the log line.
fn summary(t: &Target) -> String {
    let mut apps: Vec<String> = t
        .apps
        .iter()
        .take(SUMMARY_APPS)
        .map(|(name, a)| {
            format!(
                "{name} release {} ({} services)",
                shown(&a.release),
                a.services.len()
            )
        })
        .collect();
    if t.apps.len() > SUMMARY_APPS {
        apps.push(format!("and {} more apps", t.apps.len() - SUMMARY_APPS));
    }
    if apps.is_empty() {
        "no apps".into()
    } else {
        apps.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_of_many_apps_and_long_releases_is_one_short_line() {
        let apps: serde_json::Map<String, serde_json::Value> = (0..500)
            .map(|i| {
                (
                    format!("a{i:03}"),
                    serde_json::json!({"release": "r".repeat(10_000), "services": {}}),
                )
            })
            .collect();
        let t: Target =
            serde_json::from_value(serde_json::json!({"version": 1, "apps": apps})).unwrap();
        let s = summary(&t);
        assert!(s.len() < 3000, "{} bytes", s.len());
        assert!(s.starts_with("a000 release rrr"), "{s}");
        assert!(s.ends_with("and 490 more apps"), "{s}");
        assert!(s.contains("(10000 bytes in all) (0 services)"), "{s}");
    }
}
