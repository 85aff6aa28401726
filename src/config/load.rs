//! Reading and merging config files, with errors that name the file, the
//! line, the key and the reason.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::fragment::{FleetFragment, Fragment};
use super::settings::{InhibitWhat, Settings, Source, Sourced};
use crate::fleet;
use crate::fsutil::read_regular;
use fleet_lock::fleet_lock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A parsed file and its text (for turning spans into line numbers).
struct Parsed {
    path: PathBuf,
    text: String,
    fragment: Fragment,
}

impl Parsed {
    fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: span.map(|s| line_of(&self.text, s.start)),
            key: Some(key.to_owned()),
            reason: reason.into(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn parse_file(path: &Path, text: String) -> Result<Parsed, ConfigError> {
    match toml::from_str::<Fragment>(&text) {
        Ok(fragment) => Ok(Parsed {
            path: path.to_owned(),
            text,
            fragment,
        }),
        Err(e) => Err(ConfigError {
            file: path.to_owned(),
            line: e.span().map(|s| line_of(&text, s.start)),
            key: None,
            reason: e.message().trim().to_owned(),
        }),
    }
}

/// Far above any real config file; /dev/zero behind a name must not fill
/// memory.
const MAX_FILE: u64 = 1 << 20;

/// A config file's text; `None` only when it does not exist. Only a regular
/// file is read (a FIFO would block the daemon, a device never ends).
fn read(path: &Path) -> Result<Option<String>, ConfigError> {
    let error = |line, reason| ConfigError {
        file: path.to_owned(),
        line,
        key: None,
        reason,
    };
    let bytes = match read_regular(path, MAX_FILE) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(error(None, e.reason())),
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        error(Some(line), "is not UTF-8 text".into())
    })
}

/// Drop-in files in application order: by file name, a later directory's
/// file replacing an earlier one's of the same name, `/dev/null` symlinks
/// masking.
fn dropins(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let dir_error = |e: std::io::Error| ConfigError {
            file: dir.clone(),
            line: None,
            key: None,
            reason: e.to_string(),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(dir_error(e)),
        };
        for entry in entries {
            // A listing cut short would silently drop drop-ins.
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") && !name.starts_with('.') {
                by_name.insert(name, entry.path());
            }
        }
    }
    Ok(by_name
        .into_values()
        .filter(|p| {
            std::fs::read_link(p)
                .map(|t| t != Path::new("/dev/null"))
                .unwrap_or(true)
        })
        .collect())
}

/// Loads the main file and the drop-ins. A named main file must exist; the
/// default one may be absent.
pub fn load(main: &Path, main_required: bool) -> Result<Sourced, ConfigError> {
    let mut files = Vec::new();
    let main_parsed = match read(main)? {
        Some(text) => Some(parse_file(main, text)?),
        None if main_required => {
            return Err(ConfigError {
                file: main.to_owned(),
                line: None,
                key: None,
                reason: "file not found".into(),
            })
        }
        None => None,
    };
    let mut merged = Merge::default();
    if let Some(p) = &main_parsed {
        files.push(p.path.clone());
        merged.apply(p)?;
    }
    let dirs = merged.settings.config_dirs.clone();
    for path in dropins(&dirs)? {
        let Some(text) = read(&path)? else { continue };
        let parsed = parse_file(&path, text)?;
        if let Some(d) = &parsed.fragment.config_dirs {
            return Err(parsed.error(
                Some(d.span()),
                "config_dirs",
                "may only be set in the main config file",
            ));
        }
        merged.apply(&parsed)?;
        files.push(path);
    }
    lock_root::check(main, &merged)?;
    Ok(Sourced {
        settings: merged.settings,
        sources: merged.sources,
        files,
    })
}

#[derive(Default)]
struct Merge {
    settings: Settings,
    sources: BTreeMap<&'static str, Source>,
    /// The file and line that set `lock_root`, for its refusal.
    lock_root_at: Option<(PathBuf, usize)>,
}

impl Merge {
    fn apply(&mut self, p: &Parsed) -> Result<(), ConfigError> {
        let f = &p.fragment;
        let src = || Source::File(p.path.clone());
        if let Some(v) = &f.lock_root {
            self.settings.lock_root = abs_path(p, "lock_root", v)?;
            self.sources.insert("lock_root", src());
            self.lock_root_at = Some((p.path.clone(), line_of(&p.text, v.span().start)));
        }
        if let Some(v) = &f.state_dir {
            self.settings.state_dir = abs_path(p, "state_dir", v)?;
            self.sources.insert("state_dir", src());
        }
        if let Some(v) = &f.config_json {
            self.settings.config_json = abs_path(p, "config_json", v)?;
            self.sources.insert("config_json", src());
        }
        if let Some(v) = &f.os_release {
            self.settings.os_release = abs_path(p, "os_release", v)?;
            self.sources.insert("os_release", src());
        }
        if let Some(v) = &f.config_dirs {
            self.settings.config_dirs = v
                .get_ref()
                .iter()
                .map(|d| abs(p, "config_dirs", v.span(), d))
                .collect::<Result<_, _>>()?;
            self.sources.insert("config_dirs", src());
        }
        if let Some(v) = f.inhibit.as_ref().and_then(|i| i.what.as_ref()) {
            self.settings.inhibit_what = inhibit_what(p, v)?;
            self.sources.insert("inhibit.what", src());
        }
        if let Some(v) = f.engine.as_ref().and_then(|e| e.socket.as_ref()) {
            self.settings.engine_socket = Some(abs_path(p, "engine.socket", v)?);
            self.sources.insert("engine.socket", src());
        }
        if let Some(v) = f.engine.as_ref().and_then(|e| e.registry_auth.as_ref()) {
            self.settings.registry_auth = abs_path(p, "engine.registry_auth", v)?;
            self.sources.insert("engine.registry_auth", src());
        }
        if let Some(u) = &f.update {
            if let Some(v) = &u.healthy_timeout {
                let d = humantime::parse_duration(v.get_ref())
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        p.error(
                            Some(v.span()),
                            "update.healthy_timeout",
                            format!(
                                "{:?} is not a duration like \"120s\" or \"5m\"",
                                v.get_ref()
                            ),
                        )
                    })?;
                self.settings.healthy_timeout = d;
                self.sources.insert("update.healthy_timeout", src());
            }
            if let Some(v) = u.rollback {
                self.settings.rollback = v;
                self.sources.insert("update.rollback", src());
            }
            if let Some(v) = u.remove_volumes_with_app {
                self.settings.remove_volumes_with_app = v;
                self.sources.insert("update.remove_volumes_with_app", src());
            }
            if let Some(v) = &u.periodic {
                self.settings.periodic = Some(periodic::periodic(p, v)?);
                self.sources.insert("update.periodic", src());
            }
        }
        if let Some(fleet) = &f.fleet {
            self.fleet(p, fleet)?;
        }
        if let Some(v) = f.target.as_ref().and_then(|t| t.file.as_ref()) {
            self.settings.target_file = abs_path(p, "target.file", v)?;
            self.sources.insert("target.file", src());
        }
        if let Some(v) = f.boot.as_ref().and_then(|b| b.config_txt.as_ref()) {
            self.settings.boot_config_txt = abs_path(p, "boot.config_txt", v)?;
            self.sources.insert("boot.config_txt", src());
        }
        if let Some(api) = &f.api {
            if let Some(v) = &api.socket {
                self.settings.api_socket = abs_path(p, "api.socket", v)?;
                self.sources.insert("api.socket", src());
            }
            if let Some(v) = &api.tcp {
                let addr = v.get_ref().parse::<SocketAddr>().map_err(|_| {
                    p.error(
                        Some(v.span()),
                        "api.tcp",
                        format!(
                            "{:?} is not an address:port like \"127.0.0.1:48484\"",
                            v.get_ref()
                        ),
                    )
                })?;
                self.settings.api_tcp = Some(addr);
                self.sources.insert("api.tcp", src());
            }
        }
        Ok(())
    }
}

impl Merge {
    fn fleet(&mut self, p: &Parsed, f: &FleetFragment) -> Result<(), ConfigError> {
        let src = || Source::File(p.path.clone());
        if let Some(v) = &f.id {
            let id = v.get_ref();
            if !fleet::valid_id(id) {
                return Err(p.error(
                    Some(v.span()),
                    "fleet.id",
                    format!("{id:?} is not 1 to 128 printable characters without spaces"),
                ));
            }
            self.settings.fleet.id = Some(id.clone());
            self.sources.insert("fleet.id", src());
        }
        if let Some(v) = &f.group {
            if !fleet::valid_group(v.get_ref()) {
                return Err(p.error(
                    Some(v.span()),
                    "fleet.group",
                    format!(
                        "{:?} does not match ^[a-zA-Z0-9.-]+$ (1 to 128 characters)",
                        v.get_ref()
                    ),
                ));
            }
            self.settings.fleet.group = v.get_ref().clone();
            self.sources.insert("fleet.group", src());
        }
        if let Some(l) = &f.lock {
            // A file with [fleet.lock] replaces the whole section.
            self.settings.fleet.lock = Some(fleet_lock(p, l)?);
            self.sources.insert("fleet.lock", src());
        }
        if let Some(h) = &f.hawkbit {
            // As [fleet.lock]: a file with the section replaces it whole.
            self.settings.fleet.hawkbit = Some(hawkbit::settings(p, h)?);
            self.sources.insert("fleet.hawkbit", src());
        }
        Ok(())
    }
}

/// A `[fleet.*]` section in a build without the `fleet` feature.
#[cfg(not(feature = "fleet"))]
fn without_fleet(p: &Parsed, span: std::ops::Range<usize>, key: &str, what: &str) -> ConfigError {
    p.error(
        Some(span),
        key,
        format!(
            "holdfast was built without fleet support (cargo feature \"fleet\", \
             PACKAGECONFIG \"fleet\" in meta-holdfast): {what} are not available"
        ),
    )
}

fn abs_path(p: &Parsed, key: &str, v: &Spanned<String>) -> Result<PathBuf, ConfigError> {
    abs(p, key, v.span(), v.get_ref())
}

fn abs(
    p: &Parsed,
    key: &str,
    span: std::ops::Range<usize>,
    s: &str,
) -> Result<PathBuf, ConfigError> {
    let path = Path::new(s);
    if s.is_empty() || !path.is_absolute() {
        return Err(p.error(Some(span), key, format!("{s:?} is not an absolute path")));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(p.error(Some(span), key, format!("{s:?} contains '..'")));
    }
    Ok(path.to_owned())
}

fn inhibit_what(p: &Parsed, v: &Spanned<Vec<String>>) -> Result<Vec<InhibitWhat>, ConfigError> {
    let mut out = Vec::new();
    for w in v.get_ref() {
        let parsed = InhibitWhat::parse(w).ok_or_else(|| {
            p.error(
                Some(v.span()),
                "inhibit.what",
                format!("{w:?} is not one of \"shutdown\", \"sleep\""),
            )
        })?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    if out.is_empty() {
        return Err(p.error(
            Some(v.span()),
            "inhibit.what",
            "must name at least \"shutdown\"",
        ));
    }
    out.sort();
    Ok(out)
}

mod fleet_lock;
mod hawkbit;
mod lock_root;
mod periodic;
#[cfg(test)]
mod tests;
