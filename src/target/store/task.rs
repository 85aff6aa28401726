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
                    Some(other) => tracing::error!(command = ?other, "command sent to the target store by mistake; dropped"),
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
                tracing::warn!(error = %e, "target rejected; the previous one stays in force");
                Err(match e {
                    StoreError::Invalid(e) => CommandError::InvalidTarget(e.to_string()),
                    StoreError::Owned(why) | StoreError::Unreadable(why) => {
                        CommandError::Conflict(why)
                    }
                    other => CommandError::Failed(other.to_string()),
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
        match blocking(move || store.reload_file()).await {
            Ok(Reloaded::Changed(t)) => {
                tracing::info!(file = %file, "target file read: {}", summary(&t));
                self.take_device_config(&t).await;
            }
            Ok(Reloaded::Unchanged) => {}
            Ok(Reloaded::Missing) => {
                tracing::warn!(file = %file, "target file is gone; the target in force stays")
            }
            Err(e) => {
                tracing::error!(error = %e, "target file rejected; the previous target stays in force")
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

fn summary(t: &Target) -> String {
    let apps: Vec<String> = t
        .apps
        .iter()
        .map(|(name, a)| {
            format!(
                "{name} release {} ({} services)",
                a.release,
                a.services.len()
            )
        })
        .collect();
    if apps.is_empty() {
        "no apps".into()
    } else {
        apps.join(", ")
    }
}
