//! The pure planner: (target of one app, its containers, images present)
//! -> the step sequence that converges it. No I/O: the executor runs the
//! steps, and re-plans from what the engine then reports.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use crate::engine::{AppNetwork, AppVolume, Container, RunState};
use crate::names::{AppName, ServiceName};
use crate::target::{scoped_name, AppTarget, Strategy};

mod objects;
use objects::NetworkPlan;
pub use objects::{volume_conflict, wanted_volumes};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Pull {
        image: String,
    },
    /// All-or-nothing: every current and target service of the app.
    TakeLocks {
        services: Vec<ServiceName>,
    },
    Stop {
        service: ServiceName,
        id: String,
    },
    Remove {
        service: ServiceName,
        id: String,
    },
    RemoveImage {
        image: String,
    },
    Create {
        service: ServiceName,
    },
    Start {
        service: ServiceName,
    },
    /// Hand-over: wait for the new container's handover-complete file.
    AwaitHandover {
        service: ServiceName,
        timeout_ms: u64,
    },
    /// An app network (`default` or a name from the target's `networks`),
    /// made as `<app>_<network>`.
    CreateNetwork {
        network: String,
    },
    /// An app network by its engine name; one still in use stays, with a
    /// warning, until a later pass.
    RemoveNetwork {
        name: String,
    },
    /// An app volume, made as `<app>_<volume>`.
    CreateVolume {
        volume: String,
    },
    /// An app volume by its engine name (only for an app leaving the
    /// target with `remove_volumes_with_app`).
    RemoveVolume {
        name: String,
    },
    ReleaseLocks,
    /// After the locks are back: the services started in this pass come
    /// up healthy (or running, without a healthcheck) within
    /// `healthy_timeout`, or the release failed.
    VerifyHealthy {
        services: Vec<ServiceName>,
    },
}

/// What the engine has of the app besides its containers.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub networks: Vec<AppNetwork>,
    /// Engine names of the volumes that exist (the app's or not).
    pub volumes: BTreeSet<String>,
    /// The app is leaving the target: its volumes go too.
    pub remove_volumes: bool,
}

impl Step {
    /// Steps that may run while the app holds locks: they touch nothing
    /// that runs.
    pub fn lock_free(&self) -> bool {
        matches!(
            self,
            Step::Pull { .. }
                | Step::Create { .. }
                | Step::CreateNetwork { .. }
                | Step::CreateVolume { .. }
                | Step::VerifyHealthy { .. }
        )
    }
}

/// Where it lives now: the engine's body names a shared namespace's
/// container by it.
pub use crate::engine::container_name;

/// [`plan`] on the blocking pool, for the app tasks: it hashes every
/// service's config (up to 1,000 services; validation bounds what the
/// hashes cover), which is a pass's heaviest work and would otherwise hold
/// the runtime thread that serves D-Bus, HTTP and every other app. The
/// inputs are copied for it (cheap beside the hashing).
pub async fn plan_blocking(
    app: &AppName,
    target: Option<&AppTarget>,
    current: &[Container],
    images: &BTreeSet<String>,
    objects: &Objects,
) -> Vec<Step> {
    let (app, target) = (app.clone(), target.cloned());
    let (current, images, objects) = (current.to_vec(), images.clone(), objects.clone());
    let planned = tokio::task::spawn_blocking(move || {
        plan(&app, target.as_ref(), &current, &images, &objects)
    });
    match planned.await {
        Ok(steps) => steps,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

pub fn plan(
    app: &AppName,
    target: Option<&AppTarget>,
    current: &[Container],
    images: &BTreeSet<String>,
    objects: &Objects,
) -> Vec<Step> {
    let empty = AppTarget {
        release: String::new(),
        services: BTreeMap::new(),
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
        injected: None,
    };
    let target = target.unwrap_or(&empty);
    let nets = NetworkPlan::new(app, target, &objects.networks);
    let order = target.start_order();
    let mut by_service: BTreeMap<&ServiceName, Vec<&Container>> = BTreeMap::new();
    for c in current {
        by_service.entry(&c.service).or_default().push(c);
    }

    // Per target service: the container matching its config, and the rest.
    struct Svc<'a> {
        name: &'a ServiceName,
        strategy: Strategy,
        image: &'a str,
        new: Option<&'a Container>,
        olds: Vec<&'a Container>,
        timeout_ms: u64,
        /// Shares another service's namespace (`service:`): created just
        /// before it starts, once that service's container exists.
        shares: bool,
    }
    let svcs: Vec<Svc> = order
        .iter()
        .map(|name| {
            let spec = &target.services[name];
            let hash = target.config_hash(name);
            let mut new = None;
            let mut olds = Vec::new();
            for c in by_service.get(name).into_iter().flatten() {
                if c.hash == hash && new.is_none() {
                    new = Some(*c);
                } else {
                    olds.push(*c);
                }
            }
            // A network is made again only once nothing is on it: every
            // changed service of the app goes before its successor starts.
            let strategy = match spec.strategy() {
                _ if !nets.changed.is_empty() => Strategy::KillThenDownload,
                s => s,
            };
            Svc {
                name,
                strategy,
                image: &spec.image,
                new,
                olds,
                timeout_ms: spec.handover_timeout_ms(),
                shares: spec.shares_with().next().is_some(),
            }
        })
        .collect();
    let removed: Vec<&Container> = current
        .iter()
        .filter(|c| !target.services.contains_key(&c.service))
        .collect();
    let changed = |s: &Svc| s.new.is_none() || !s.olds.is_empty();
    let remove_volumes: Vec<String> = if objects.remove_volumes && target.services.is_empty() {
        objects.volumes.iter().cloned().collect()
    } else {
        Vec::new()
    };
    let mutate = !removed.is_empty() || svcs.iter().any(changed) || !remove_volumes.is_empty();

    let mut steps = Vec::new();
    // Each image once: a set, not a search of the steps (linear work for
    // an app of many services).
    let mut pulled: BTreeSet<String> = BTreeSet::new();
    let mut pull = |steps: &mut Vec<Step>, image: &str| {
        if !images.contains(image) && !pulled.contains(image) {
            pulled.insert(image.to_owned());
            steps.push(Step::Pull {
                image: image.to_owned(),
            });
        }
    };
    // Before the lock gate: downloads, and the new containers created (not
    // started), so an engine that refuses the new config costs nothing
    // that runs.
    let early_pull = |s: &Svc| s.new.is_none() && s.strategy.downloads_first();
    let early = |s: &Svc| early_pull(s) && !s.shares;
    for s in svcs.iter().filter(|s| early_pull(s)) {
        pull(&mut steps, s.image);
    }
    // What containers are made on: missing networks and volumes (nothing
    // runs on them yet, so before the gate).
    for network in &nets.missing {
        steps.push(Step::CreateNetwork {
            network: network.clone(),
        });
    }
    for volume in wanted_volumes(target) {
        if !objects.volumes.contains(&scoped_name(app, &volume)) {
            steps.push(Step::CreateVolume { volume });
        }
    }
    for s in svcs.iter().filter(|s| early(s)) {
        steps.push(Step::Create {
            service: s.name.clone(),
        });
    }
    if mutate {
        let mut services: BTreeSet<ServiceName> = target.services.keys().cloned().collect();
        services.extend(current.iter().map(|c| c.service.clone()));
        steps.push(Step::TakeLocks {
            services: services.into_iter().collect(),
        });
    }
    let stop = |steps: &mut Vec<Step>, c: &Container| {
        if c.state != RunState::Created {
            steps.push(Step::Stop {
                service: c.service.clone(),
                id: c.id.clone(),
            });
        }
    };
    let remove = |steps: &mut Vec<Step>, c: &Container| {
        steps.push(Step::Remove {
            service: c.service.clone(),
            id: c.id.clone(),
        });
    };
    // Kill phase, dependants first: removed services, then changed ones.
    // download-then-kill only stops: the old container is removed once its
    // successor started. Hand-over keeps the old one running until then.
    for c in &removed {
        stop(&mut steps, c);
        remove(&mut steps, c);
    }
    let in_use: BTreeSet<&str> = svcs.iter().map(|s| s.image).collect();
    for s in svcs.iter().rev() {
        match s.strategy {
            Strategy::HandOver => {}
            Strategy::DownloadThenKill => s.olds.iter().for_each(|c| stop(&mut steps, c)),
            Strategy::KillThenDownload | Strategy::DeleteThenDownload => {
                for c in &s.olds {
                    stop(&mut steps, c);
                    remove(&mut steps, c);
                    if s.strategy == Strategy::DeleteThenDownload
                        && !in_use.contains(c.image.as_str())
                    {
                        steps.push(Step::RemoveImage {
                            image: c.image.clone(),
                        });
                    }
                }
            }
        }
    }
    // Changed networks, now that nothing of the app runs on them.
    for network in &nets.changed {
        steps.push(Step::RemoveNetwork {
            name: scoped_name(app, network),
        });
        steps.push(Step::CreateNetwork {
            network: network.clone(),
        });
    }
    // Downloads after the kill, for the strategies that want it.
    for s in svcs
        .iter()
        .filter(|s| s.new.is_none() && !s.strategy.downloads_first())
    {
        pull(&mut steps, s.image);
    }
    for s in &svcs {
        match s.new {
            None if !early(s) => {
                steps.push(Step::Create {
                    service: s.name.clone(),
                });
                steps.push(Step::Start {
                    service: s.name.clone(),
                });
            }
            None => steps.push(Step::Start {
                service: s.name.clone(),
            }),
            Some(c) if c.state == RunState::Created => steps.push(Step::Start {
                service: s.name.clone(),
            }),
            // Not running while its predecessors are still there: a failed
            // pass stopped it again when it put them back. It must run
            // before they go; left alone, the service would end with none.
            Some(c) if c.state == RunState::Other && !s.olds.is_empty() => {
                steps.push(Step::Start {
                    service: s.name.clone(),
                })
            }
            Some(_) => {}
        }
        if s.strategy == Strategy::HandOver && !s.olds.is_empty() {
            if s.olds.iter().any(|c| c.state == RunState::Running) {
                steps.push(Step::AwaitHandover {
                    service: s.name.clone(),
                    timeout_ms: s.timeout_ms,
                });
            }
            for c in &s.olds {
                stop(&mut steps, c);
                remove(&mut steps, c);
            }
        }
    }
    for s in svcs
        .iter()
        .filter(|s| s.strategy == Strategy::DownloadThenKill)
    {
        s.olds.iter().for_each(|c| remove(&mut steps, c));
    }
    for name in remove_volumes {
        steps.push(Step::RemoveVolume { name });
    }
    for name in &nets.unused {
        steps.push(Step::RemoveNetwork { name: name.clone() });
    }
    if mutate {
        steps.push(Step::ReleaseLocks);
    }
    let started: Vec<ServiceName> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Start { service } => Some(service.clone()),
            _ => None,
        })
        .collect();
    if !started.is_empty() {
        steps.push(Step::VerifyHealthy { services: started });
    }
    steps
}

#[cfg(test)]
mod tests;
