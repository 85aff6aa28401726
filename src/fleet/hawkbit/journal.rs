//! The hawkBit task's journal (`<state_dir>/hawkbit/journal.json`): the
//! action in hand and how far it got, so a restart resumes a download,
//! follows an applied deployment to its end and delivers a result the
//! server has not acknowledged; and the directory it lives in.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsutil::{atomic_write, read_regular};

const JOURNAL: &str = "journal.json";

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The release version hawkBit last deployed with success: what the
    /// device reports as its `sw_version`.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub action: Option<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub hash: String,
    pub version: String,
    /// Set once its apps are in force (app, release).
    #[serde(default)]
    pub applied: Option<Vec<(String, String)>>,
    #[serde(default)]
    pub closed: Option<Closed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub success: bool,
    pub details: Vec<String>,
    pub reported: bool,
}

pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{}: not a directory of holdfast's own (a link, or another owner's)",
            dir.display()
        ));
    }
    Ok(())
}

pub fn load_journal(dir: &Path) -> Journal {
    let path = dir.join(JOURNAL);
    match read_regular(&path, 1 << 20) {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(error = %e, "hawkBit journal {} unreadable: {e}; starting afresh", path.display());
            Journal::default()
        }),
        Ok(None) => Journal::default(),
        Err(e) => {
            tracing::error!(error = %e.reason(), "hawkBit journal {} unreadable; starting afresh", path.display());
            Journal::default()
        }
    }
}

pub fn save_journal(dir: &Path, j: &Journal) {
    let data = serde_json::to_vec_pretty(j).expect("journal serializes");
    if let Err(e) = atomic_write(&dir.join(JOURNAL), &data) {
        tracing::error!(error = %e, "cannot save the hawkBit journal: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_survives_a_restart_and_a_bad_one_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal {
            version: Some("1.0.0".into()),
            action: Some(Action {
                id: "3".into(),
                hash: "ab".into(),
                version: "1.0.1".into(),
                applied: Some(vec![("app1".into(), "r2".into())]),
                closed: None,
            }),
        };
        save_journal(dir.path(), &j);
        assert_eq!(load_journal(dir.path()), j);
        std::fs::write(dir.path().join(JOURNAL), "{").unwrap();
        assert_eq!(load_journal(dir.path()), Journal::default());
    }

    #[test]
    fn the_download_dir_must_be_ours() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("hawkbit");
        prepare_dir(&d).unwrap();
        prepare_dir(&d).unwrap();
        let l = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &l).unwrap();
        assert!(prepare_dir(&l)
            .unwrap_err()
            .contains("not a directory of holdfast's own"));
    }
}
