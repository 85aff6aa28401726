//! The target in force: loaded from the target file (or the last good copy
//! under the state dir), replaced only by a target that parses, and saved
//! durably before it is used. Its task serves SetTarget, follows the file
//! on disk and stages the target's device config; all file work runs on
//! the blocking pool.
//!
//! A saved target that cannot be read back (too big, corrupt, a read
//! error) is not "no target": nothing is in force, so no container is
//! touched, but a merge (one app, a fleet server's apps) is refused, since
//! merged into nothing it would stop and remove every other app; the
//! status says why (`UpdateStatus::target_unreadable`) until a whole
//! target is set or the file reads again.

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
use crate::model::UpdateStatus;
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
    /// A merge into a saved target that cannot be read.
    #[error("{0}")]
    Unreadable(String),
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
    unreadable: Arc<Mutex<Unreadable>>,
}

/// Why the saved target could not be read at start, and where the status
/// shows it.
#[derive(Default)]
struct Unreadable {
    why: Option<String>,
    status: Option<watch::Sender<UpdateStatus>>,
}

impl Unreadable {
    fn publish(&self) {
        if let Some(status) = &self.status {
            status.send_if_modified(|s| {
                let changed = s.target_unreadable != self.why;
                s.target_unreadable.clone_from(&self.why);
                changed
            });
        }
    }
}

impl TargetStore {
    /// Loads the target file; when it is missing or bad, the last good copy.
    /// When one of them exists but neither reads, no target is in force
    /// and the store remembers why (see the module's doc).
    pub fn load(file: &Path, state_dir: &Path) -> (Self, watch::Receiver<Option<Arc<Target>>>) {
        let last_good = state_dir.join(LAST_GOOD);
        let (initial, why) = match read(file) {
            Ok(Some(t)) => (Some(t), None),
            Ok(None) => match read(&last_good) {
                Ok(t) => (t, None),
                Err(e) => (None, Some(format!("the last good copy: {e}"))),
            },
            Err(e) => {
                tracing::error!(error = %e, "target rejected; using the last good target");
                match read(&last_good) {
                    Ok(Some(t)) => (Some(t), None),
                    Ok(None) => (None, Some(e.to_string())),
                    Err(e2) => (None, Some(format!("{e}; the last good copy: {e2}"))),
                }
            }
        };
        if let Some(t) = &initial {
            tracing::info!(apps = t.apps.len(), "target loaded");
        } else if let Some(why) = &why {
            tracing::error!(file = %file.display(), reason = %why, "the saved target cannot be read: no target is in force, no container will be touched, and changes of one app are refused until a whole target is set: {why}");
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
            unreadable: Arc::new(Mutex::new(Unreadable { why, status: None })),
        };
        if let Some(t) = store.tx.borrow().clone() {
            let _ = store.save_last_good(&t);
        }
        (store, rx)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Shows why the saved target cannot be read in `status`
    /// (`target_unreadable`), now and whenever that changes.
    pub fn report_to(&self, status: watch::Sender<UpdateStatus>) {
        let mut u = self.unreadable.lock().expect("unreadable lock");
        u.status = Some(status);
        u.publish();
    }

    /// Why the saved target cannot be read, while no other is in force.
    pub fn unreadable(&self) -> Option<String> {
        self.unreadable.lock().expect("unreadable lock").why.clone()
    }

    /// A merge needs the target it merges into: refused while the saved
    /// one cannot be read.
    fn mergeable(&self, what: &str) -> Result<(), StoreError> {
        match self.unreadable() {
            None => Ok(()),
            Some(why) => Err(StoreError::Unreadable(format!(
                "the saved target cannot be read ({why}); {what} would be merged into no \
                 target and every other app stopped and removed: set a whole target \
                 (SetTarget; holdfast apply of a target state without --app) or repair \
                 the target file"
            ))),
        }
    }

    /// A target from D-Bus, CLI or HTTP: validated, written to the target
    /// file (atomically), then put in force.
    pub fn accept(&self, text: &str, source: &str) -> Result<Arc<Target>, StoreError> {
        if text.len() as u64 > MAX_TARGET_BYTES {
            return Err(too_big(source, text.len()));
        }
        self.save_local(parse(text, source)?, source)
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
        self.mergeable(&format!("the apps of {owner}"))?;
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
        Ok((self.save(merged, source)?, previous))
    }

    fn current_or_empty(&self) -> Target {
        self.tx.borrow().as_deref().cloned().unwrap_or(Target {
            version: FORMAT_VERSION,
            ..Target::default()
        })
    }

    /// A local target: refused when it changes an app a fleet server owns
    /// (under `refuse`); under `allow` such an app becomes the device's.
    fn save_local(&self, target: Target, source: &str) -> Result<Arc<Target>, StoreError> {
        let mut owners = self.owners.lock().expect("owners lock");
        let released = self.check_owners(&owners, &target)?;
        let t = self.save(target, source)?;
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
        self.mergeable(&format!("app {app}"))?;
        let mut merged = self.current_or_empty();
        merged.apps.insert(app, target);
        check(&merged, source)?;
        self.save_local(merged, source)
    }

    /// Writes the target file and puts the target in force. What is
    /// written must read back: a file over `MAX_TARGET_BYTES` would be
    /// refused at the next start.
    fn save(&self, target: Target, source: &str) -> Result<Arc<Target>, StoreError> {
        let target = Arc::new(target);
        let pretty = file_bytes(&target, source)?;
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
        let mut u = self.unreadable.lock().expect("unreadable lock");
        if u.why.take().is_some() {
            tracing::info!("a whole target is in force again");
            u.publish();
        }
        Ok(!same)
    }

    fn save_last_good(&self, t: &Target) -> Result<(), StoreError> {
        let data = file_bytes(t, &self.last_good.display().to_string())?;
        atomic_write(&self.last_good, &data).map_err(|source| StoreError::Save {
            path: self.last_good.clone(),
            source,
        })
    }
}

/// A target as its file holds it (indented); refused when that is over
/// the bound a file is read with: it must read back at the next start.
fn file_bytes(t: &Target, source: &str) -> Result<Vec<u8>, StoreError> {
    let pretty = serde_json::to_vec_pretty(t).expect("target serializes");
    if pretty.len() as u64 > MAX_TARGET_BYTES {
        return Err(too_big(source, pretty.len()));
    }
    Ok(pretty)
}

/// A target bigger than the store reads back.
fn too_big(source: &str, bytes: usize) -> StoreError {
    StoreError::Invalid(TargetError::Invalid {
        source_name: crate::text::no_controls(source),
        path: "(top)".into(),
        reason: format!(
            "the target would be saved as {bytes} bytes, over the {MAX_TARGET_BYTES} bytes \
             (4 MiB) a saved target may have (it is written indented); holdfast would not \
             read it back"
        ),
    })
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
mod tests;
