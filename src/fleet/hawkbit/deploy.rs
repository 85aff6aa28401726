//! One deployment, from download to the server's final answer: the `.swu`
//! fetched and checked, its images loaded, its apps put in force through
//! the target store (so the same strict parser, lock gate, windows and
//! rollback as a local target), then followed until every app is applied
//! and healthy or given up on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::ddi::{Deployment, Execution, Finished, Handling};
use super::download::{self, DownloadError};
use super::journal::JournalHandle;
use super::verdict::{judge, Verdict};
use super::Server;
use crate::command::{Command, Handle};
use crate::fleet::FleetStatus;
use crate::model::UpdateStatus;
use crate::names::AppName;
use crate::swu::payload::{self, Limits, PayloadContent};
use crate::target::AppTarget;
use crate::text::shown;

/// Who owns the apps a deployment brings (the target store's owners).
pub const OWNER: &str = "hawkBit";

/// One release is read at a time. A read on the blocking pool cannot be
/// stopped: a deployment aborted while its release is read (superseded
/// by another action, canceled) leaves the read running, and the next
/// deployment waits for it to end instead of starting a second one
/// beside it. Otherwise a server offering a new action (or a cancel and
/// the offer again) at every poll would pile up a read per poll, each
/// seconds of CPU and its memory; and the journal's `reading` mark of the
/// new release would take the blame for a crash of the old one's read.
static READING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The action is over: `closed` with this result.
    Closed { success: bool, details: Vec<String> },
    /// A transient failure (the network, the server, the disk): tried
    /// again after a back-off, at a poll that still offers it.
    Retry(String),
    /// It waits for the server to change it (the maintenance window is
    /// closed, `update: skip`): taken up again when a poll offers it
    /// otherwise.
    Parked(String),
}

/// The apps of a deployment with their releases.
pub type Wanted = Vec<(AppName, String)>;

/// A deployment's apps in force: their releases, and the apps hawkBit had
/// before (unknown after a restart: then a cancel cannot put them back).
#[derive(Debug, Clone)]
pub struct InForce {
    pub want: Wanted,
    pub previous: Option<BTreeMap<AppName, AppTarget>>,
}

pub struct Deploy {
    pub server: Server,
    pub handle: Handle,
    pub apps: watch::Receiver<UpdateStatus>,
    pub status: watch::Sender<FleetStatus>,
    /// The device type: the board group of `sw-description` it takes.
    pub board: Option<String>,
    /// Set once the apps are in force: what a cancel checks and puts back.
    pub in_force: Arc<Mutex<Option<InForce>>>,
    /// Where the read of the release and the apps in force are recorded.
    pub journal: JournalHandle,
}

impl Deploy {
    pub async fn run(self, d: Deployment, resume: Option<Vec<(AppName, String)>>) -> Outcome {
        let want = match resume {
            Some(w) => {
                *self.in_force.lock().unwrap() = Some(InForce {
                    want: w.clone(),
                    previous: None,
                });
                w
            }
            None => match self.apply(&d).await {
                Ok(w) => w,
                Err(o) => return o,
            },
        };
        self.follow(&d.id, want).await
    }

    async fn apply(&self, d: &Deployment) -> Result<Vec<(AppName, String)>, Outcome> {
        let fail = |details: String| Outcome::Closed {
            success: false,
            details: vec![details],
        };
        self.proceeding(&d.id, "downloading 0%", Some((0, 100)))
            .await;
        let file = match self.download(d).await {
            Ok(f) => f,
            Err(e) if e.permanent() => return Err(fail(e.to_string())),
            Err(e) => {
                self.proceeding(&d.id, &format!("{e}; trying again"), None)
                    .await;
                return Err(Outcome::Retry(e.to_string()));
            }
        };
        self.proceeding(&d.id, "downloaded 100%", Some((100, 100)))
            .await;
        if d.update == Handling::Skip {
            return Err(Outcome::Parked(
                "the server asks for the download only (update: skip)".into(),
            ));
        }
        if !d.window_open {
            self.proceeding(&d.id, "waiting for the maintenance window", None)
                .await;
            return Err(Outcome::Parked("maintenance window closed".into()));
        }
        let hash = d.artifact.hash.hex();
        let apps = match self.unpack(&d.id, hash, file).await {
            Ok(apps) => apps,
            Err(Unpack::Rejected(why)) => return Err(fail(why)),
            Err(Unpack::Later(why)) => {
                self.proceeding(&d.id, &format!("{why}; trying again"), None)
                    .await;
                return Err(Outcome::Retry(why));
            }
        };
        let want: Vec<(AppName, String)> = apps
            .iter()
            .map(|(a, t)| (a.clone(), t.release.clone()))
            .collect();
        let r = self
            .handle
            .request(|reply| Command::SetFleetApps {
                owner: OWNER.into(),
                apps,
                source: format!("hawkBit action {}", shown(&d.id)),
                reply,
            })
            .await
            .and_then(|r| r);
        match r {
            Ok(done) => {
                *self.in_force.lock().unwrap() = Some(InForce {
                    want: want.clone(),
                    previous: Some(done.previous),
                });
                tracing::info!(action = %shown(&d.id), "hawkBit action {} in force: {}", shown(&d.id), done.summary);
                Ok(want)
            }
            Err(e) => Err(fail(format!("rejected: {e}"))),
        }
    }

    /// The artifact, fetched with progress feedback every tenth.
    async fn download(&self, d: &Deployment) -> Result<PathBuf, DownloadError> {
        let link =
            self.server
                .resolve(&d.artifact.href)
                .map_err(|reason| DownloadError::Refused {
                    file: d.artifact.filename.clone(),
                    reason,
                })?;
        let mut last_sent = 0u8;
        let (tx, mut rx) = watch::channel(0u8);
        let fetch = download::fetch(
            &self.server.client,
            &d.artifact,
            &link,
            &self.server.dir,
            self.server.max_download,
            move |p| {
                let _ = tx.send(p);
            },
        );
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                r = &mut fetch => return r,
                Ok(()) = rx.changed() => {
                    let p = *rx.borrow_and_update();
                    // Every tenth: enough for a progress bar, few requests.
                    if p / 10 != last_sent / 10 && p < 100 {
                        last_sent = p;
                        self.proceeding(&d.id, &format!("downloading {p}%"), Some((p.into(), 100))).await;
                    }
                }
            }
        }
    }

    /// The verified `.swu`: its target (or compose file) read, its images
    /// loaded into the engine. Unpacking and parsing run on the blocking
    /// pool (a worst-case release takes seconds to parse, and holdfastd's
    /// one runtime thread also serves the lock path), marked in the
    /// journal first so that a crash while reading it is not repeated.
    async fn unpack(
        &self,
        id: &str,
        hash: &str,
        file: PathBuf,
    ) -> Result<BTreeMap<AppName, AppTarget>, Unpack> {
        let dir = self.server.dir.join(format!("images-{}", sanitize(id)));
        let board = self.board.clone();
        let max = self.server.max_download;
        let source = format!("hawkBit action {}", shown(id));
        let one = match READING.try_lock() {
            Ok(g) => g,
            Err(_) => {
                tracing::info!(action = %shown(id),
                    "hawkBit action {}: waiting for the read of an earlier release to end", shown(id));
                READING.lock().await
            }
        };
        self.journal
            .reading(id, hash, true)
            .map_err(|e| Unpack::Later(format!("not reading the release: {e}")))?;
        tracing::info!(action = %shown(id), "hawkBit action {}: reading its release", shown(id));
        let dir2 = dir.clone();
        let shown_id = shown(id);
        let read = tokio::task::spawn_blocking(move || {
            // Held until the read ends, even when this deployment is
            // aborted meanwhile (READING).
            let _one = one;
            let r = read_release(&file, &dir2, board, max, &source);
            tracing::info!(action = %shown_id, ok = r.is_ok(), "hawkBit action {shown_id}: release read");
            r
        })
        .await
        .unwrap_or_else(|e| Err(format!("reading the release failed: {e}")));
        // Ended, whichever way: a restart may read it again (or not, if
        // it was refused: the action is closed then).
        if let Err(e) = self.journal.reading(id, hash, false) {
            tracing::warn!(error = %e, "{e}");
        }
        let (apps, images) = read.map_err(Unpack::Rejected)?;
        if !images.is_empty() {
            self.proceeding(id, "loading images", None).await;
            let r = self
                .handle
                .request(|reply| Command::LoadImages {
                    archives: images,
                    reply,
                })
                .await
                .and_then(|r| r);
            let _ = std::fs::remove_dir_all(&dir);
            let names =
                r.map_err(|e| Unpack::Rejected(format!("loading the release's images: {e}")))?;
            self.proceeding(id, &format!("loaded {}", names.join(", ")), None)
                .await;
        }
        Ok(apps)
    }

    async fn follow(&self, id: &str, want: Vec<(AppName, String)>) -> Outcome {
        self.journal.applied(
            want.iter()
                .map(|(a, r)| (a.to_string(), r.clone()))
                .collect(),
        );
        let mut apps = self.apps.clone();
        let mut said: Vec<String> = Vec::new();
        loop {
            let v = judge(&apps.borrow_and_update(), &want);
            match v {
                Verdict::Success => {
                    return Outcome::Closed {
                        success: true,
                        details: vec!["applied: every app healthy".into()],
                    }
                }
                Verdict::Failure(why) => {
                    return Outcome::Closed {
                        success: false,
                        details: vec![why],
                    }
                }
                Verdict::Pending(details) if details != said => {
                    self.set_state(id, &details.join("; "));
                    let _ = self
                        .server
                        .feedback(id, Execution::Proceeding, Finished::None, None, &details)
                        .await;
                    said = details;
                }
                Verdict::Pending(_) => {}
            }
            if apps.changed().await.is_err() {
                return Outcome::Parked("holdfast is stopping".into());
            }
        }
    }

    async fn proceeding(&self, id: &str, detail: &str, progress: Option<(u32, u32)>) {
        self.set_state(id, detail);
        let _ = self
            .server
            .feedback(
                id,
                Execution::Proceeding,
                Finished::None,
                progress,
                &[detail.to_owned()],
            )
            .await;
    }

    fn set_state(&self, id: &str, state: &str) {
        let id = shown(id);
        let state = crate::text::no_controls(state);
        self.status.send_if_modified(|f| match f.hawkbit.as_mut() {
            Some(h) if h.action.as_deref() != Some(id.as_str()) || h.state != state => {
                h.action = Some(id);
                h.state = state;
                true
            }
            _ => false,
        });
    }
}

/// Why a release was not put in force.
enum Unpack {
    /// The release itself: the action is closed as failed.
    Rejected(String),
    /// The device (the journal could not be written): tried again.
    Later(String),
}

/// On the blocking pool: the `.swu` unpacked into `dir` (images) and its
/// target or compose file parsed. Answers the apps and the image archives.
fn read_release(
    file: &std::path::Path,
    dir: &std::path::Path,
    board: Option<String>,
    max: u64,
    source: &str,
) -> Result<(BTreeMap<AppName, AppTarget>, Vec<PathBuf>), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let payload = payload::extract(
        std::io::BufReader::new(f),
        board.as_deref(),
        None,
        dir,
        Limits {
            max_image: max,
            max_total: max,
        },
    )
    .map_err(|e| format!("rejected: {e}"))?;
    let apps = match &payload.content {
        PayloadContent::Target(json) => {
            let t = crate::target::parse(json, source).map_err(|e| format!("rejected: {e}"))?;
            if !t.config.is_empty() {
                return Err(
                    "rejected: device config (`config`) from hawkBit is not applied by holdfast; \
                     deploy apps only"
                        .into(),
                );
            }
            t.apps
        }
        PayloadContent::Compose { app, yaml } => {
            let src = crate::compose::Source {
                name: source,
                bytes: yaml.as_bytes(),
                dir,
            };
            let t = crate::compose::load(&src, app, Some(&payload.version), &NoFiles)
                .map_err(|e| format!("rejected: {e}"))?;
            BTreeMap::from([(app.clone(), t)])
        }
    };
    Ok((apps, payload.images))
}

/// A compose file from a `.swu` has no directory of its own: to it, no
/// file exists (no `.env`; an `env_file` is reported missing), and no
/// variable is set, so nothing of the device's leaks into the release.
struct NoFiles;

impl crate::compose::Host for NoFiles {
    fn env(&self, _: &str) -> Option<String> {
        None
    }
    fn read(&self, _: &std::path::Path) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

/// An action id as a file name part.
pub fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn action_ids_as_file_names() {
        assert_eq!(super::sanitize("12"), "12");
        assert_eq!(super::sanitize("../x"), "___x");
    }
}
