//! The API keys under the state dir: the device key (`api-key`, for the
//! operator; reaches every app) and one key per app (`api-keys/<app>`,
//! told to the app's containers labelled
//! `io.balena.features.supervisor-api`; reaches that app only). Each is
//! made once when there is none, then only ever read, until an operator
//! rotates it. Apps hold their key, so a key file that cannot be read is
//! an error to fix, never a reason to make a new key. A key is never
//! logged, shown in status or quoted in an error: only its path is.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

use super::auth::Scope;
use crate::names::AppName;

/// Keys we make are 32 hex digits; a longer file is not a key.
const MAX_KEY_LEN: usize = 256;

/// Shorter than this is too easy to guess, or a key cut short.
const MIN_KEY_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {}: {source}; fix it, or remove it to have a new key made", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the key file {} is {what}, not a regular file; remove it to have a new key made", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("the key file {} belongs to uid {owner}, not to holdfastd (uid {ours}); check who put it there, then chown or remove it", path.display())]
    Owner {
        path: PathBuf,
        owner: u32,
        ours: u32,
    },
    #[error("the key file {} is {why}; fix it (at least {MIN_KEY_LEN} of A-Z a-z 0-9 . _ ~ -), or remove it to have a new key made", path.display())]
    Damaged { path: PathBuf, why: &'static str },
    #[error("the API key directory {} {why}", path.display())]
    Dir { path: PathBuf, why: String },
    #[error("cannot create the key file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot replace the key file {}: {source}", path.display())]
    Replace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The device key's file.
pub fn device_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("api-key")
}

/// The device's secret that app keys are hashed with for config hashes
/// (`Injected::key_fingerprint`); made like a key, never shown.
pub fn hash_secret_path(state_dir: &Path) -> PathBuf {
    state_dir.join("hash-secret")
}

/// The hash secret (`hash_secret_path`), made once like the device key.
pub fn load_or_create_hash_secret(state_dir: &Path) -> Result<String, KeyError> {
    load_or_create(&hash_secret_path(state_dir))
}

/// An app's key file.
pub fn app_key_path(state_dir: &Path, app: &AppName) -> PathBuf {
    state_dir.join("api-keys").join(app.as_str())
}

/// The device key: `<state_dir>/api-key` (0600), made when there is no
/// such file. An existing file is never replaced.
pub fn load_or_create_key(state_dir: &Path) -> Result<String, KeyError> {
    load_or_create(&device_key_path(state_dir))
}

/// An app's key: `<state_dir>/api-keys/<app>` (0600, in a 0700
/// directory), made when there is no such file, like the device key.
pub fn load_or_create_app_key(state_dir: &Path, app: &AppName) -> Result<String, KeyError> {
    app_key_dir(state_dir, true)?;
    load_or_create(&app_key_path(state_dir, app))
}

/// `<state_dir>/api-keys`, looked at without following a link: a real
/// directory owned by holdfastd, writable by no one else (made 0700 when
/// missing and `create`). Ok(false): missing (not made).
pub fn app_key_dir(state_dir: &Path, create: bool) -> Result<bool, KeyError> {
    let path = state_dir.join("api-keys");
    let err = |why: String| KeyError::Dir {
        path: path.clone(),
        why,
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Made 0700 (its parents as needed), then looked at like any.
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
            {
                Ok(()) => std::fs::symlink_metadata(&path)
                    .map_err(|e| err(format!("cannot be looked at: {e}")))?,
                Err(e) => return Err(err(format!("cannot be made: {e}"))),
            }
        }
        Err(e) => {
            return Err(err(format!(
                "cannot be looked at: {e}; fix its parent's permissions"
            )))
        }
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(err(
            "is a symbolic link, not a directory; check who put it there, then remove it to have the directory made".into(),
        ));
    }
    if !ft.is_dir() {
        return Err(err(
            "is not a directory; check what it is, then remove it to have the directory made"
                .into(),
        ));
    }
    let ours = nix::unistd::geteuid().as_raw();
    if meta.uid() != ours {
        return Err(err(format!(
            "belongs to uid {}, not to holdfastd (uid {ours}); check who put it there, then chown or remove it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(err(format!(
            "is writable by others (mode {:o}); others may have put keys there: check them, then chmod 0700 it",
            meta.mode() & 0o7777
        )));
    }
    Ok(true)
}

/// A new key in place of the one at `path` (or of none): written beside
/// it, then renamed over it, so a reader sees the old key or the new one,
/// never a part. Whatever was at the path (a damaged key, a symlink) is
/// replaced, not followed: the operator asked for a new key. A directory
/// there is an error.
pub fn rotate_key(path: &Path) -> Result<String, KeyError> {
    let err = |source| KeyError::Replace {
        path: path.to_owned(),
        source,
    };
    let (tmp, key) = new_key_file(path).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    sync_dir(path).map_err(err)?;
    Ok(key)
}

/// Removes an app's key (the app is gone). Absent is fine; nothing is
/// removed through a key directory that is not ours (`app_key_dir`).
pub fn remove_app_key(state_dir: &Path, app: &AppName) -> io::Result<()> {
    match app_key_dir(state_dir, false) {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(e) => return Err(io::Error::other(e.to_string())),
    }
    match std::fs::remove_file(app_key_path(state_dir, app)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn load_or_create(path: &Path) -> Result<String, KeyError> {
    let path = path.to_owned();
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    match create_key(&path)? {
        Some(key) => Ok(key),
        // Made by someone else since we looked: theirs counts.
        None => read_key(&path)?.ok_or_else(|| KeyError::Read {
            source: io::ErrorKind::NotFound.into(),
            path,
        }),
    }
}

/// The key, or None when there is no file at all.
fn read_key(path: &Path) -> Result<Option<String>, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    // Never through a symlink; O_NONBLOCK so a FIFO put there cannot hang us.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(KeyError::NotAFile {
                path: path.to_owned(),
                what: "a symbolic link",
            })
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
            what: if meta.is_dir() {
                "a directory"
            } else {
                "a special file"
            },
        });
    }
    let ours = nix::unistd::geteuid().as_raw();
    if meta.uid() != ours {
        return Err(KeyError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            ours,
        });
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the key file {} was readable by others; set to 0600 (others may know it)", path.display());
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot set the key file to 0600");
        }
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_KEY_LEN as u64 + 2)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    check(&bytes)
        .map(|k| Some(k.to_owned()))
        .map_err(|why| KeyError::Damaged {
            path: path.to_owned(),
            why,
        })
}

/// A key as written by hand may end in a newline; otherwise it is used
/// as it is, in URLs (`?apikey=`) and container environments.
fn check(bytes: &[u8]) -> Result<&str, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text")?;
    let key = text.trim();
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "._~-".contains(c);
    if key.is_empty() {
        Err("empty")
    } else if key.len() > MAX_KEY_LEN {
        Err("too long")
    } else if !key.chars().all(unreserved) {
        Err("not a key: it has characters other than A-Z a-z 0-9 . _ ~ -")
    } else if key.len() < MIN_KEY_LEN {
        Err("too short")
    } else {
        Ok(key)
    }
}

/// Writes a new key beside the path and links it into place only if the
/// path is still free. None: someone else made one meanwhile.
fn create_key(path: &Path) -> Result<Option<String>, KeyError> {
    let create_err = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    let (tmp, key) = new_key_file(path).map_err(create_err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(create_err(e.error)),
    }
    sync_dir(path).map_err(create_err)?;
    Ok(Some(key))
}

/// A fresh key in a synced 0600 temporary file beside `path` (its
/// directory made 0700 when missing).
fn new_key_file(path: &Path) -> io::Result<(tempfile::NamedTempFile, String)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let key = crate::fsutil::random_token()?;
    // Made 0600 by tempfile.
    let mut tmp = tempfile::Builder::new()
        .prefix(".api-key.")
        .tempfile_in(dir)?;
    tmp.write_all(key.as_bytes())?;
    tmp.as_file().sync_all()?;
    Ok((tmp, key))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path.parent().unwrap_or(Path::new("."))).and_then(|d| d.sync_all())
}

/// The keys the API accepts, and what each reaches. Its `Debug` shows
/// which keys exist, never their values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    /// None when the device key could not be had (then there is no API).
    device: Option<String>,
    apps: BTreeMap<AppName, String>,
    /// An app's key before it was rotated, still accepted for that app
    /// while its containers may hold it (they get the new one only when
    /// the app's locks let them be made again).
    previous: BTreeMap<AppName, String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("device", &self.device.is_some())
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("previous", &self.previous.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ApiKeys {
    pub fn new(device: Option<String>) -> Self {
        Self {
            device,
            apps: BTreeMap::new(),
            previous: BTreeMap::new(),
        }
    }

    /// What `given` reaches, if it is a key at all. Every key is compared
    /// in full, so the time taken says nothing about which matched.
    pub fn scope_of(&self, given: &str) -> Option<Scope> {
        let mut found = None;
        if let Some(d) = &self.device {
            if same_secret(given.as_bytes(), d.as_bytes()) {
                found = Some(Scope::Device);
            }
        }
        for (app, key) in self.apps.iter().chain(&self.previous) {
            if same_secret(given.as_bytes(), key.as_bytes()) && found.is_none() {
                found = Some(Scope::App(app.clone()));
            }
        }
        found
    }

    pub fn app(&self, app: &AppName) -> Option<&str> {
        self.apps.get(app).map(String::as_str)
    }

    pub fn apps(&self) -> impl Iterator<Item = &AppName> {
        self.apps.keys()
    }

    pub fn set_device(&mut self, key: String) {
        self.device = Some(key);
    }

    pub fn set_app(&mut self, app: AppName, key: String) {
        self.apps.insert(app, key);
    }

    /// A rotated key: the new one in force, the one the app's containers
    /// were made with still accepted until `drop_previous` (a second
    /// rotation meanwhile keeps the first one: that is what they hold).
    pub fn rotate_app(&mut self, app: AppName, key: String) {
        if let Some(old) = self.apps.insert(app.clone(), key) {
            self.previous.entry(app).or_insert(old);
        }
    }

    /// The apps whose previous key is still accepted.
    pub fn previous_apps(&self) -> impl Iterator<Item = &AppName> {
        self.previous.keys()
    }

    /// The app's containers all have its new key: the old one is refused.
    pub fn drop_previous(&mut self, app: &AppName) -> bool {
        self.previous.remove(app).is_some()
    }

    pub fn remove_app(&mut self, app: &AppName) -> bool {
        let old = self.previous.remove(app).is_some();
        self.apps.remove(app).is_some() || old
    }
}

/// Compares without stopping at the first difference (no timing hint).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
