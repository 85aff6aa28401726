//! Semantic checks of a parsed target. A value the engine refuses would
//! only fail at container create or start, after the old containers are
//! already stopped, leaving the app with none: such values are refused
//! here, before anything is touched. Errors are (JSON path, reason).
//!
//! `app` checks what needs the whole app (networks, volumes, references
//! between services), `engine_names` the names the engine gets across
//! apps, `service` one service's fields, `values` and `fields` and
//! `logging` single values, `net` addresses and names.

mod app;
mod engine_names;
mod fields;
mod limits;
mod logging;
mod net;
mod service;
mod values;

use std::collections::BTreeMap;

use super::spec::{Target, FORMAT_VERSION};
use super::strict::{escape, quoted as q};

pub(crate) use fields::parse_expose;
pub(crate) use values::parse_port;

type Invalid = (String, String);

const NAME_RULE: &str = "a letter or digit, then letters, digits, '_', '.' or '-'";

/// Labels holdfast sets on what it creates; a target setting one would
/// confuse it about what it manages.
const RESERVED_LABEL_PREFIX: &str = "io.holdfast.";

pub(super) fn validate(t: &Target) -> Result<(), Invalid> {
    if t.version != FORMAT_VERSION {
        return Err((
            "version".into(),
            format!(
                "unsupported version {} (this holdfast reads {FORMAT_VERSION})",
                t.version
            ),
        ));
    }
    limits::counts(t)?;
    for (key, value) in &t.config {
        let at = format!("config.{}", escape(key));
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((at, "keys are letters, digits and '_'".into()));
        }
        if key == crate::bootcfg::PREFIX {
            return Err((at, "names no config.txt key".into()));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err((at, "values are one line, without NUL".into()));
        }
    }
    // Subnets of every app's networks: the engine refuses overlapping ones.
    let mut subnets = Vec::new();
    for (app, a) in &t.apps {
        app::validate_app(app.as_str(), a, &mut subnets)?;
    }
    engine_names::check_engine_names(t)
}

/// No NUL in keys or values; `key_rule` adds the map's own key rule.
fn check_map(
    name: &str,
    map: &BTreeMap<String, String>,
    key_rule: impl Fn(&str) -> Result<(), String>,
) -> Result<(), Invalid> {
    for (key, value) in map {
        let at = format!("{name}.{}", escape(key));
        key_rule(key).map_err(|r| (at.clone(), r))?;
        no_nul(key).map_err(|r| (at.clone(), format!("the name: {r}")))?;
        no_nul(value).map_err(|r| (at, r))?;
    }
    Ok(())
}

fn no_nul(v: &str) -> Result<(), String> {
    if v.contains('\0') {
        Err(format!(
            "{} contains a NUL character, which the engine refuses",
            q(v)
        ))
    } else {
        Ok(())
    }
}

/// What is wrong with a path that must be absolute, if anything.
fn path_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        Some("is not an absolute path (it must start with '/')")
    } else if p.split('/').any(|c| c == "..") {
        Some("has a '..' component; give the path without it")
    } else if p.contains('\0') {
        Some("contains a NUL character")
    } else {
        None
    }
}

/// `/a//b/./c/` and `/a/b/c` are one mount point to the engine.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A volume or network name as the engine accepts it.
fn is_engine_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Labels: no NUL, none under `io.holdfast.`.
fn check_labels(name: &str, map: &BTreeMap<String, String>) -> Result<(), Invalid> {
    check_map(name, map, |key| {
        if key.starts_with(RESERVED_LABEL_PREFIX) {
            Err(format!(
                "labels under {RESERVED_LABEL_PREFIX} are holdfast's own; choose another name"
            ))
        } else {
            Ok(())
        }
    })
}

/// A network, volume, IPAM or log driver name.
fn check_driver(d: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
    if !d.is_empty() && d.chars().all(ok) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a driver name: lower-case letters, digits, '_', '.' and '-'",
            q(d)
        ))
    }
}

#[cfg(test)]
mod app_tests;
#[cfg(test)]
mod engine_names_tests;
#[cfg(test)]
mod fields_tests;
#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod lock_dir_tests;
#[cfg(test)]
mod tests;
