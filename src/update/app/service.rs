//! One service restarted, stopped or started on request, and an app's
//! data purged. Restart, stop and purge pass the gate and take the app's
//! locks as an update does (a lock of any of the app's services holds
//! them back, as on balena); start takes none.
//!
//! A stopped service stays stopped, with no record of the stop: the
//! planner never starts an exited container of the target's config (it
//! leaves it to the engine's restart policy, as balena starts only what it
//! never started), and the task's crash watch ignores services acted on by
//! request. So a stop survives update checks, holdfastd restarts and
//! targets that leave the service as it is; only a start, a restart, or a
//! target that changes the service (a new container) runs it again.
//! Keeping no "stopped" set means there is nothing to lose or to clean up.

use super::restart::lock_refusal;
use super::AppTask;
use crate::command::{CommandError, ServiceAction};
use crate::engine::{Container, RunState};
use crate::gate::{self, Decision};
use crate::logging::msgid;
use crate::names::ServiceName;
use crate::target::AppTarget;

fn failed(e: impl ToString) -> CommandError {
    CommandError::Failed(e.to_string())
}

impl AppTask {
    /// Acts on `service` (the app's only one when `None`); answers the
    /// service and its container's id.
    pub(super) async fn service_action(
        &mut self,
        action: ServiceAction,
        service: Option<ServiceName>,
        force: bool,
        who: &str,
    ) -> Result<(ServiceName, String), CommandError> {
        let target = self.in_target()?;
        let exec = self.exec.borrow().clone();
        let containers = exec.containers(Some(&self.app)).await.map_err(failed)?;
        let service = match service {
            Some(s) => s,
            None => only_service(&self.app, &containers)?,
        };
        if !target.services.contains_key(&service) {
            return Err(CommandError::NotFound(format!(
                "service {service} is not in the target of app {}",
                self.app
            )));
        }
        let c = pick(&containers, &service, &target.config_hash(&service)).ok_or_else(|| {
            CommandError::NotFound(format!(
                "service {service} of app {} has no container",
                self.app
            ))
        })?;
        let what = format!("{} {}/{service}", action.verb(), self.app);
        if action == ServiceAction::Start {
            refuse_start_while_powering(&what, self.snapshot.borrow().powering, self.stopping)?;
        }
        let locked = action != ServiceAction::Start;
        if locked {
            self.lock_for(&what, &containers, force, who).await?;
        }
        tracing::info!(app = %self.app, service = %service, who, "{what} (asked by {who})");
        let r = match action {
            ServiceAction::Stop => exec.stop_container(c).await,
            ServiceAction::Start => exec.start_container(c).await,
            ServiceAction::Restart => exec.restart(std::slice::from_ref(c)).await,
        };
        let released = match locked {
            true => self.release_locks().await.map(drop),
            false => Ok(()),
        };
        r.map_err(failed)?;
        released?;
        Ok((service, c.id.clone()))
    }

    /// The first half of a purge: under the app's locks its containers go
    /// and its volumes are removed. The task then applies the app again.
    /// Answers the volumes removed, or why it failed midway (the app is
    /// applied again then too); the outer error: refused before anything
    /// was touched.
    pub(super) async fn purge(
        &mut self,
        force: bool,
        who: &str,
    ) -> Result<Result<Vec<String>, CommandError>, CommandError> {
        self.in_target()?;
        let exec = self.exec.borrow().clone();
        let containers = exec.containers(Some(&self.app)).await.map_err(failed)?;
        let what = format!("purge the data of app {}", self.app);
        self.lock_for(&what, &containers, force, who).await?;
        tracing::warn!(app = %self.app, who, "purging the data of app {} (asked by {who}): its containers and volumes are removed, then made again", self.app);
        let r = match exec.remove_containers(&containers).await {
            // No other app of a valid target shares its volumes' names.
            Ok(()) => {
                exec.remove_app_volumes(&self.app, &Default::default())
                    .await
            }
            Err(e) => Err(e),
        };
        let released = self.release_locks().await;
        Ok(r.map_err(failed)
            .and_then(|removed| released.map(|_| removed)))
    }

    fn in_target(&self) -> Result<AppTarget, CommandError> {
        self.app_target().ok_or_else(|| {
            CommandError::NotFound(format!(
                "app {} is not in the target (it is being removed)",
                self.app
            ))
        })
    }

    /// The gate, then every lock of the app: its containers' services and
    /// its target's (when it has one). Restart, stop and purge all pass
    /// here; the caller gives the locks back with `release_locks`.
    pub(super) async fn lock_for(
        &self,
        what: &str,
        containers: &[Container],
        force: bool,
        who: &str,
    ) -> Result<(), CommandError> {
        let snap = self.snapshot.borrow().clone();
        match gate::update(&snap, &self.app, force.then_some(who)) {
            Decision::Blocked(blocked_by) => {
                return Err(CommandError::Locked {
                    blocked_by,
                    action: what.to_owned(),
                })
            }
            Decision::Through { why, passed } => {
                tracing::warn!(message_id = msgid::UPDATE_FORCED, app = %self.app, locks = ?passed, who,
                    "going to {what} through its locks ({why})");
            }
            Decision::Go => {}
        }
        let mut services: Vec<ServiceName> = self
            .app_target()
            .map(|t| t.services.into_keys().collect())
            .unwrap_or_default();
        services.extend(containers.iter().map(|c| c.service.clone()));
        services.sort();
        services.dedup();
        self.take_locks(&services, force.then_some(who))
            .await
            .map_err(|o| lock_refusal(what, o))
    }
}

/// A start is refused while the device goes down: a reboot or power-off
/// of ours (`powering`), or any shutdown stopping every container
/// (`stopping`). It takes no lock, so nothing else holds it back.
fn refuse_start_while_powering(
    what: &str,
    powering: bool,
    stopping: bool,
) -> Result<(), CommandError> {
    match (powering, stopping) {
        (false, false) => Ok(()),
        _ => Err(CommandError::Failed(format!(
            "the device is shutting down or rebooting; not going to {what}"
        ))),
    }
}

/// The service of a single-service app (v1 routes).
fn only_service(
    app: &crate::names::AppName,
    containers: &[Container],
) -> Result<ServiceName, CommandError> {
    let mut services: Vec<&ServiceName> = containers.iter().map(|c| &c.service).collect();
    services.sort();
    services.dedup();
    match services.as_slice() {
        [] => Err(CommandError::NotFound(format!("app {app} has no containers"))),
        [one] => Ok((*one).clone()),
        many => Err(CommandError::Invalid(format!(
            "app {app} has {} services; this route serves single-service apps only (use /v2/applications/{app}/<action>-service with a serviceName)",
            many.len()
        ))),
    }
}

/// The service's container: the one that runs, else one that has run (a
/// stopped one), else one never started; the target's config first within
/// each. A release held back (by a lock or a closed window) is prepared
/// next to the one in force, its container created but never started:
/// acting on it would start the new release through the gate, so a
/// restart, stop or start acts on the release that runs.
fn pick<'a>(
    containers: &'a [Container],
    service: &ServiceName,
    hash: &str,
) -> Option<&'a Container> {
    let rank = |c: &Container| {
        let state = match c.state {
            RunState::Running => 0,
            RunState::Other => 1,
            RunState::Created => 2,
        };
        (state, c.hash != hash)
    };
    containers
        .iter()
        .filter(|c| c.service == *service)
        .min_by_key(|c| rank(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::AppName;

    fn c(service: &str, hash: &str, state: RunState) -> Container {
        Container {
            id: format!("{service}-{hash}"),
            name: String::new(),
            app: AppName::new("app1").unwrap(),
            service: ServiceName::new(service).unwrap(),
            release: String::new(),
            hash: hash.into(),
            image: String::new(),
            state,
            health: String::new(),
            status: String::new(),
            created: 0,
            image_id: String::new(),
        }
    }

    #[test]
    fn no_start_while_the_device_goes_down() {
        assert!(refuse_start_while_powering("start a/b", false, false).is_ok());
        for (powering, stopping) in [(true, false), (false, true), (true, true)] {
            let e = refuse_start_while_powering("start a/b", powering, stopping).unwrap_err();
            assert!(matches!(e, CommandError::Failed(_)));
            assert_eq!(
                e.to_string(),
                "the device is shutting down or rebooting; not going to start a/b"
            );
        }
    }

    #[test]
    fn v1_routes_serve_single_service_apps_only() {
        let app = AppName::new("app1").unwrap();
        let one = [
            c("main", "h1", RunState::Running),
            c("main", "h0", RunState::Other),
        ];
        assert_eq!(only_service(&app, &one).unwrap().as_str(), "main");
        let two = [
            c("main", "h1", RunState::Running),
            c("web", "h2", RunState::Running),
        ];
        assert!(matches!(
            only_service(&app, &two),
            Err(CommandError::Invalid(_))
        ));
        assert!(matches!(
            only_service(&app, &[]),
            Err(CommandError::NotFound(_))
        ));
    }

    #[test]
    fn the_running_container_is_picked_before_a_prepared_one() {
        let s = ServiceName::new("main").unwrap();
        let id = |list: &[Container], hash| pick(list, &s, hash).map(|c| c.id.clone());
        // A new release held back: created next to the one that runs.
        let held = [
            c("main", "old", RunState::Running),
            c("main", "new", RunState::Created),
            c("web", "new", RunState::Running),
        ];
        assert_eq!(id(&held, "new").unwrap(), "main-old");
        // The running one stopped: it is still the one a start starts.
        let stopped = [
            c("main", "new", RunState::Created),
            c("main", "old", RunState::Other),
        ];
        assert_eq!(id(&stopped, "new").unwrap(), "main-old");
        // Within a state, the target's config first.
        let two = [
            c("main", "old", RunState::Other),
            c("main", "new", RunState::Other),
        ];
        assert_eq!(id(&two, "new").unwrap(), "main-new");
        assert_eq!(id(&two, "old").unwrap(), "main-old");
        // Only a prepared one (a first install held back): that one.
        let first = [c("main", "new", RunState::Created)];
        assert_eq!(id(&first, "new").unwrap(), "main-new");
        assert!(pick(&held, &ServiceName::new("db").unwrap(), "new").is_none());
    }
}
