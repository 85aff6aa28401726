//! `logging`: the driver's name, and for the engine's own file drivers
//! (json-file, local) their options, as the engine checks them at create
//! and the driver at start.

use std::collections::BTreeMap;

use super::fields::go_bool;
use super::no_nul;
use super::q;
use crate::target::Logging;

/// Options the engine's file drivers accept (it refuses others at create).
const COMMON_LOG_OPTS: [&str; 6] = [
    "mode",
    "max-buffer-size",
    "cache-disabled",
    "cache-max-size",
    "cache-max-file",
    "cache-compress",
];
const JSON_FILE_OPTS: [&str; 8] = [
    "max-size",
    "max-file",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];
const LOCAL_OPTS: [&str; 3] = ["max-size", "max-file", "compress"];

/// A size as the engine's log options read it: `10m`, `1.5 GB`, `512k`.
fn log_size(v: &str) -> Option<f64> {
    let t = v.strip_suffix(['b', 'B']).unwrap_or(v);
    let t = t.strip_suffix(['i', 'I']).unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T' | 'p' | 'P') => {
            let exp = "kmgtp".find(c.to_ascii_lowercase())? as i32 + 1;
            (&t[..t.len() - 1], 1024f64.powi(exp))
        }
        _ => (t, 1.0),
    };
    let num = num.strip_suffix(' ').unwrap_or(num);
    let ok = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.as_bytes()[0].is_ascii_digit();
    ok.then(|| num.parse::<f64>().ok().map(|n| n * mult))
        .flatten()
}

/// `logging`: the driver's name, no NUL; for the engine's own file
/// drivers (json-file, local) the option names and values too.
pub(super) fn check_logging(l: &Logging) -> Result<(), (String, String)> {
    let at = |k: &str| format!("options.{}", crate::target::strict::escape(k));
    if let Some(d) = &l.driver {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
        if d.is_empty() || !d.chars().all(ok) {
            return Err((
                "driver".into(),
                format!(
                    "{} is not a log driver name: lower-case letters, digits, '_', '.' and '-' \
                     (e.g. json-file, local, journald, or a plugin's alias)",
                    q(d)
                ),
            ));
        }
    }
    for (k, v) in &l.options {
        no_nul(k).map_err(|r| (at(k), format!("the name: {r}")))?;
        no_nul(v).map_err(|r| (at(k), r))?;
    }
    let opts = &l.options;
    if let Some(m) = opts.get("mode") {
        if !matches!(m.as_str(), "blocking" | "non-blocking") {
            return Err((
                at("mode"),
                format!("{} is not blocking or non-blocking", q(m)),
            ));
        }
    }
    if let Some(b) = opts.get("max-buffer-size") {
        if opts.get("mode").map(String::as_str) != Some("non-blocking") {
            return Err((
                at("max-buffer-size"),
                "only works with mode non-blocking; the engine refuses it otherwise".into(),
            ));
        }
        log_size(b).ok_or_else(|| {
            (
                at("max-buffer-size"),
                format!("{} is not a size like 4m", q(b)),
            )
        })?;
    }
    let own: &[&str] = match l.driver.as_deref() {
        Some("json-file") => &JSON_FILE_OPTS,
        Some("local") => &LOCAL_OPTS,
        // Other drivers' options: the engine's (or plugin's) to check.
        _ => return Ok(()),
    };
    let driver = l.driver.as_deref().unwrap_or_default();
    check_file_driver_opts(driver, own, opts).map_err(|(k, r)| (at(&k), r))
}

fn check_file_driver_opts(
    driver: &str,
    own: &[&str],
    opts: &BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    for k in opts.keys() {
        if !own.contains(&k.as_str()) && !COMMON_LOG_OPTS.contains(&k.as_str()) {
            return Err((
                k.clone(),
                format!(
                    "the {driver} log driver has no option {}; it takes {}, {}",
                    q(k),
                    own.join(", "),
                    COMMON_LOG_OPTS.join(", ")
                ),
            ));
        }
    }
    let size = opts.get("max-size");
    if let Some(s) = size {
        match log_size(s) {
            Some(n) if n > 0.0 || driver == "local" => {}
            _ => {
                return Err((
                    "max-size".into(),
                    format!("{} is not a size above 0 like 10m or 1g", q(s)),
                ))
            }
        }
    }
    let files = match opts.get("max-file") {
        Some(f) => {
            let n = f
                .strip_prefix('+')
                .unwrap_or(f)
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1);
            Some(n.ok_or_else(|| {
                (
                    "max-file".to_owned(),
                    format!("{} is not a number of files, 1 or more", q(f)),
                )
            })?)
        }
        None => None,
    };
    let compress = match opts.get("compress") {
        Some(c) => Some(go_bool(c).ok_or_else(|| {
            (
                "compress".to_owned(),
                format!("{} is not true or false", q(c)),
            )
        })?),
        None => None,
    };
    // json-file compresses only rotated files: it needs them. local
    // compresses by default and refuses that with a single file.
    let why = match driver {
        "json-file" if compress == Some(true) && (files.unwrap_or(1) < 2 || size.is_none()) => {
            "compress needs max-file of 2 or more and max-size with the json-file driver"
        }
        "local" if compress != Some(false) && files == Some(1) => {
            "with max-file 1 the local driver needs compress false (it compresses by default)"
        }
        _ => return Ok(()),
    };
    Err(("compress".into(), why.into()))
}
