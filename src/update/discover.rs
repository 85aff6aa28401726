//! Looking at the engine beside the app tasks: which apps it has
//! containers or networks of (with the API's listeners brought in line),
//! the volumes left by apps gone from the target, and removing those.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::watch;

use super::exec::Executor;
use crate::command::CommandError;
use crate::model::{Snapshot, UpdateStatus};
use crate::names::AppName;
use crate::target::Target;

/// Apps the engine has managed containers or networks of, and the
/// volumes of apps no longer in the target.
pub(super) async fn discover(
    exec: Executor,
    target: Option<&Target>,
) -> Result<(BTreeSet<AppName>, BTreeMap<String, Vec<String>>), String> {
    let apps = exec.apps_in_engine().await.map_err(|e| e.to_string())?;
    exec.sync_listeners().await.map_err(|e| e.to_string())?;
    let volumes = exec.volumes_by_app().await.map_err(|e| e.to_string())?;
    let orphans = volumes
        .into_iter()
        .filter(|(app, _)| target.is_some_and(|t| !t.apps.contains_key(app)))
        .map(|(app, v)| (app.to_string(), v))
        .collect();
    Ok((apps, orphans))
}

/// `holdfast volumes prune APP`: only for an app out of the target and
/// gone from the engine, and through the gate like an update. `targets`:
/// the target as set and the one in force (with the injected values),
/// which lacks an app, or is none, until the device's values and the
/// app's key are known: an app of either is in the target.
pub(super) fn prune_volumes(
    exec: Executor,
    snapshot: &Snapshot,
    targets: [Option<&Target>; 2],
    leaving: bool,
    (app, force, who): (AppName, bool, String),
    status: watch::Sender<UpdateStatus>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<String>, CommandError>>,
) {
    let targets = targets.into_iter().flatten();
    if targets.clone().any(|t| t.apps.contains_key(&app)) {
        let _ = reply.send(Err(CommandError::Failed(format!(
            "app {app} is in the target and its services use its volumes; take it out of the target first"
        ))));
        return;
    }
    if leaving {
        let _ = reply.send(Err(CommandError::Failed(format!(
            "app {app} is still leaving (its containers wait on its locks); prune once it is gone"
        ))));
        return;
    }
    // Whether the app is in a target that cannot be read is not known.
    let unreadable = status.borrow().target_unreadable.clone();
    if let Some(why) = unreadable {
        let _ = reply.send(Err(CommandError::Conflict(format!(
            "the saved target cannot be read ({why}); app {app} may be in it: no volume is removed until a whole target is set"
        ))));
        return;
    }
    let forced_by = force.then(|| who.clone());
    if let crate::gate::Decision::Blocked(blocked_by) =
        crate::gate::update(snapshot, &app, forced_by.as_deref())
    {
        let _ = reply.send(Err(CommandError::Locked {
            blocked_by,
            action: format!("remove the volumes of {app}"),
        }));
        return;
    }
    tracing::info!(app = %app, who = %who, "removing the volumes of app {app}, asked by {who}");
    // Engine volume names the other apps' targets use: never removed as
    // this app's (two apps' names can meet at '_').
    let used_by: BTreeMap<String, AppName> = targets
        .flat_map(|t| &t.apps)
        .filter(|(other, _)| **other != app)
        .flat_map(|(other, t)| {
            crate::update::plan::wanted_volumes(t)
                .into_iter()
                .map(move |v| (crate::target::scoped_name(other, &v), other.clone()))
        })
        .collect();
    tokio::spawn(async move {
        let r = exec.remove_app_volumes(&app, &used_by).await;
        if r.is_ok() {
            status.send_if_modified(|s| s.orphaned_volumes.remove(app.as_str()).is_some());
        }
        let _ = reply.send(r.map_err(|e| CommandError::Failed(e.to_string())));
    });
}
