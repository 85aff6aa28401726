//! The hawkBit task's journal (`<state_dir>/hawkbit/journal.json`): the
//! action in hand and how far it got, so a restart resumes a download,
//! follows an applied deployment to its end and delivers a result the
//! server has not acknowledged; and the directory it lives in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::fsutil::{atomic_write, read_regular};
use crate::text::shown;

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
    /// Artifacts (hashes) holdfast died reading, newest last, at most
    /// [`MAX_CRASHED`]: never read again, whatever action offers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crashed: Vec<String>,
}

pub const MAX_CRASHED: usize = 16;

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
    /// Set (durably) before its release is read (unpacked and parsed),
    /// cleared when that ends. Still set at start: holdfast died while
    /// reading it (a crash on a hostile release, or power lost), and it
    /// is not read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reading: bool,
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

/// The names in the download directory that belong to an action: its
/// partial and verified artifact, and the images unpacked from it.
pub fn files_of(id: &str, hash: &str) -> [String; 3] {
    [
        format!("{hash}.part"),
        format!("{hash}.swu"),
        format!("images-{}", super::deploy::sanitize(id)),
    ]
}

/// Removes everything in the download directory but the journal and
/// `keep` (the action in force's files): a superseded action's artifact,
/// part and images, and leftovers of a crash. Links are removed, never
/// followed. Called with the journal locked, so no journal write is
/// under way. Answers how many entries went.
pub fn sweep(dir: &Path, keep: &[String], _journal: &Journal) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == JOURNAL || keep.iter().any(|k| *k == name) {
            continue;
        }
        let path = e.path();
        let r = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove {}: {e}", path.display())
            }
        }
    }
    removed
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
    if let Err(e) = try_save(dir, j) {
        tracing::error!(error = %e, "{e}");
    }
}

fn try_save(dir: &Path, j: &Journal) -> Result<(), String> {
    let data = serde_json::to_vec_pretty(j).expect("journal serializes");
    atomic_write(&dir.join(JOURNAL), &data).map_err(|e| {
        format!(
            "cannot save the hawkBit journal {}: {e}",
            dir.join(JOURNAL).display()
        )
    })
}

/// What a crashed read leaves: an action whose release was being read
/// when holdfast stopped. It is closed as failed (reported at the next
/// poll) and never read again. Answers the action's id when it did.
pub fn quarantine_unfinished_read(j: &mut Journal) -> Option<String> {
    let a = j.action.as_mut().filter(|a| a.reading)?;
    a.reading = false;
    if a.closed.is_none() {
        a.closed = Some(Closed {
            success: false,
            details: vec![format!(
                "holdfast stopped while reading this release (action {}, artifact {}): \
                 it is not read again; deploy another release",
                shown(&a.id),
                shown(&a.hash)
            )],
            reported: false,
        });
    }
    let (id, hash) = (a.id.clone(), a.hash.clone());
    // The same bytes would do the same under another action id.
    j.crashed.retain(|h| *h != hash);
    j.crashed.push(hash);
    let over = j.crashed.len().saturating_sub(MAX_CRASHED);
    j.crashed.drain(..over);
    Some(id)
}

/// The journal as a deployment writes it.
#[derive(Clone)]
pub struct JournalHandle {
    pub journal: Arc<Mutex<Journal>>,
    pub dir: PathBuf,
}

impl JournalHandle {
    /// The action `id` with `hash` is having its release read (`true`) or
    /// is done with it. Beginning is saved durably before the read, or the
    /// read does not start.
    pub fn reading(&self, id: &str, hash: &str, on: bool) -> Result<(), String> {
        let mut j = self.journal.lock().unwrap();
        let Some(a) = j.action.as_mut().filter(|a| a.id == id && a.hash == hash) else {
            return Err(format!("action {} is no longer the journal's", shown(id)));
        };
        a.reading = on;
        try_save(&self.dir, &j)
    }

    /// The apps are in force (app, release).
    pub fn applied(&self, want: Vec<(String, String)>) {
        let mut j = self.journal.lock().unwrap();
        if let Some(a) = j.action.as_mut() {
            a.applied = Some(want);
        }
        save_journal(&self.dir, &j);
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
                reading: false,
            }),
            crashed: vec!["cd".into()],
        };
        save_journal(dir.path(), &j);
        assert_eq!(load_journal(dir.path()), j);
        std::fs::write(dir.path().join(JOURNAL), "{").unwrap();
        assert_eq!(load_journal(dir.path()), Journal::default());
    }

    #[test]
    fn a_read_that_never_ended_is_closed_as_failed_once() {
        let mut j = Journal {
            version: None,
            action: Some(Action {
                id: "31".into(),
                hash: "ab".into(),
                version: "1.0.1".into(),
                applied: None,
                closed: None,
                reading: true,
            }),
            crashed: Vec::new(),
        };
        assert_eq!(quarantine_unfinished_read(&mut j), Some("31".into()));
        assert_eq!(j.crashed, ["ab"]);
        let a = j.action.as_ref().unwrap();
        let c = a.closed.as_ref().unwrap();
        assert!(!a.reading && !c.success && !c.reported);
        assert!(c.details[0].contains("not read again"), "{c:?}");
        // Nothing more to do the next time.
        assert_eq!(quarantine_unfinished_read(&mut j), None);
        // The list of crashed artifacts stays short.
        for i in 0..40 {
            j.action = Some(Action {
                hash: format!("h{i}"),
                reading: true,
                ..j.action.clone().unwrap()
            });
            quarantine_unfinished_read(&mut j);
        }
        assert_eq!(j.crashed.len(), MAX_CRASHED);
        assert_eq!(j.crashed.last().unwrap(), "h39");
        // The marker is saved, and read back.
        let dir = tempfile::tempdir().unwrap();
        j.action.as_mut().unwrap().reading = true;
        save_journal(dir.path(), &j);
        assert!(load_journal(dir.path()).action.unwrap().reading);
    }

    #[test]
    fn a_sweep_keeps_the_journal_and_the_action_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "journal.json",
            "aa.swu",
            "aa.part",
            "bb.swu",
            "bb.part",
            ".journal.json.x.tmp",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        std::fs::create_dir_all(d.join("images-7/sub")).unwrap();
        std::fs::create_dir_all(d.join("images-8")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("link")).unwrap();
        let keep = files_of("8", "bb");
        assert_eq!(sweep(d, &keep, &Journal::default()), 5);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["bb.part", "bb.swu", "images-8", "journal.json"]);
        assert!(
            outside.path().join("keep").exists(),
            "a link is not followed"
        );
        assert_eq!(sweep(d, &[], &Journal::default()), 3);
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
