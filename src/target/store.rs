//! The target in force: loaded from the target file (or the last good copy
//! under the state dir), replaced only by a target that parses, and saved
//! durably before it is used. Its task serves SetTarget, follows the file
//! on disk and stages the target's device config; all file work runs on
//! the blocking pool.

mod task;

pub use task::TargetTask;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::owners::Owners;
use super::spec::FORMAT_VERSION;
use crate::config::LocalTarget;
use crate::fsutil::{atomic_write, read_regular};
use crate::names::AppName;
use crate::target::{check, parse, AppTarget, Target, TargetError};

pub const LAST_GOOD: &str = "target.last-good.json";
/// A target bigger than this is refused (a FIFO or /dev/zero never blocks
/// or bloats the daemon: only regular files are read).
pub const MAX_TARGET_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] TargetError),
    /// A local target touching an app a fleet server owns.
    #[error("{0}")]
    Owned(String),
    #[error("cannot save the target to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What re-reading the target file found.
pub enum Reloaded {
    Changed(Arc<Target>),
    Unchanged,
    Missing,
}

#[derive(Clone)]
pub struct TargetStore {
    file: PathBuf,
    last_good: PathBuf,
    tx: Arc<watch::Sender<Option<Arc<Target>>>>,
    owners: Arc<Mutex<Owners>>,
    /// `[fleet.hawkbit] local_target`; `None` without hawkBit.
    policy: Arc<Mutex<Option<LocalTarget>>>,
}

impl TargetStore {
    /// Loads the target file; when it is missing or bad, the last good copy.
    pub fn load(file: &Path, state_dir: &Path) -> (Self, watch::Receiver<Option<Arc<Target>>>) {
        let last_good = state_dir.join(LAST_GOOD);
        let initial = match read(file) {
            Ok(Some(t)) => Some(t),
            Ok(None) => read(&last_good).ok().flatten(),
            Err(e) => {
                tracing::error!(error = %e, "target rejected; using the last good target");
                read(&last_good).ok().flatten()
            }
        };
        if let Some(t) = &initial {
            tracing::info!(apps = t.apps.len(), "target loaded");
        } else {
            tracing::info!(file = %file.display(), "no target yet: no container will be touched");
        }
        let (tx, rx) = watch::channel(initial.map(Arc::new));
        let store = Self {
            file: file.to_owned(),
            last_good,
            tx: Arc::new(tx),
            owners: Arc::new(Mutex::new(Owners::load(state_dir))),
            policy: Arc::new(Mutex::new(None)),
        };
        if let Some(t) = store.tx.borrow().clone() {
            let _ = store.save_last_good(&t);
        }
        (store, rx)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A target from D-Bus, CLI or HTTP: validated, written to the target
    /// file (atomically), then put in force.
    pub fn accept(&self, text: &str, source: &str) -> Result<Arc<Target>, StoreError> {
        self.save_local(parse(text, source)?)
    }

    pub fn set_policy(&self, policy: Option<LocalTarget>) {
        *self.policy.lock().expect("policy lock") = policy;
    }

    /// The apps `owner` deployed, for status.
    pub fn owned_by(&self, owner: &str) -> Vec<AppName> {
        let o = self.owners.lock().expect("owners lock");
        o.owned_by(owner).cloned().collect()
    }

    /// A fleet server's deployment: `apps` replace the apps `owner`
    /// deployed before (those it no longer names leave the target); the
    /// device's own apps stay. Validated whole, saved, put in force.
    /// Answers the target and the apps `owner` had before (what a cancel
    /// puts back).
    pub fn accept_fleet(
        &self,
        owner: &str,
        apps: BTreeMap<AppName, AppTarget>,
        source: &str,
    ) -> Result<(Arc<Target>, BTreeMap<AppName, AppTarget>), StoreError> {
        let mut owners = self.owners.lock().expect("owners lock");
        let mut merged = self.current_or_empty();
        let before: Vec<AppName> = owners.owned_by(owner).cloned().collect();
        let mut previous = BTreeMap::new();
        for a in before {
            if let Some(t) = merged.apps.remove(&a) {
                previous.insert(a, t);
            }
        }
        let names: Vec<AppName> = apps.keys().cloned().collect();
        merged.apps.extend(apps);
        check(&merged, source)?;
        // Owned before in force: a crash between the two leaves the
        // server's apps refused to local changes, never the other way.
        owners
            .set(owner, names.into_iter())
            .map_err(|source| StoreError::Save {
                path: PathBuf::from(super::owners::OWNERS_FILE),
                source,
            })?;
        Ok((self.save(merged)?, previous))
    }

    fn current_or_empty(&self) -> Target {
        self.tx.borrow().as_deref().cloned().unwrap_or(Target {
            version: FORMAT_VERSION,
            ..Target::default()
        })
    }

    /// A local target: refused when it changes an app a fleet server owns
    /// (under `refuse`); under `allow` such an app becomes the device's.
    fn save_local(&self, target: Target) -> Result<Arc<Target>, StoreError> {
        let mut owners = self.owners.lock().expect("owners lock");
        let released = self.check_owners(&owners, &target)?;
        let t = self.save(target)?;
        if let Err(e) = owners.release(&released) {
            tracing::error!(error = %e, "cannot record that the device took over {released:?}");
        }
        Ok(t)
    }

    fn check_owners(&self, owners: &Owners, target: &Target) -> Result<Vec<AppName>, StoreError> {
        let policy = *self.policy.lock().expect("policy lock");
        let current = self.tx.borrow().clone();
        owners
            .check_local(policy, current.as_deref(), target)
            .map_err(StoreError::Owned)
    }

    /// One app's target merged into the target in force (an empty target
    /// when there is none), the other apps left as they are; the merged
    /// target is validated whole, then saved and put in force as `accept`
    /// does. A rejected app changes nothing.
    pub fn accept_app(
        &self,
        app: AppName,
        target: AppTarget,
        source: &str,
    ) -> Result<Arc<Target>, StoreError> {
        let mut merged = self.current_or_empty();
        merged.apps.insert(app, target);
        check(&merged, source)?;
        self.save_local(merged)
    }

    fn save(&self, target: Target) -> Result<Arc<Target>, StoreError> {
        let target = Arc::new(target);
        let pretty = file_bytes(&target, &self.file)?;
        atomic_write(&self.file, &pretty).map_err(|source| StoreError::Save {
            path: self.file.clone(),
            source,
        })?;
        // Accepted again unchanged: still answered as accepted.
        self.put(target.clone())?;
        Ok(target)
    }

    /// The target file changed on disk: re-read it. A bad or missing file
    /// keeps the target in force.
    pub fn reload_file(&self) -> Result<Reloaded, StoreError> {
        match read(&self.file)? {
            Some(t) => {
                let mut owners = self.owners.lock().expect("owners lock");
                let released = self.check_owners(&owners, &t)?;
                let _ = owners.release(&released);
                let t = Arc::new(t);
                Ok(match self.put(t.clone())? {
                    true => Reloaded::Changed(t),
                    // Typically our own write of an accepted target.
                    false => Reloaded::Unchanged,
                })
            }
            None => Ok(Reloaded::Missing),
        }
    }

    /// Puts a target in force; false when it is the one in force already.
    fn put(&self, target: Arc<Target>) -> Result<bool, StoreError> {
        let same = self.tx.borrow().as_deref() == Some(&*target);
        if !same {
            self.save_last_good(&target)?;
            self.tx.send_replace(Some(target));
        }
        Ok(!same)
    }

    fn save_last_good(&self, t: &Target) -> Result<(), StoreError> {
        let data = file_bytes(t, &self.last_good)?;
        atomic_write(&self.last_good, &data).map_err(|source| StoreError::Save {
            path: self.last_good.clone(),
            source,
        })
    }
}

/// A target as its file holds it: indented, or compact when indented it
/// would be over the bound a file is read with (it must read back at the
/// next start); refused when even that is over.
fn file_bytes(t: &Target, path: &Path) -> Result<Vec<u8>, StoreError> {
    let pretty = serde_json::to_vec_pretty(t).expect("target serializes");
    if pretty.len() as u64 <= MAX_TARGET_BYTES {
        return Ok(pretty);
    }
    let compact = serde_json::to_vec(t).expect("target serializes");
    if compact.len() as u64 <= MAX_TARGET_BYTES {
        return Ok(compact);
    }
    Err(StoreError::Invalid(TargetError::Invalid {
        source_name: path.display().to_string(),
        path: "(top)".into(),
        reason: format!(
            "{} bytes as the target file would hold it; a target file is at most {MAX_TARGET_BYTES} bytes (4 MiB)",
            compact.len()
        ),
    }))
}

fn read(path: &Path) -> Result<Option<Target>, TargetError> {
    let unreadable = |reason: String| TargetError::Invalid {
        source_name: path.display().to_string(),
        path: "(file)".into(),
        reason,
    };
    match read_regular(path, MAX_TARGET_BYTES) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => {
            let text =
                String::from_utf8(bytes).map_err(|e| unreadable(format!("not UTF-8: {e}")))?;
            parse(&text, &path.display().to_string()).map(Some)
        }
        Err(e) => Err(unreadable(e.reason())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str =
        r#"{"version": 1, "apps": {"a": {"release": "1", "services": {"s": {"image": "i:1"}}}}}"#;

    /// A target of many short values: compact, 1 MB, under the 4 MiB
    /// bound; indented, as the file is written, over it.
    fn wide_target() -> String {
        let command = vec!["a"; 2500];
        let services: serde_json::Map<String, serde_json::Value> = (0..100)
            .map(|i| {
                (
                    format!("s{i:04}"),
                    serde_json::json!({"image": "i", "command": command}),
                )
            })
            .collect();
        serde_json::json!({"version": 1, "apps": {"a": {"release": "1", "services": services}}})
            .to_string()
    }

    #[test]
    fn an_accepted_target_reads_back_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("target.json");
        let (store, _rx) = TargetStore::load(&file, dir.path());
        let text = wide_target();
        assert!(text.len() < MAX_TARGET_BYTES as usize, "{}", text.len());
        store.accept(&text, "test").unwrap();
        assert!(store.reload_file().is_ok());
        let (_store, rx) = TargetStore::load(&file, dir.path());
        let t = rx.borrow().clone().unwrap();
        assert_eq!(t.apps.values().next().unwrap().services.len(), 100);
    }

    #[test]
    fn bad_input_keeps_the_last_good_target() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("target.json");
        let (store, rx) = TargetStore::load(&file, dir.path());
        assert!(rx.borrow().is_none());
        store.accept(T1, "test").unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
        let e = store
            .accept("{\"version\": 1, \"apps\": 3}", "test")
            .unwrap_err();
        assert!(e.to_string().contains("apps"), "{e}");
        std::fs::write(&file, "{ nope").unwrap();
        assert!(store.reload_file().is_err());
        assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
        // A restart with a broken file falls back to the last good copy.
        let (_store, rx) = TargetStore::load(&file, dir.path());
        assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
    }

    #[test]
    fn one_app_is_merged_into_the_target_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("target.json");
        let (store, rx) = TargetStore::load(&file, dir.path());
        let app = |n: &str| AppName::new(n).unwrap();
        let web: AppTarget =
            serde_json::from_str(r#"{"release": "c1", "services": {"w": {"image": "w:1"}}}"#)
                .unwrap();
        // No target yet: one with this app alone.
        store.accept_app(app("web"), web.clone(), "test").unwrap();
        let t = rx.borrow().clone().unwrap();
        assert_eq!((t.version, t.apps.len()), (1, 1));
        store.accept(T1, "test").unwrap();
        store.accept_app(app("web"), web.clone(), "test").unwrap();
        let names: Vec<String> = rx
            .borrow()
            .as_ref()
            .unwrap()
            .apps
            .keys()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(names, ["a", "web"]);
        // Saved like SetTarget's: the file holds the merged target.
        let saved = crate::target::parse(&std::fs::read_to_string(&file).unwrap(), "f").unwrap();
        assert_eq!(&saved, rx.borrow().as_deref().unwrap());
        // A rejected app changes nothing, in force or on disk.
        let before = std::fs::read(&file).unwrap();
        let mut bad = web.clone();
        bad.services.values_mut().next().unwrap().depends_on.insert(
            crate::names::ServiceName::new("ghost").unwrap(),
            Default::default(),
        );
        let e = store.accept_app(app("web"), bad, "test").unwrap_err();
        assert!(
            e.to_string().contains("ghost is not a service of app web"),
            "{e}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), before);
        assert_eq!(rx.borrow().as_ref().unwrap().apps[&app("web")], web);
    }

    #[test]
    fn a_fifo_as_the_target_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("target.json");
        let (store, rx) = TargetStore::load(&file, dir.path());
        store.accept(T1, "test").unwrap();
        std::fs::remove_file(&file).unwrap();
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = store.reload_file().err().expect("refused");
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert_eq!(rx.borrow().as_ref().unwrap().apps.len(), 1);
    }
}
