//! Device configuration from the target. `BALENA_HOST_CONFIG_<key>` keys
//! are reboot-requiring: they are staged under the state dir and written to
//! the boot partition's config.txt (`key=value` lines) only when a reboot is
//! allowed, atomically, so a power cut never half-applies them. Other keys
//! apply at once (recorded in `<state_dir>/device-config.json`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;

pub const PREFIX: &str = "BALENA_HOST_CONFIG_";

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

/// config.txt with `desired` applied (pure): lines of keys holdfast does
/// not manage stay as they are; a managed key keeps the place of its first
/// line; new keys are appended; keys holdfast managed before and no longer
/// wants are removed.
pub fn render(
    text: &str,
    desired: &BTreeMap<String, String>,
    managed: &BTreeSet<String>,
) -> String {
    let mut out = Vec::new();
    let mut written = BTreeSet::new();
    for line in text.lines() {
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.starts_with('#'));
        match key {
            Some(k) if desired.contains_key(k) => {
                if written.insert(k.to_owned()) {
                    out.push(format!("{k}={}", desired[k]));
                }
            }
            Some(k) if managed.contains(k) => {}
            _ => out.push(line.to_owned()),
        }
    }
    for (k, v) in desired {
        if !written.contains(k) {
            out.push(format!("{k}={v}"));
        }
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

pub struct BootConfig {
    pub config_txt: PathBuf,
    pub state_file: PathBuf,
    pub device_file: PathBuf,
}

impl BootConfig {
    pub fn new(config_txt: &Path, state_dir: &Path) -> Self {
        Self {
            config_txt: config_txt.to_owned(),
            state_file: state_dir.join("boot-config.json"),
            device_file: state_dir.join("device-config.json"),
        }
    }

    pub fn state(&self) -> BootState {
        std::fs::read(&self.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, st: &BootState) -> std::io::Result<()> {
        atomic_write(
            &self.state_file,
            &serde_json::to_vec_pretty(st).expect("serializes"),
        )
    }

    /// Takes a new target's config: applies the immediate keys, stages the
    /// config.txt keys when they would change the file. Answers whether a
    /// reboot is now needed to apply staged keys.
    pub fn take(&self, config: &BTreeMap<String, String>) -> std::io::Result<bool> {
        let (boot, now) = split(config);
        let recorded: BTreeMap<String, String> = std::fs::read(&self.device_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if recorded != now {
            atomic_write(
                &self.device_file,
                &serde_json::to_vec_pretty(&now).expect("serializes"),
            )?;
            tracing::info!(keys = ?now.keys().collect::<Vec<_>>(), "device config applied");
        }
        let mut st = self.state();
        let text = std::fs::read_to_string(&self.config_txt).unwrap_or_default();
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
    /// config.txt (temp file, fsync, rename, fsync dir).
    pub fn apply_staged(&self) -> std::io::Result<bool> {
        let mut st = self.state();
        let Some(boot) = st.staged.take() else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(&self.config_txt).unwrap_or_default();
        atomic_write(
            &self.config_txt,
            render(&text, &boot, &st.managed).as_bytes(),
        )?;
        st.managed = boot.keys().cloned().collect();
        self.save(&st)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn render_keeps_foreign_lines_and_replaces_managed_ones() {
        let text = "# boot\ndtoverlay=vc4\ngpu_mem=16\ngpu_mem=32\nold=1\n";
        let managed: BTreeSet<String> = ["old".to_string()].into();
        let out = render(
            text,
            &map(&[("gpu_mem", "64"), ("hdmi_safe", "1")]),
            &managed,
        );
        assert_eq!(out, "# boot\ndtoverlay=vc4\ngpu_mem=64\nhdmi_safe=1\n");
        assert_eq!(
            render(
                &out,
                &map(&[("gpu_mem", "64"), ("hdmi_safe", "1")]),
                &BTreeSet::new()
            ),
            out
        );
    }

    #[test]
    fn staged_until_applied_then_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("config.txt");
        std::fs::write(&txt, "dtoverlay=vc4\n").unwrap();
        let b = BootConfig::new(&txt, dir.path());
        let cfg = map(&[("BALENA_HOST_CONFIG_gpu_mem", "64"), ("HOLDFAST_NOTE", "x")]);
        assert!(b.take(&cfg).unwrap());
        assert_eq!(
            std::fs::read_to_string(&txt).unwrap(),
            "dtoverlay=vc4\n",
            "nothing written before the reboot"
        );
        assert!(
            std::fs::read_to_string(dir.path().join("device-config.json"))
                .unwrap()
                .contains("HOLDFAST_NOTE")
        );
        assert!(b.apply_staged().unwrap());
        assert_eq!(
            std::fs::read_to_string(&txt).unwrap(),
            "dtoverlay=vc4\ngpu_mem=64\n"
        );
        assert!(!b.take(&cfg).unwrap(), "applied: nothing more to stage");
        // Dropping the key removes the line holdfast wrote.
        assert!(b.take(&BTreeMap::new()).unwrap());
        b.apply_staged().unwrap();
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "dtoverlay=vc4\n");
    }
}
