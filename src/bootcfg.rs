//! Device configuration from the target. `BALENA_HOST_CONFIG_<key>` keys
//! are reboot-requiring: they are staged under the state dir and written to
//! the boot partition's config.txt (`key=value` lines) only when a reboot is
//! allowed, atomically, so a power cut never half-applies them. Other keys
//! apply at once (recorded in `<state_dir>/device-config.json`).
//!
//! config.txt belongs to the user: holdfast changes only the lines of keys
//! it writes, byte for byte leaves every other line, and writes nothing when
//! it cannot read the file or its own state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fsutil::{atomic_write, read_regular, ReadError};

pub const PREFIX: &str = "BALENA_HOST_CONFIG_";

/// Far above any real config.txt; a bigger file is not one.
const MAX_CONFIG_TXT: u64 = 1 << 20;
/// Far above what holdfast writes to its state files.
const MAX_STATE: u64 = 1 << 20;

const BOOT_STATE_HINT: &str = "it records which config.txt keys holdfast manages; fix it, \
    or remove it to start afresh (then lines of keys holdfast wrote before and the target \
    no longer sets stay in config.txt until removed by hand)";
const DEVICE_STATE_HINT: &str = "it records the device config last applied; fix it, \
    or remove it and holdfast writes it anew from the target";

#[derive(Debug, thiserror::Error)]
pub enum BootConfigError {
    #[error("{0}; it was left as it is")]
    ConfigTxt(#[source] ReadError),
    #[error("{source}; {hint}")]
    StateUnreadable {
        #[source]
        source: ReadError,
        hint: &'static str,
    },
    #[error("{} is damaged ({source}); {hint}", path.display())]
    StateDamaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
        hint: &'static str,
    },
    #[error("{} does not exist and {} is not a mount point: is the boot partition mounted? The staged keys stay staged", path.display(), dir.display())]
    NotMounted { path: PathBuf, dir: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is kept under the state dir between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// config.txt keys holdfast wrote last (so removed keys can go).
    pub managed: BTreeSet<String>,
    /// Waiting for a reboot: the config.txt keys and values to write.
    pub staged: Option<BTreeMap<String, String>>,
}

/// Splits target config into (config.txt keys, keys that apply at once).
pub fn split(
    config: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut boot = BTreeMap::new();
    let mut now = BTreeMap::new();
    for (k, v) in config {
        match k.strip_prefix(PREFIX) {
            Some(key) => boot.insert(key.to_owned(), v.clone()),
            None => now.insert(k.clone(), v.clone()),
        };
    }
    (boot, now)
}

/// A line without its ending, and the ending (`\n`, `\r\n`, or none for a
/// last line without one).
fn split_ending(line: &[u8]) -> (&[u8], &'static [u8]) {
    if let Some(l) = line.strip_suffix(b"\r\n") {
        (l, b"\r\n")
    } else if let Some(l) = line.strip_suffix(b"\n") {
        (l, b"\n")
    } else {
        (line, b"")
    }
}

/// The key of a `key=value` line; none for comments and other lines, and
/// for keys that are not UTF-8 (holdfast never writes those).
fn key_of(line: &[u8]) -> Option<&str> {
    let eq = line.iter().position(|&b| b == b'=')?;
    let key = line[..eq].trim_ascii();
    if key.starts_with(b"#") {
        return None;
    }
    std::str::from_utf8(key).ok()
}

/// config.txt with `desired` applied (pure, on bytes): lines of keys
/// holdfast does not manage stay byte for byte, endings included; a desired
/// key's first line is replaced in place (keeping its ending) and its later
/// lines dropped; new keys are appended with the file's line ending; keys
/// holdfast managed before and no longer wants are removed.
pub fn render(
    text: &[u8],
    desired: &BTreeMap<String, String>,
    managed: &BTreeSet<String>,
) -> Vec<u8> {
    // The file's own style for lines holdfast adds: that of its first line.
    let eol: &[u8] = match text.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && text[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    };
    let mut lines: Vec<(Vec<u8>, &[u8])> = Vec::new();
    let mut written = BTreeSet::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        let (content, ending) = split_ending(line);
        match key_of(content) {
            Some(k) if desired.contains_key(k) => {
                if written.insert(k) {
                    lines.push((format!("{k}={}", desired[k]).into_bytes(), ending));
                }
            }
            Some(k) if managed.contains(k) => {}
            _ => lines.push((content.to_vec(), ending)),
        }
    }
    for (k, v) in desired {
        if !written.contains(k.as_str()) {
            lines.push((format!("{k}={v}").into_bytes(), eol));
        }
    }
    let mut out = Vec::with_capacity(text.len() + 64);
    let last = lines.len().saturating_sub(1);
    for (i, (content, ending)) in lines.iter().enumerate() {
        out.extend_from_slice(content);
        // A last line without an ending stays so, unless lines follow now.
        out.extend_from_slice(if ending.is_empty() && i < last {
            eol
        } else {
            ending
        });
    }
    out
}

pub struct BootConfig {
    pub config_txt: PathBuf,
    pub state_file: PathBuf,
    pub device_file: PathBuf,
}

/// A state file: missing is the default; unreadable or damaged is an error,
/// never the default (that would forget what holdfast wrote).
fn read_state<T: DeserializeOwned + Default>(
    path: &Path,
    hint: &'static str,
) -> Result<T, BootConfigError> {
    match read_regular(path, MAX_STATE) {
        Ok(None) => Ok(T::default()),
        Ok(Some(bytes)) => {
            serde_json::from_slice(&bytes).map_err(|source| BootConfigError::StateDamaged {
                path: path.to_owned(),
                source,
                hint,
            })
        }
        Err(source) => Err(BootConfigError::StateUnreadable { source, hint }),
    }
}

fn write(path: &Path, data: &[u8]) -> Result<(), BootConfigError> {
    atomic_write(path, data).map_err(|source| BootConfigError::Write {
        path: path.to_owned(),
        source,
    })
}

impl BootConfig {
    pub fn new(config_txt: &Path, state_dir: &Path) -> Self {
        Self {
            config_txt: config_txt.to_owned(),
            state_file: state_dir.join("boot-config.json"),
            device_file: state_dir.join("device-config.json"),
        }
    }

    pub fn state(&self) -> Result<BootState, BootConfigError> {
        read_state(&self.state_file, BOOT_STATE_HINT)
    }

    fn save(&self, st: &BootState) -> Result<(), BootConfigError> {
        write(
            &self.state_file,
            &serde_json::to_vec_pretty(st).expect("serializes"),
        )
    }

    /// A missing config.txt is only created where a file system is mounted
    /// (or a layout keeps it on the root file system beside other files):
    /// never in the empty mount point of a boot partition that is not
    /// mounted, where the device would not read it anyway.
    fn check_mounted(&self) -> Result<(), BootConfigError> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.config_txt.parent().unwrap_or(Path::new("/"));
        let not_mounted = || BootConfigError::NotMounted {
            path: self.config_txt.clone(),
            dir: dir.to_owned(),
        };
        let here = std::fs::metadata(dir).map_err(|_| not_mounted())?;
        let parent = dir.parent().map(std::fs::metadata);
        let mount_point = match parent {
            Some(Ok(p)) => p.dev() != here.dev() || p.ino() == here.ino(),
            _ => true,
        };
        let has_files = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        if mount_point || has_files {
            Ok(())
        } else {
            Err(not_mounted())
        }
    }

    /// config.txt as it is; a missing file is empty.
    fn read_config_txt(&self) -> Result<Vec<u8>, BootConfigError> {
        Ok(read_regular(&self.config_txt, MAX_CONFIG_TXT)
            .map_err(BootConfigError::ConfigTxt)?
            .unwrap_or_default())
    }

    /// Takes a new target's config: applies the immediate keys, stages the
    /// config.txt keys when they would change the file. Answers whether a
    /// reboot is now needed to apply staged keys.
    pub fn take(&self, config: &BTreeMap<String, String>) -> Result<bool, BootConfigError> {
        let (boot, now) = split(config);
        let recorded: BTreeMap<String, String> = read_state(&self.device_file, DEVICE_STATE_HINT)?;
        if recorded != now {
            write(
                &self.device_file,
                &serde_json::to_vec_pretty(&now).expect("serializes"),
            )?;
            tracing::info!(keys = ?now.keys().collect::<Vec<_>>(), "device config applied");
        }
        let mut st = self.state()?;
        let text = self.read_config_txt()?;
        let wanted = render(&text, &boot, &st.managed);
        let staged = (wanted != text).then_some(boot);
        if st.staged != staged {
            match &staged {
                Some(b) => tracing::info!(file = %self.config_txt.display(), keys = ?b,
                    "boot config change staged; it is written when holdfast is allowed to reboot"),
                None => tracing::info!("no boot config change pending"),
            }
            st.staged = staged;
            self.save(&st)?;
        }
        Ok(st.staged.is_some())
    }

    /// Right before an allowed reboot or power-off: writes staged keys to
    /// config.txt (temp file, fsync, rename, fsync dir). On an error nothing
    /// is written and the keys stay staged.
    pub fn apply_staged(&self) -> Result<bool, BootConfigError> {
        let mut st = self.state()?;
        let Some(boot) = st.staged.take() else {
            return Ok(false);
        };
        let text = self.read_config_txt()?;
        if text.is_empty() && !self.config_txt.exists() {
            self.check_mounted()?;
        }
        let wanted = render(&text, &boot, &st.managed);
        // Already as wanted (edited by hand, say): the user's file stays put.
        if wanted != text {
            write(&self.config_txt, &wanted)?;
        }
        st.managed = boot.keys().cloned().collect();
        self.save(&st)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
