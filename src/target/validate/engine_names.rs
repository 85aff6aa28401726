//! The names the engine knows an app's objects by: networks and volumes
//! `<app>_<name>`, containers `<app>_<service>_<config hash>`. The joint
//! `_` is also a name character, so app `a` with volume `b_data` and app
//! `a_b` with volume `data` would both be volume `a_b_data` (one app
//! reading the other's data, a prune of one deleting the other's). Such a
//! target is refused; renaming engine objects instead would lose the data
//! of the volumes already made.

use std::collections::HashMap;

use super::{escape, q, Invalid};
use crate::names::AppName;
use crate::target::{scoped_name, AppTarget, Target};

/// The engine makes a directory of a volume's name (`volumes/<name>`):
/// longer than NAME_MAX it answers "file name too long" (dockerd 20.10).
/// Network and container names have no such limit there.
pub(super) const VOLUME_NAME_MAX: usize = 255;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Network,
    Volume,
    Container,
}

impl Kind {
    /// What two apps would share, said of one of them.
    fn clash(self, app: &AppName, name: &str, engine: &str) -> String {
        match self {
            Kind::Network => format!(
                "app {app}'s network {} is engine network {}",
                q(name),
                q(engine)
            ),
            Kind::Volume => format!(
                "app {app}'s volume {} is engine volume {}",
                q(name),
                q(engine)
            ),
            Kind::Container => format!(
                "app {app}'s service {} has containers named {}",
                q(name),
                q(&format!("{engine}_<config hash>"))
            ),
        }
    }
}

/// One object of an app: its kind, its name in the target, the JSON path
/// that names it.
struct Object {
    kind: Kind,
    name: String,
    at: String,
}

/// Every engine object the app's target may make: declared networks and
/// those its services join, declared volumes and those its services mount
/// by name, one container name prefix per service.
fn objects(app: &AppName, a: &AppTarget) -> Vec<Object> {
    let base = format!("apps.{app}");
    let mut out = Vec::new();
    for n in a.networks.keys() {
        out.push(Object {
            kind: Kind::Network,
            name: n.clone(),
            at: format!("{base}.networks.{}", escape(n)),
        });
    }
    for v in a.volumes.keys() {
        out.push(Object {
            kind: Kind::Volume,
            name: v.clone(),
            at: format!("{base}.volumes.{}", escape(v)),
        });
    }
    for (s, spec) in &a.services {
        let at = format!("{base}.services.{s}");
        out.push(Object {
            kind: Kind::Container,
            name: s.to_string(),
            at: at.clone(),
        });
        for (n, _) in spec.joined_networks() {
            if !a.networks.contains_key(n) {
                let at = match spec.networks.is_empty() {
                    true => at.clone(),
                    false => format!("{at}.networks.{}", escape(n)),
                };
                out.push(Object {
                    kind: Kind::Network,
                    name: n.to_owned(),
                    at,
                });
            }
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            let Some((src, _)) = v.split_once(':') else {
                continue;
            };
            if !src.starts_with('/') && !a.volumes.contains_key(src) {
                out.push(Object {
                    kind: Kind::Volume,
                    name: src.to_owned(),
                    at: format!("{at}.volumes[{i}]"),
                });
            }
        }
    }
    out
}

/// Refuses an engine name two apps would share, and a volume name longer
/// than the engine takes.
pub(super) fn check_engine_names(t: &Target) -> Result<(), Invalid> {
    // (kind, engine name) -> (app, object name) of the first app using it.
    let mut seen: HashMap<(Kind, String), (&AppName, String)> = HashMap::new();
    for (app, a) in &t.apps {
        for o in objects(app, a) {
            let engine = scoped_name(app, &o.name);
            if o.kind == Kind::Volume && engine.len() > VOLUME_NAME_MAX {
                return Err((
                    o.at,
                    format!(
                        "the engine volume would be named {} ({} bytes): the engine makes a \
                         directory of that name, at most {VOLUME_NAME_MAX} bytes; shorten the \
                         app's or the volume's name",
                        q(&engine),
                        engine.len()
                    ),
                ));
            }
            match seen.get(&(o.kind, engine.clone())) {
                Some((other, name)) if *other != app => {
                    return Err((
                        o.at,
                        format!(
                            "{}, and so is app {other}'s ({}): holdfast names engine objects \
                             <app>_<name>, so one app would use the other's; rename one of them",
                            o.kind.clash(app, &o.name, &engine),
                            q(name),
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert((o.kind, engine), (app, o.name));
                }
            }
        }
    }
    Ok(())
}
