//! The executor's side of app networks and volumes, and the record of each
//! app's last healthy release.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::Executor;
use crate::engine::{taken, AppVolume, EngineError};
use crate::names::AppName;
use crate::target::{scoped_name, AppTarget};
use crate::update::plan::{wanted_volumes, Objects};

impl Executor {
    /// Keeps the app's target as its last healthy release: what a later
    /// unhealthy release is rolled back to.
    pub async fn remember_healthy(&self, app: &AppName, target: &AppTarget) {
        let path = self.healthy_path(app);
        let data = serde_json::to_vec_pretty(target).expect("target serializes");
        let shown = path.display().to_string();
        let r = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::fsutil::atomic_write(&path, &data)
        })
        .await;
        if let Ok(Err(e)) = r {
            tracing::warn!(path = %shown, error = %e, "cannot keep the healthy release");
        }
    }

    /// The app's last healthy release, if one is known.
    pub async fn last_healthy(&self, app: &AppName) -> Option<AppTarget> {
        let path = self.healthy_path(app);
        let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
            .await
            .ok()?
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    fn healthy_path(&self, app: &AppName) -> PathBuf {
        self.state_dir.join("healthy").join(format!("{app}.json"))
    }

    /// The app's networks and the volumes its target names (and, when
    /// leaving with `remove_volumes_with_app`, all of its volumes).
    pub async fn objects(
        &self,
        app: &AppName,
        target: Option<&AppTarget>,
    ) -> Result<(Objects, Vec<AppVolume>), EngineError> {
        let engine = self.engine().await?;
        let networks = engine.networks(Some(app)).await?;
        let wanted: BTreeSet<String> = target
            .map(wanted_volumes)
            .unwrap_or_default()
            .iter()
            .map(|v| scoped_name(app, v))
            .collect();
        let remove_volumes = target.is_none() && self.policy.remove_volumes_with_app;
        // One listing for both: the volumes the target names (labelled or
        // not) and, when leaving, the app's own.
        let all = if wanted.is_empty() && !remove_volumes {
            Vec::new()
        } else {
            engine.all_volumes().await?
        };
        // A volume of one of these names that another app made is not
        // this app's (`<app>_<name>` of two apps can meet): refused, so
        // one app never reads or writes the other's data. One without the
        // label (made outside holdfast) is used as before.
        if let Some(v) = all
            .iter()
            .find(|v| wanted.contains(&v.name) && v.app.as_ref().is_some_and(|a| a != app))
        {
            let owner = v.app.as_ref().map(AppName::as_str);
            return Err(taken("volume", &v.name, owner, app));
        }
        let mine = |v: &&AppVolume| remove_volumes && v.app.as_ref() == Some(app);
        let volumes: BTreeSet<String> = all
            .iter()
            .filter(|v| wanted.contains(&v.name) || mine(v))
            .map(|v| v.name.clone())
            .collect();
        let named = all
            .into_iter()
            .filter(|v| wanted.contains(&v.name))
            .collect();
        let objects = Objects {
            networks,
            volumes,
            remove_volumes,
        };
        Ok((objects, named))
    }

    /// Apps the engine has containers or networks of.
    pub async fn apps_in_engine(&self) -> Result<BTreeSet<AppName>, EngineError> {
        let engine = self.engine().await?;
        let mut apps: BTreeSet<AppName> = engine
            .managed(None)
            .await?
            .into_iter()
            .map(|c| c.app)
            .collect();
        apps.extend(engine.networks(None).await?.into_iter().map(|n| n.app));
        Ok(apps)
    }

    /// App volumes by app.
    pub async fn volumes_by_app(&self) -> Result<BTreeMap<AppName, Vec<String>>, EngineError> {
        let mut out: BTreeMap<AppName, Vec<String>> = BTreeMap::new();
        for v in self.engine().await?.app_volumes(None).await? {
            if let Some(app) = v.app {
                out.entry(app).or_default().push(v.name);
            }
        }
        Ok(out)
    }

    /// Removes every volume of `app` (the caller has passed the gate), or
    /// none: refused when another app's target names one of them
    /// (`used_by`: engine volume name to app) or any container uses one.
    pub async fn remove_app_volumes(
        &self,
        app: &AppName,
        used_by: &BTreeMap<String, AppName>,
    ) -> Result<Vec<String>, EngineError> {
        let engine = self.engine().await?;
        let volumes = engine.app_volumes(Some(app)).await?;
        for v in &volumes {
            if let Some(other) = used_by.get(&v.name) {
                return Err(EngineError::Taken(format!(
                    "volume {} has app {app}'s label, but app {other}'s target names it too (holdfast made both apps' names into one before they were refused): nothing was removed; take app {other} out of the target first, or remove the volume yourself",
                    v.name
                )));
            }
            if let Some(user) = engine.volume_users(&v.name).await?.first() {
                return Err(EngineError::Taken(format!(
                    "volume {} of app {app} is used by {}: nothing was removed",
                    v.name,
                    user.describe()
                )));
            }
        }
        let mut removed = Vec::new();
        for v in volumes {
            engine.remove_volume(&v.name, app).await?;
            tracing::info!(app = %app, volume = %v.name, "removed volume {} of app {app}", v.name);
            removed.push(v.name);
        }
        Ok(removed)
    }
}
