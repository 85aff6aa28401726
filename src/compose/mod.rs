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
            path: self.path,
            reason: crate::target::no_controls(&self.reason),
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
        crate::fsutil::read_regular(path, MAX_COMPOSE_BYTES).map_err(|e| e.reason())
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
    let file = crate::target::no_controls(src.name);
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
    let dotenv_path = src.dir.join(".env");
    let dotenv = match host.read(&dotenv_path) {
        Ok(Some(bytes)) => {
            hash.update(&bytes);
            read_env_file(&dotenv_path, &bytes, &|k| host.env(k))?
        }
        Ok(None) => Vec::new(),
        Err(reason) => return Err(read_error(&dotenv_path, reason)),
    };
    let lookup = |name: &str| {
        host.env(name).or_else(|| {
            dotenv
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };

    let mut cx = convert::Ctx::new(&lookup, host, src.dir);
    let value = cx.document(&root).map_err(|e| e.in_file(&file))?;
    for bytes in &cx.files_read {
        hash.update(bytes);
    }
    let release = match release {
        Some(r) => r.to_owned(),
        None => hash.finalize()[..6]
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
                reason,
            },
            Some(pos) => At { pos, path, reason }.in_file(&file),
            None => ComposeError::Invalid {
                file: file.clone(),
                path,
                reason,
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

fn read_error(path: &Path, reason: String) -> ComposeError {
    ComposeError::Read {
        file: path.display().to_string(),
        reason,
    }
}

/// A `.env` or `env_file` file's variables.
fn read_env_file(
    path: &Path,
    bytes: &[u8],
    lookup: interpolate::Lookup,
) -> Result<Vec<(String, String)>, ComposeError> {
    let file = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| ComposeError::Read {
        file: file.clone(),
        reason: format!("not UTF-8: {e}"),
    })?;
    interpolate::parse_env_file(text, lookup).map_err(|(line, column, reason)| ComposeError::Read {
        file: format!("{file}:{line}:{column}"),
        reason: crate::target::no_controls(&reason),
    })
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
