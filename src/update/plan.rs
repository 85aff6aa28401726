//! The pure planner: (target of one app, its containers, images present)
//! -> the step sequence that converges it. No I/O: the executor runs the
//! steps, and re-plans from what the engine then reports.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use crate::engine::{Container, RunState};
use crate::names::ServiceName;
use crate::target::{AppTarget, Strategy};

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
    ReleaseLocks,
}

impl Step {
    /// Steps that may run while the app holds locks: they touch nothing
    /// that runs.
    pub fn lock_free(&self) -> bool {
        matches!(self, Step::Pull { .. } | Step::Create { .. })
    }
}

/// Where it lives now: the engine's body names a shared namespace's
/// container by it.
pub use crate::engine::container_name;

pub fn plan(
    target: Option<&AppTarget>,
    current: &[Container],
    images: &BTreeSet<String>,
) -> Vec<Step> {
    let empty = AppTarget {
        release: String::new(),
        services: BTreeMap::new(),
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
    };
    let target = target.unwrap_or(&empty);
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
            Svc {
                name,
                strategy: spec.strategy(),
                image: &spec.image,
                new,
                olds,
                timeout_ms: spec.handover_timeout_ms(),
            }
        })
        .collect();
    let removed: Vec<&Container> = current
        .iter()
        .filter(|c| !target.services.contains_key(&c.service))
        .collect();
    let changed = |s: &Svc| s.new.is_none() || !s.olds.is_empty();
    let mutate = !removed.is_empty() || svcs.iter().any(changed);

    let mut steps = Vec::new();
    let pull = |steps: &mut Vec<Step>, image: &str| {
        let step = Step::Pull {
            image: image.to_owned(),
        };
        if !images.contains(image) && !steps.contains(&step) {
            steps.push(step);
        }
    };
    // Before the lock gate: downloads, and the new containers created (not
    // started), so an engine that refuses the new config costs nothing
    // that runs.
    let early = |s: &Svc| s.new.is_none() && s.strategy.downloads_first();
    for s in svcs.iter().filter(|s| early(s)) {
        pull(&mut steps, s.image);
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
    // Downloads after the kill, for the strategies that want it.
    for s in svcs
        .iter()
        .filter(|s| s.new.is_none() && !s.strategy.downloads_first())
    {
        pull(&mut steps, s.image);
    }
    for s in &svcs {
        match s.new {
            None if !s.strategy.downloads_first() => {
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
    if mutate {
        steps.push(Step::ReleaseLocks);
    }
    steps
}

#[cfg(test)]
mod tests;
