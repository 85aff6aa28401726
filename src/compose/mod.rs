//! Compose files as one app's target (docs/compose.md). The YAML becomes a
//! tree of nodes with positions (`yaml`); its values are interpolated
//! (`interpolate`) and its shapes normalized into the target's JSON
//! (`convert` with its helpers; `document`, `service`, `options`, `ports`,
//! `mounts` for the parts of the file), recording where in the file each JSON
//! path came from; the JSON is read and validated by `crate::target`, and
//! any error there is put back at its line and column.
//!
//! Pure: the environment and the files beside the compose file come in
//! through [`Host`].

mod convert;
mod document;
mod envfile;
mod interpolate;
mod mounts;
mod options;
mod ports;
mod service;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::names::AppName;
use crate::target::{AppTarget, Target, TargetError};

pub use yaml::Pos;

/// A compose file bigger than this is refused.
pub const MAX_COMPOSE_BYTES: u64 = 4 << 20;

/// Outside text quoted in a message: cut to [`crate::text::SHOWN_MAX`]
/// characters, quoted and escaped as `{:?}` does.
pub(crate) fn q(s: &str) -> String {
    format!("{:?}", crate::text::clip(s, crate::text::SHOWN_MAX))
}

/// The longest reason a message gives: its own words and the outside text
/// it quotes (each cut to 200 characters). A bound for reasons built
/// elsewhere (the target's checks) that quote without cutting.
const REASON_MAX: usize = 1000;

/// A reason as shown: escaped, and cut if it is longer than any of ours.
fn shown_reason(reason: &str) -> String {
    crate::target::no_controls(&crate::text::clip(reason, REASON_MAX))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// Something at a place in the file.
    #[error("{file}:{line}:{column}: {path}: {reason}")]
    At {
        file: String,
        line: usize,
        column: usize,
        path: String,
        reason: String,
    },
    /// Something not in the file (e.g. `--release`), by its target path.
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
    /// The file, or one it names, cannot be read.
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
}

/// An error at a place, before the file's name is known to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At {
    pub pos: Pos,
    pub path: String,
    pub reason: String,
}

impl At {
    pub fn new(pos: Pos, path: &str, reason: impl Into<String>) -> At {
        At {
            pos,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn in_file(self, file: &str) -> ComposeError {
        ComposeError::At {
            file: file.to_owned(),
            line: self.pos.line,
            column: self.pos.column,
            // Keys are escaped in paths; a long one is cut.
            path: crate::text::shown(&self.path),
            reason: shown_reason(&self.reason),
        }
    }
}

/// What a compose file may read beyond its own text.
pub trait Host {
    /// A variable of the environment compose would see (the shell's).
    fn env(&self, name: &str) -> Option<String>;
    /// A file's bytes; `Ok(None)` when it does not exist.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, String>;
}

/// The process environment and the file system.
pub struct OsHost;

impl Host for OsHost {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        crate::fsutil::read_regular(path, envfile::MAX_ENV_FILE_BYTES as u64)
            .map_err(|e| e.reason())
    }
}

/// One compose file to convert.
pub struct Source<'a> {
    /// How errors name it (its path, or `-` for stdin).
    pub name: &'a str,
    pub bytes: &'a [u8],
    /// Where relative paths (`.env`, `env_file`, bind sources) start: the
    /// file's directory, or the working directory for stdin.
    pub dir: &'a Path,
}

/// The app's target from a compose file, validated as part of a target
/// holding only this app. `release` defaults to the first 12 hex digits of
/// the SHA-256 of the file, followed by `.env` and the `env_file`s read.
pub fn load(
    src: &Source,
    app: &AppName,
    release: Option<&str>,
    host: &dyn Host,
) -> Result<AppTarget, ComposeError> {
    let file = crate::text::shown(src.name);
    if src.bytes.len() as u64 > MAX_COMPOSE_BYTES {
        return Err(ComposeError::Read {
            file,
            reason: format!(
                "larger than {} MiB ({MAX_COMPOSE_BYTES} bytes)",
                MAX_COMPOSE_BYTES >> 20
            ),
        });
    }
    let text = std::str::from_utf8(src.bytes).map_err(|e| ComposeError::Read {
        file: file.clone(),
        reason: format!("not UTF-8: {e}"),
    })?;
    let root = yaml::parse(text)
        .map_err(|e| e.in_file(&file))?
        .ok_or_else(|| ComposeError::Read {
            file: file.clone(),
            reason: "empty: a compose file needs at least `services`".into(),
        })?;

    let mut hash = Sha256::new();
    hash.update(src.bytes);
    let mut reads = envfile::Reads::new(hash);
    let budget = interpolate::Budget::new(interpolate::MAX_PASTED_BYTES);
    let mut vars = envfile::Vars::new(host);
    let dotenv_path = src.dir.join(".env");
    let dotenv_file = crate::text::shown(&dotenv_path.display().to_string());
    let read_error = |reason| ComposeError::Read {
        file: dotenv_file.clone(),
        reason,
    };
    match host.read(&dotenv_path) {
        Ok(Some(bytes)) => {
            reads.add(&bytes).map_err(read_error)?;
            let text =
                std::str::from_utf8(&bytes).map_err(|e| read_error(format!("not UTF-8: {e}")))?;
            let dotenv =
                envfile::parse_env_file(text, &|k| vars.shell(k), &budget).map_err(|e| {
                    ComposeError::Read {
                        file: format!("{dotenv_file}:{}:{}", e.line, e.column),
                        reason: e.reason,
                    }
                })?;
            vars.set_dotenv(dotenv);
        }
        Ok(None) => {}
        Err(reason) => return Err(read_error(reason)),
    }
    let lookup = |name: &str| vars.get(name);

    let mut cx = convert::Ctx::new(&lookup, host, src.dir, &budget, reads);
    let value = cx.document(&root).map_err(|e| e.in_file(&file))?;
    let release = match release {
        Some(r) => r.to_owned(),
        None => cx.reads.finish()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    };
    let mut value = value;
    value["release"] = serde_json::Value::String(release);

    let positions = std::mem::take(&mut cx.positions);
    let place = |e: TargetError| -> ComposeError {
        let (path, reason) = match e {
            TargetError::Invalid { path, reason, .. } | TargetError::Shape { path, reason, .. } => {
                (path, reason)
            }
        };
        let prefix = format!("apps.{app}.");
        let path = path
            .strip_prefix(&prefix)
            .map(str::to_owned)
            .unwrap_or(path);
        match find(&positions, &path) {
            // Only --release can be a bad release.
            _ if path == "release" => ComposeError::Invalid {
                file: file.clone(),
                path: "--release".into(),
                reason: shown_reason(&reason),
            },
            Some(pos) => At { pos, path, reason }.in_file(&file),
            None => ComposeError::Invalid {
                file: file.clone(),
                path: crate::text::shown(&path),
                reason: shown_reason(&reason),
            },
        }
    };
    let target = crate::target::app_from_value(value, &file).map_err(place)?;
    crate::target::check(&one_app(app, target.clone()), &file).map_err(place)?;
    Ok(target)
}

/// The whole target `holdfast convert` prints: this app alone.
pub fn one_app(app: &AppName, target: AppTarget) -> Target {
    Target {
        version: 1,
        apps: BTreeMap::from([(app.clone(), target)]),
        config: BTreeMap::new(),
    }
}

/// The position recorded for `path`, or for the nearest thing around it.
fn find(positions: &BTreeMap<String, Pos>, path: &str) -> Option<Pos> {
    let mut p = path;
    loop {
        if let Some(pos) = positions.get(p) {
            return Some(*pos);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

/// `base/rel` with `.` and `..` resolved without touching the file system.
pub(crate) fn join_clean(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
