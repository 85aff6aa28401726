//! The credentials file on disk ([`AuthFile`]): read again only when its
//! stamp changed, refused when group or others can access it, a change of
//! state logged once, and the credentials for one image's pull.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{parse, registry_of, AuthFileError, Auths, PullAuth, MAX_AUTH_FILE_BYTES};
use crate::fsutil::read_regular;

/// What a file looked like when read: a change to any of these is a new
/// file to read (content, replacement, chmod, chown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
    uid: u32,
}

fn stamp(path: &Path) -> std::io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file's state as last read.
#[derive(Debug, Clone)]
pub enum Loaded {
    Missing,
    Good(Arc<Auths>),
    Refused(Arc<AuthFileError>),
}

/// The credentials file of `engine.registry_auth`, read again whenever it
/// changed.
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    /// The last read: its stamp (`None`: missing or unreadable) and result.
    last: Mutex<Option<(Option<Stamp>, Loaded)>>,
}

impl AuthFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            last: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file as it is now; read only when it changed (blocking: call it
    /// off the async threads). A change of state is logged once.
    pub fn current(&self) -> Loaded {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Stat, read, stat again: a file replaced or rewritten meanwhile is
        // read again, so what is kept always matches its stamp.
        let mut tries = 0;
        let (stamp, loaded) = loop {
            let before = stamp(&self.path);
            if let (Ok(s), Some((old, loaded))) = (&before, last.as_ref()) {
                if s.is_some() && s == old {
                    return loaded.clone();
                }
            }
            let loaded = self.read(&before);
            let after = stamp(&self.path);
            tries += 1;
            match (before, after) {
                (Ok(b), Ok(a)) if b == a => break (b, loaded),
                _ if tries >= 3 => break (None, loaded),
                _ => {}
            }
        };
        let changed = match last.as_ref() {
            None => !matches!(loaded, Loaded::Missing),
            Some((_, old)) => !same_state(old, &loaded),
        };
        if changed {
            self.log(&loaded);
        }
        *last = Some((stamp, loaded.clone()));
        loaded
    }

    fn read(&self, stamped: &std::io::Result<Option<Stamp>>) -> Loaded {
        let shown = self.path.display().to_string();
        let refused = |e: AuthFileError| Loaded::Refused(Arc::new(e));
        match stamped {
            Ok(None) => return Loaded::Missing,
            Ok(Some(s)) if s.mode & 0o077 != 0 => {
                return refused(AuthFileError::Insecure {
                    path: shown,
                    mode: s.mode & 0o7777,
                })
            }
            _ => {}
        }
        let bytes = match read_regular(&self.path, MAX_AUTH_FILE_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return Loaded::Missing,
            Err(e) => return refused(e.into()),
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return refused(AuthFileError::Invalid {
                path: shown,
                at: "(top)".into(),
                reason: "not UTF-8".into(),
            });
        };
        match parse(text, &shown) {
            Ok(a) => Loaded::Good(Arc::new(a)),
            Err(e) => refused(e),
        }
    }

    fn log(&self, loaded: &Loaded) {
        let file = self.path.display().to_string();
        match loaded {
            Loaded::Missing => {
                tracing::info!(file = %file, "no registry credentials file {file}: pulls send no credentials")
            }
            Loaded::Good(a) => {
                let names: Vec<&str> = a.registries.keys().map(String::as_str).collect();
                tracing::info!(file = %file, registries = ?names,
                    "registry credentials read from {file} for: {}",
                    if names.is_empty() { "(none)".to_owned() } else { names.join(", ") });
                for note in &a.notes {
                    tracing::warn!(file = %file, "{file}: {note}");
                }
            }
            Loaded::Refused(e) => {
                tracing::error!(file = %file, error = %e,
                    "registry credentials refused; pulls send none until the file is fixed: {e}")
            }
        }
    }

    /// The credentials for pulling `image`, and what a failed pull says
    /// about them.
    pub fn for_image(&self, image: &str) -> PullAuth {
        let registry = registry_of(image);
        let file = self.path.display().to_string();
        let (credential, hint) = match self.current() {
            Loaded::Missing => (
                None,
                format!("no credentials for {registry}: {file} does not exist"),
            ),
            Loaded::Good(a) => match a.get(&registry) {
                Some(c) => (
                    Some(c.clone()),
                    format!("credentials for {registry} from {file} were sent"),
                ),
                None => (None, format!("no credentials for {registry} in {file}")),
            },
            Loaded::Refused(e) => (None, format!("no credentials sent: {e}")),
        };
        PullAuth {
            registry,
            credential,
            hint,
        }
    }
}

/// Equal as far as the log is concerned (secrets compared too: a new
/// password is a new state).
fn same_state(a: &Loaded, b: &Loaded) -> bool {
    match (a, b) {
        (Loaded::Missing, Loaded::Missing) => true,
        (Loaded::Good(x), Loaded::Good(y)) => x == y,
        (Loaded::Refused(x), Loaded::Refused(y)) => x.to_string() == y.to_string(),
        _ => false,
    }
}
