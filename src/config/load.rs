//! Reading and merging config files, with errors that name the file, the
//! line, the key and the reason.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::fragment::Fragment;
use super::settings::{InhibitWhat, Settings, Source, Sourced};
use crate::fsutil::read_regular;

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
}

impl Merge {
    fn apply(&mut self, p: &Parsed) -> Result<(), ConfigError> {
        let f = &p.fragment;
        let src = || Source::File(p.path.clone());
        if let Some(v) = &f.lock_root {
            self.settings.lock_root = abs_path(p, "lock_root", v)?;
            self.sources.insert("lock_root", src());
        }
        if let Some(v) = &f.state_dir {
            self.settings.state_dir = abs_path(p, "state_dir", v)?;
            self.sources.insert("state_dir", src());
        }
        if let Some(v) = &f.config_json {
            self.settings.config_json = abs_path(p, "config_json", v)?;
            self.sources.insert("config_json", src());
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree {
        _t: tempfile::TempDir,
        main: PathBuf,
        dirs: [PathBuf; 3],
    }

    fn tree(main: &str) -> Tree {
        let t = tempfile::tempdir().unwrap();
        let dirs = ["usr", "etc", "run"].map(|d| t.path().join(d));
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let main_path = t.path().join("holdfast.toml");
        let dirs_toml = dirs
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(&main_path, format!("config_dirs = [{dirs_toml}]\n{main}")).unwrap();
        Tree {
            _t: t,
            main: main_path,
            dirs,
        }
    }

    #[test]
    fn defaults_when_nothing_is_there() {
        let t = tempfile::tempdir().unwrap();
        let s = load(&t.path().join("absent.toml"), false).unwrap();
        assert_eq!(s.settings.lock_root, Path::new("/run/holdfast/locks"));
        assert_eq!(s.settings.inhibit_what, vec![InhibitWhat::Shutdown]);
        assert_eq!(s.source("lock_root"), &Source::Default);
        let err = load(&t.path().join("absent.toml"), true).unwrap_err();
        assert!(
            err.to_string().ends_with("absent.toml: file not found"),
            "{err}"
        );
    }

    #[test]
    fn later_dropins_win_and_dev_null_masks() {
        let t = tree("lock_root = \"/run/a\"\nstate_dir = \"/var/a\"\n");
        std::fs::write(
            t.dirs[0].join("10-x.toml"),
            "lock_root = \"/run/b\"\n[inhibit]\nwhat = [\"sleep\", \"shutdown\"]\n",
        )
        .unwrap();
        std::fs::write(t.dirs[0].join("20-y.toml"), "lock_root = \"/run/c\"\n").unwrap();
        // /etc's 20-y.toml replaces /usr/lib's; /run masks 30-z.
        std::fs::write(t.dirs[1].join("20-y.toml"), "state_dir = \"/var/d\"\n").unwrap();
        std::fs::write(t.dirs[1].join("30-z.toml"), "lock_root = \"/run/z\"\n").unwrap();
        std::os::unix::fs::symlink("/dev/null", t.dirs[2].join("30-z.toml")).unwrap();
        let s = load(&t.main, true).unwrap();
        assert_eq!(s.settings.lock_root, Path::new("/run/b"));
        assert_eq!(s.settings.state_dir, Path::new("/var/d"));
        assert_eq!(
            s.settings.inhibit_what,
            vec![InhibitWhat::Shutdown, InhibitWhat::Sleep]
        );
        assert_eq!(s.settings.inhibit_what_arg(), "shutdown:sleep");
        assert_eq!(
            s.source("lock_root"),
            &Source::File(t.dirs[0].join("10-x.toml"))
        );
        assert_eq!(
            s.source("state_dir"),
            &Source::File(t.dirs[1].join("20-y.toml"))
        );
        let shown = s.render();
        assert!(shown.contains("lock_root = \"/run/b\""), "{shown}");
        assert!(shown.contains("10-x.toml"), "{shown}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let t = tree("lock_root = \"/run/a\"\nlok_root = \"/x\"\n");
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.file, t.main);
        assert_eq!(err.line, Some(3));
        assert!(err.reason.contains("unknown field `lok_root`"), "{err}");
    }

    #[test]
    fn wrong_type_and_bad_values() {
        let t = tree("lock_root = 5\n");
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.reason.contains("invalid type"), "{err}");

        let t = tree("[inhibit]\nwhat = [\"reboot\"]\n");
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("inhibit.what"));
        assert_eq!(err.line, Some(3));
        assert!(
            err.to_string().contains("\"reboot\" is not one of"),
            "{err}"
        );

        let t = tree("lock_root = \"relative/dir\"\n");
        let err = load(&t.main, true).unwrap_err();
        assert!(
            err.to_string()
                .contains(":2: lock_root: \"relative/dir\" is not an absolute path"),
            "{err}"
        );

        let t = tree("[api]\ntcp = \"nowhere\"\n");
        assert_eq!(
            load(&t.main, true).unwrap_err().key.as_deref(),
            Some("api.tcp")
        );
    }

    #[test]
    fn dropin_errors_name_the_dropin() {
        let t = tree("");
        std::fs::write(
            t.dirs[1].join("50-bad.toml"),
            "[engine]\nsocket = \"/s\"\nspeed = 3\n",
        )
        .unwrap();
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.file, t.dirs[1].join("50-bad.toml"));
        assert_eq!(err.line, Some(3));
        std::fs::write(t.dirs[1].join("50-bad.toml"), "config_dirs = [\"/x\"]\n").unwrap();
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("config_dirs"));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let t = tree("lock_root = \"/a\n");
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    /// Loads off the test thread so a blocking read fails the test instead
    /// of hanging it.
    fn load_soon(main: &Path) -> Result<Sourced, ConfigError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let main = main.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(load(&main, true));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("load returns at once")
    }

    #[test]
    fn dropin_that_is_not_a_file_is_refused() {
        let t = tree("");
        let zero = t.dirs[1].join("50-zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = load_soon(&t.main).unwrap_err();
        assert_eq!(err.file, zero);
        assert!(err.reason.contains("character device"), "{err}");
        std::fs::remove_file(&zero).unwrap();

        let fifo = t.dirs[2].join("60-fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = load_soon(&t.main).unwrap_err();
        assert_eq!(err.file, fifo);
        assert_eq!(
            err.to_string(),
            format!("{}: is a FIFO, not a regular file", fifo.display())
        );
    }

    #[test]
    fn oversized_file_is_refused() {
        let t = tree("");
        let big = t.dirs[0].join("10-big.toml");
        let mut text = "# padding\n".repeat((MAX_FILE / 10) as usize + 1);
        text.push_str("lock_root = \"/run/big\"\n");
        std::fs::write(&big, text).unwrap();
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.file, big);
        assert!(err.reason.contains("larger than"), "{err}");
    }

    #[test]
    fn non_utf8_file_is_refused_with_its_line() {
        let t = tree("");
        let bad = t.dirs[1].join("20-latin1.toml");
        std::fs::write(&bad, b"# ok\n# caf\xe9\n").unwrap();
        let err = load(&t.main, true).unwrap_err();
        assert_eq!(err.file, bad);
        assert_eq!(err.line, Some(2));
        assert!(err.reason.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn dev_null_symlink_still_masks() {
        let t = tree("lock_root = \"/run/a\"\n");
        std::fs::write(t.dirs[0].join("10-x.toml"), "lock_root = \"/run/x\"\n").unwrap();
        std::os::unix::fs::symlink("/dev/null", t.dirs[2].join("10-x.toml")).unwrap();
        // A mask with nothing under it is fine too.
        std::os::unix::fs::symlink("/dev/null", t.dirs[2].join("99-none.toml")).unwrap();
        let s = load(&t.main, true).unwrap();
        assert_eq!(s.settings.lock_root, Path::new("/run/a"));
        assert_eq!(s.files, vec![t.main.clone()]);
    }
}
