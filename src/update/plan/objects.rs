//! What the planner works out about an app's networks and volumes: which
//! networks to make, make again or remove, which volumes the target names,
//! and a volume that exists with another definition. Lookups by name, so
//! the work stays linear in the app.

use std::collections::{BTreeMap, BTreeSet};

use super::{AppNetwork, AppVolume};
use crate::names::AppName;
use crate::target::{scoped_name, AppTarget, NetworkSpec};

/// The app's networks: which the target's services need and the engine
/// lacks, which it has with another definition, which nothing needs.
pub(super) struct NetworkPlan {
    pub(super) missing: Vec<String>,
    pub(super) changed: Vec<String>,
    /// Engine names.
    pub(super) unused: Vec<String>,
}

impl NetworkPlan {
    pub(super) fn new(app: &AppName, target: &AppTarget, have: &[AppNetwork]) -> Self {
        let wanted: BTreeSet<&str> = target
            .services
            .values()
            .flat_map(|s| s.joined_networks().into_iter().map(|(n, _)| n))
            .collect();
        let mut plan = NetworkPlan {
            missing: Vec::new(),
            changed: Vec::new(),
            unused: Vec::new(),
        };
        // By engine name: lookups, not a search per network (the first of
        // two of one name, as a search would find).
        let mut by_name: BTreeMap<&str, &AppNetwork> = BTreeMap::new();
        for h in have {
            by_name.entry(h.name.as_str()).or_insert(h);
        }
        let wanted: BTreeMap<String, &str> = wanted
            .into_iter()
            .map(|n| (scoped_name(app, n), n))
            .collect();
        for (engine_name, n) in &wanted {
            match by_name.get(engine_name.as_str()) {
                None => plan.missing.push((*n).to_owned()),
                Some(h) => {
                    let hash = match target.networks.get(*n) {
                        Some(spec) => spec.config_hash(),
                        None => NetworkSpec::default().config_hash(),
                    };
                    if h.hash != hash {
                        plan.changed.push((*n).to_owned());
                    }
                }
            }
        }
        for h in have {
            if !wanted.contains_key(&h.name) {
                plan.unused.push(h.name.clone());
            }
        }
        plan
    }
}

/// A volume the target defines that the engine has with another driver
/// or options: refused, since making it again would destroy its data.
pub fn volume_conflict(app: &AppName, target: &AppTarget, have: &[AppVolume]) -> Option<String> {
    let mut by_name: BTreeMap<&str, &AppVolume> = BTreeMap::new();
    for v in have {
        by_name.entry(v.name.as_str()).or_insert(v);
    }
    for (name, spec) in &target.volumes {
        let engine_name = scoped_name(app, name);
        let Some(v) = by_name.get(engine_name.as_str()) else {
            continue;
        };
        let driver = spec.driver.as_deref().unwrap_or("local");
        if v.driver != driver || (v.app.is_some() && v.options != spec.driver_opts) {
            return Some(format!(
                "volume {engine_name} exists with driver {} and options {:?}, but the target asks for driver {driver} and options {:?}; holdfast does not make a volume again (its data would be lost): put the definition back, or remove the volume yourself",
                v.driver, v.options, spec.driver_opts
            ));
        }
    }
    None
}

/// The app volumes the target names: declared ones and those services
/// mount by name (a name not declared is an app volume with defaults).
pub fn wanted_volumes(target: &AppTarget) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = target.volumes.keys().cloned().collect();
    for spec in target.services.values() {
        for v in &spec.volumes {
            if let Some((source, _)) = v.split_once(':') {
                if !source.starts_with('/') {
                    names.insert(source.to_owned());
                }
            }
        }
    }
    names
}
