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
    /// Artifacts whose read a restart of the device cut once (a power
    /// cut, a reboot), newest last, at most [`MAX_CRASHED`]: read once
    /// more; cut again, they are taken for ones that crash holdfast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interrupted: Vec<String>,
}

pub const MAX_CRASHED: usize = 16;

/// The kernel's id of this boot: a read begun under another one was cut
/// by a restart of the device, not (as far as holdfast can tell) by a
/// crash of holdfast on the release.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

pub fn boot_id() -> Option<String> {
    let b = read_regular(Path::new(BOOT_ID), 64).ok()??;
    let id = String::from_utf8(b).ok()?.trim().to_owned();
    (!id.is_empty()).then_some(id)
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
    /// Set (durably) before its release is read (unpacked and parsed),
    /// cleared when that ends. Still set at start: holdfast died while
    /// reading it (a crash on a hostile release, or power lost), and it
    /// is not read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reading: bool,
    /// The boot ([`boot_id`]) the read began in, while `reading`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
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

/// What a read that never ended leaves at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// holdfast died while reading action `.0`'s release, in this boot: a
    /// crash on it, as far as holdfast can tell. The action is closed as
    /// failed (reported at the next poll) and its artifact never read
    /// again.
    Crashed(String),
    /// The device restarted while it was read (a power cut, a reboot):
    /// the release is read once more, when the server still offers it.
    Interrupted(String),
}

/// What a read that never ended leaves: an action whose release was
/// being read when holdfast stopped. `boot` is this boot's id
/// ([`boot_id`]). A read cut by a restart of the device is given one
/// more try (a power cut during an update is common, and the same bytes
/// could never be deployed again otherwise); cut again, or cut in this
/// boot, the artifact is quarantined.
pub fn quarantine_unfinished_read(j: &mut Journal, boot: Option<&str>) -> Option<Unfinished> {
    let a = j.action.as_mut().filter(|a| a.reading)?;
    a.reading = false;
    let began = a.boot.take();
    let (id, hash) = (a.id.clone(), a.hash.clone());
    let rebooted = matches!((began.as_deref(), boot), (Some(then), Some(now)) if then != now);
    if rebooted && !j.interrupted.contains(&hash) {
        push_bounded(&mut j.interrupted, hash);
        return Some(Unfinished::Interrupted(id));
    }
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
    // The same bytes would do the same under another action id.
    j.interrupted.retain(|h| *h != hash);
    push_bounded(&mut j.crashed, hash);
    Some(Unfinished::Crashed(id))
}

/// `hash` last in `list`, once, which keeps at most [`MAX_CRASHED`].
fn push_bounded(list: &mut Vec<String>, hash: String) {
    list.retain(|h| *h != hash);
    list.push(hash);
    let over = list.len().saturating_sub(MAX_CRASHED);
    list.drain(..over);
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
        a.boot = if on { boot_id() } else { None };
        if !on {
            // Read to its end: a later cut is the first again.
            j.interrupted.retain(|h| h != hash);
        }
        let saved = try_save(&self.dir, &j);
        if saved.is_err() && on {
            // Not begun: a later save (the disk back) must not record a
            // read that never ran, which the next start would take for
            // a crash on this release.
            if let Some(a) = j.action.as_mut() {
                a.reading = false;
                a.boot = None;
            }
        }
        saved
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
                boot: None,
            }),
            crashed: vec!["cd".into()],
            interrupted: vec!["ef".into()],
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
                boot: Some("b1".into()),
            }),
            crashed: Vec::new(),
            interrupted: Vec::new(),
        };
        // Died in this boot: a crash on it.
        assert_eq!(
            quarantine_unfinished_read(&mut j, Some("b1")),
            Some(Unfinished::Crashed("31".into()))
        );
        assert_eq!(j.crashed, ["ab"]);
        let a = j.action.as_ref().unwrap();
        let c = a.closed.as_ref().unwrap();
        assert!(!a.reading && !c.success && !c.reported);
        assert!(c.details[0].contains("not read again"), "{c:?}");
        // Nothing more to do the next time.
        assert_eq!(quarantine_unfinished_read(&mut j, Some("b1")), None);
        // The list of crashed artifacts stays short.
        for i in 0..40 {
            j.action = Some(Action {
                hash: format!("h{i}"),
                reading: true,
                ..j.action.clone().unwrap()
            });
            quarantine_unfinished_read(&mut j, None);
        }
        assert_eq!(j.crashed.len(), MAX_CRASHED);
        assert_eq!(j.crashed.last().unwrap(), "h39");
        // The marker is saved, and read back.
        let dir = tempfile::tempdir().unwrap();
        j.action.as_mut().unwrap().reading = true;
        save_journal(dir.path(), &j);
        assert!(load_journal(dir.path()).action.unwrap().reading);
    }

    /// A power cut (or a reboot) during a read is not taken for a crash
    /// on the release the first time: the same artifact is read once
    /// more; cut again, it is quarantined like a crash.
    #[test]
    fn a_read_cut_by_a_restart_of_the_device_is_read_once_more() {
        let reading = |hash: &str, boot: Option<&str>| Action {
            id: "31".into(),
            hash: hash.into(),
            version: "1.0.1".into(),
            applied: None,
            closed: None,
            reading: true,
            boot: boot.map(str::to_owned),
        };
        let mut j = Journal {
            action: Some(reading("ab", Some("b1"))),
            ..Default::default()
        };
        assert_eq!(
            quarantine_unfinished_read(&mut j, Some("b2")),
            Some(Unfinished::Interrupted("31".into()))
        );
        let a = j.action.as_ref().unwrap();
        assert!(
            !a.reading && a.boot.is_none() && a.closed.is_none(),
            "{a:?}"
        );
        assert!(j.crashed.is_empty());
        assert_eq!(j.interrupted, ["ab"]);
        // Cut again, by another restart: quarantined.
        j.action = Some(reading("ab", Some("b2")));
        assert_eq!(
            quarantine_unfinished_read(&mut j, Some("b3")),
            Some(Unfinished::Crashed("31".into()))
        );
        assert_eq!(j.crashed, ["ab"]);
        assert!(j.interrupted.is_empty());
        // No boot id to compare (then or now): taken for a crash.
        for (then, now) in [(None, Some("b1")), (Some("b1"), None)] {
            j.action = Some(reading("cd", then));
            assert_eq!(
                quarantine_unfinished_read(&mut j, now),
                Some(Unfinished::Crashed("31".into()))
            );
        }
        // A read that ends forgets the cut: the next cut is a first one.
        let dir = tempfile::tempdir().unwrap();
        j.action = Some(reading("ef", Some("b1")));
        assert!(quarantine_unfinished_read(&mut j, Some("b2")).is_some());
        assert_eq!(j.interrupted, ["ef"]);
        let h = JournalHandle {
            journal: Arc::new(Mutex::new(j)),
            dir: dir.path().to_owned(),
        };
        h.reading("31", "ef", true).unwrap();
        let saved = load_journal(dir.path()).action.unwrap();
        assert!(saved.reading, "{saved:?}");
        assert_eq!(saved.boot, boot_id());
        h.reading("31", "ef", false).unwrap();
        let saved = load_journal(dir.path());
        assert!(saved.interrupted.is_empty(), "{saved:?}");
        assert!(!saved.action.as_ref().unwrap().reading);
        assert!(saved.action.unwrap().boot.is_none());
    }

    /// A beginning that could not be saved is no beginning: the read does
    /// not start, and nothing records it.
    #[test]
    fn a_read_whose_mark_cannot_be_saved_is_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let j = Journal {
            action: Some(Action {
                id: "31".into(),
                hash: "ab".into(),
                version: "1.0.1".into(),
                applied: None,
                closed: None,
                reading: false,
                boot: None,
            }),
            ..Default::default()
        };
        let h = JournalHandle {
            journal: Arc::new(Mutex::new(j)),
            // Under a file: no journal can be written there.
            dir: file.join("hawkbit"),
        };
        assert!(h.reading("31", "ab", true).is_err());
        let j = h.journal.lock().unwrap();
        let a = j.action.as_ref().unwrap();
        assert!(!a.reading && a.boot.is_none(), "{a:?}");
    }

    #[test]
    fn this_boot_has_an_id() {
        let id = boot_id().expect("a boot id");
        assert_eq!(id.len(), 36, "{id}");
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
