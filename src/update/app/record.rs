//! An app's rejected release, kept across restarts of holdfastd in
//! `<state_dir>/rejected/<app>.json`: a release that was not healthy, or
//! could not start after the running containers were stopped, is tried
//! again on a new target or a forced update, never by a restart (which
//! would stop the running app once more).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AppTask, Rejected};
use crate::logging::msgid;
use crate::names::AppName;
use crate::target::AppTarget;
use crate::update::machine::{Machine, NOT_RETRIED};

/// A record is a few hundred bytes; anything far larger is not one.
const MAX_BYTES: u64 = 64 * 1024;

/// How much of a failure's reason is kept and shown. More than
/// `text::SHOWN_MAX`: the engine's errors nest their causes left to right
/// (`OCI runtime create failed: ... caused: exec: "/bin/x": stat /bin/x: no
/// such file or directory`), so what failed comes last, after 150
/// characters or more of holdfast's and the engine's words.
const REASON_MAX: usize = 600;

/// A failure's reason as kept and shown: control and invisible characters
/// escaped, cut to [`REASON_MAX`] characters.
pub(super) fn shown_reason(reason: &str) -> String {
    crate::text::no_controls(&crate::text::clip(reason, REASON_MAX))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Record {
    pub release: String,
    /// The rejected target to the byte ([`fingerprint`]): any other target
    /// of the app is a new one, tried at once.
    pub fingerprint: String,
    pub reason: String,
    /// The failed pass started the previous containers again (they run);
    /// otherwise the release was not healthy.
    pub put_back: bool,
}

/// SHA-256 over the app's target and each service's config hash (which
/// covers the values holdfast injects, never written to a file).
pub(super) fn fingerprint(t: &AppTarget) -> String {
    let hashes: Vec<String> = t.services.keys().map(|s| t.config_hash(s)).collect();
    let json = serde_json::to_vec(&(t, hashes)).expect("a target serializes");
    crate::fsutil::hex(&Sha256::digest(&json))
}

fn path(state_dir: &Path, app: &AppName) -> PathBuf {
    state_dir.join("rejected").join(format!("{app}.json"))
}

/// The app's record: `Ok(None)` only when there is none. A record that
/// cannot be read or parsed is an error, not "no record".
pub(super) fn read(state_dir: &Path, app: &AppName) -> Result<Option<Record>, String> {
    let path = path(state_dir, app);
    let Some(data) = crate::fsutil::read_regular(&path, MAX_BYTES).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn write(state_dir: &Path, app: &AppName, record: &Record) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(record).expect("a record serializes");
    crate::fsutil::atomic_write(&path(state_dir, app), &data)
}

pub(super) fn remove(state_dir: &Path, app: &AppName) -> io::Result<()> {
    match std::fs::remove_file(path(state_dir, app)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl AppTask {
    /// At the task's start: the release rejected before holdfastd
    /// restarted, when it is still the app's target (a record of another
    /// target is removed at the first pass). A record that cannot be read
    /// holds the release back too: what could not be read may say it
    /// stops the running app.
    pub(super) async fn restore(
        &self,
        target: Option<&AppTarget>,
        machine: &mut Machine,
        kept: &mut Option<Record>,
    ) -> Option<Rejected> {
        let dir = self.exec.borrow().state_dir().to_owned();
        let app = self.app.clone();
        let read = tokio::task::spawn_blocking(move || read(&dir, &app))
            .await
            .expect("reading a record does not panic");
        // What is on disk: a record that is not kept is removed later, and
        // one that cannot be read is replaced by what holds now.
        *kept = match &read {
            Ok(r) => r.clone(),
            Err(_) => Some(Record {
                release: String::new(),
                fingerprint: String::new(),
                reason: String::new(),
                put_back: true,
            }),
        };
        let t = target?;
        let (reason, put_back) = match read {
            Ok(None) => return None,
            Ok(Some(r)) if r.fingerprint != fingerprint(t) => return None,
            Ok(Some(r)) => (shown_reason(&r.reason), r.put_back),
            Err(e) => (
                format!(
                    "the record of a rejected release cannot be read ({})",
                    crate::text::shown(&e)
                ),
                true,
            ),
        };
        let release = &t.release;
        tracing::warn!(message_id = msgid::UPDATE_FAILED, app = %self.app, release = %release, error = %reason,
            "release {release} of app {} was rejected before holdfastd started; it is {NOT_RETRIED}: {reason}", self.app);
        if put_back {
            machine.put_back(reason.clone());
            return Some(Rejected {
                reason,
                fallback: None,
                put_back,
            });
        }
        machine.unhealthy(reason.clone(), None);
        Some(Rejected {
            reason,
            fallback: self.fallback(target).await,
            put_back,
        })
    }

    /// Keeps the record as `rejected` says: written while a release of
    /// `target` is rejected, removed otherwise; the file is touched only
    /// when that changes.
    pub(super) async fn keep_record(
        &self,
        rejected: Option<&Rejected>,
        target: Option<&AppTarget>,
        kept: &mut Option<Record>,
    ) {
        let want = rejected.zip(target).map(|(r, t)| Record {
            release: t.release.clone(),
            fingerprint: fingerprint(t),
            reason: r.reason.clone(),
            put_back: r.put_back,
        });
        if want == *kept {
            return;
        }
        let dir = self.exec.borrow().state_dir().to_owned();
        let (app, record) = (self.app.clone(), want.clone());
        let r = tokio::task::spawn_blocking(move || match &record {
            Some(r) => write(&dir, &app, r),
            None => remove(&dir, &app),
        })
        .await
        .expect("writing a record does not panic");
        match r {
            Ok(()) => *kept = want,
            Err(e) => tracing::warn!(app = %self.app, error = %e,
                "cannot keep the rejected release of app {} across a restart: {e}", self.app),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(release: &str, command: &str) -> AppTarget {
        serde_json::from_value(serde_json::json!({
            "release": release,
            "services": {"main": {"image": "busybox", "command": [command]}}
        }))
        .unwrap()
    }

    #[test]
    fn the_fingerprint_tells_any_change_and_only_a_change() {
        let a = target("r2", "/bin/sleeep");
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&target("r3", "/bin/sleeep")));
        assert_ne!(fingerprint(&a), fingerprint(&target("r2", "/bin/sleep")));
    }

    #[test]
    fn a_record_is_written_read_and_removed_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::new("app1").unwrap();
        assert_eq!(read(dir.path(), &app), Ok(None));
        let r = Record {
            release: "r2".into(),
            fingerprint: "f".into(),
            reason: "service main: engine refused".into(),
            put_back: true,
        };
        write(dir.path(), &app, &r).unwrap();
        assert_eq!(read(dir.path(), &app), Ok(Some(r)));
        remove(dir.path(), &app).unwrap();
        remove(dir.path(), &app).unwrap();
        assert_eq!(read(dir.path(), &app), Ok(None));

        let p = path(dir.path(), &app);
        std::fs::write(&p, b"{\"release\": ").unwrap();
        assert!(read(dir.path(), &app).unwrap_err().contains("app1.json"));
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert!(
            read(dir.path(), &app).is_err(),
            "could not read is not absent"
        );
    }
}
