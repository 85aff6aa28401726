//! The target in force: loaded from the target file (or the last good copy
//! under the state dir), replaced only by a target that parses, and saved
//! durably before it is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::fsutil::atomic_write;
use crate::target::{parse, Target, TargetError};

pub const LAST_GOOD: &str = "target.last-good.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] TargetError),
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

pub struct TargetStore {
    file: PathBuf,
    last_good: PathBuf,
    tx: watch::Sender<Option<Arc<Target>>>,
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
            tx,
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
        let target = Arc::new(parse(text, source)?);
        let pretty = serde_json::to_vec_pretty(&*target).expect("target serializes");
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
        let data = serde_json::to_vec_pretty(t).expect("target serializes");
        atomic_write(&self.last_good, &data).map_err(|source| StoreError::Save {
            path: self.last_good.clone(),
            source,
        })
    }
}

fn read(path: &Path) -> Result<Option<Target>, TargetError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TargetError::Invalid {
            source_name: path.display().to_string(),
            path: "(file)".into(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str =
        r#"{"version": 1, "apps": {"a": {"release": "1", "services": {"s": {"image": "i:1"}}}}}"#;

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
}
