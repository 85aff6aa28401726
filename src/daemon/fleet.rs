//! The fleet's tasks as the daemon starts them: the identity, the slot
//! task (`[fleet.lock]`) and the hawkBit task (`[fleet.hawkbit]`).

use std::sync::Arc;

use tokio::sync::watch;

use super::Tasks;
use crate::config::Settings;
use crate::fleet::{identity, FleetStatus};
use crate::model::{Snapshot, UpdateStatus};

/// The fleet id and group, resolved once at start-up (a reload does not
/// change them: `fleet.*` keys need a restart).
pub(super) fn fleet_identity(s: &Settings) -> FleetStatus {
    let (id, id_source) = match identity::resolve(
        s.fleet.id.as_deref(),
        &s.config_json,
        std::path::Path::new("/etc/machine-id"),
    ) {
        Ok((id, src)) => (id, src.as_str().to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "no fleet id: {e}");
            (String::new(), format!("none: {e}"))
        }
    };
    tracing::info!(fleet_id = %id, group = %s.fleet.group, "fleet id {id} ({id_source}), group {}", s.fleet.group);
    FleetStatus {
        id,
        id_source,
        group: s.fleet.group.clone(),
        lock: None,
        hawkbit: None,
    }
}

/// The fleet slot task, when `[fleet.lock]` is set and there is an id.
#[cfg(feature = "fleet")]
pub(super) fn start_fleet(
    s: &Settings,
    tasks: &mut Tasks,
    status: watch::Sender<FleetStatus>,
    apps: watch::Receiver<UpdateStatus>,
    target: watch::Receiver<Option<Arc<crate::target::Target>>>,
    snapshot: watch::Receiver<Snapshot>,
) -> Option<crate::fleet::slots::Slots> {
    use crate::fleet::slots::{self, FleetTask};
    let lock = s.fleet.lock.clone()?;
    let id = status.borrow().id.clone();
    status.send_modify(|f| f.lock = Some(slots::initial(&lock)));
    if id.is_empty() {
        status.send_modify(|f| {
            if let Some(l) = f.lock.as_mut() {
                l.error = Some("no fleet id: no fleet slot can be taken".into());
            }
        });
        tracing::error!("[fleet.lock] is set but there is no fleet id; reboots wait for a slot that cannot be taken");
    }
    let task = FleetTask {
        id,
        group: s.fleet.group.clone(),
        settings: lock,
        status,
        apps,
        target,
        snapshot,
    };
    let (handle, run) = task.start();
    tasks.spawn("fleet slots", run);
    Some(handle)
}

#[cfg(not(feature = "fleet"))]
pub(super) fn start_fleet(
    _: &Settings,
    _: &mut Tasks,
    _: watch::Sender<FleetStatus>,
    _: watch::Receiver<UpdateStatus>,
    _: watch::Receiver<Option<Arc<crate::target::Target>>>,
    _: watch::Receiver<Snapshot>,
) -> Option<crate::fleet::slots::Slots> {
    None
}

/// The hawkBit task, when `[fleet.hawkbit]` is set and there is a
/// controller id.
#[cfg(feature = "fleet")]
pub(super) fn start_hawkbit(s: &Settings, tasks: &mut Tasks, parts: HawkbitParts) {
    use crate::fleet::hawkbit::HawkbitTask;
    let Some(h) = s.fleet.hawkbit.clone() else {
        return;
    };
    let fleet_id = parts.status.borrow().id.clone();
    let task = HawkbitTask {
        settings: h,
        fleet_id,
        dir: s.state_dir.join("hawkbit"),
        handle: parts.handle,
        apps: parts.apps,
        device: parts.device,
        status: parts.status,
        store: parts.store,
        inhibitor: parts.inhibitor,
    };
    if task.controller_id().is_empty() {
        tracing::error!("[fleet.hawkbit] is set but there is no fleet id and no controller_id; no releases from hawkBit");
        return;
    }
    tasks.spawn("hawkbit", task.run());
}

#[cfg(not(feature = "fleet"))]
pub(super) fn start_hawkbit(_: &Settings, _: &mut Tasks, _: HawkbitParts) {}

#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub(super) struct HawkbitParts {
    pub handle: crate::command::Handle,
    pub apps: watch::Receiver<UpdateStatus>,
    pub device: watch::Receiver<Option<crate::devconfig::DeviceInfo>>,
    pub status: watch::Sender<FleetStatus>,
    pub store: crate::target::store::TargetStore,
    /// Releases wait for the system layer's first inhibitor attempt.
    pub inhibitor: watch::Receiver<crate::model::InhibitorStatus>,
}
