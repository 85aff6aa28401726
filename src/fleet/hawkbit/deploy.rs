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
use super::verdict::{judge, Verdict};
use super::Server;
use crate::command::{Command, Handle};
use crate::fleet::FleetStatus;
use crate::model::UpdateStatus;
use crate::names::AppName;
use crate::swu::payload::{self, Limits, PayloadContent};
use crate::target::AppTarget;

/// Who owns the apps a deployment brings (the target store's owners).
pub const OWNER: &str = "hawkBit";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The action is over: `closed` with this result.
    Closed { success: bool, details: Vec<String> },
    /// Not now (a transfer failed, the window is closed); the next poll
    /// takes it up again.
    Later(String),
}

/// The apps of a deployment with their releases.
pub type Wanted = Vec<(AppName, String)>;
pub type OnApplied = Box<dyn Fn(Wanted) + Send + Sync>;

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
    /// Called with the apps and releases once they are in force.
    pub on_applied: OnApplied,
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
        let mut last_sent = 0u8;
        let (tx, mut rx) = watch::channel(0u8);
        let auth = self.server.auth_header_pairs();
        let fetch = download::fetch(
            &self.server.client,
            &d.artifact,
            &auth,
            &self.server.dir,
            self.server.max_download,
            move |p| {
                let _ = tx.send(p);
            },
        );
        tokio::pin!(fetch);
        let file = loop {
            tokio::select! {
                r = &mut fetch => break r,
                Ok(()) = rx.changed() => {
                    let p = *rx.borrow_and_update();
                    // Every tenth: enough for a progress bar, few requests.
                    if p / 10 != last_sent / 10 && p < 100 {
                        last_sent = p;
                        self.proceeding(&d.id, &format!("downloading {p}%"), Some((p.into(), 100))).await;
                    }
                }
            }
        };
        let file = match file {
            Ok(f) => f,
            Err(e @ (DownloadError::Transfer { .. } | DownloadError::Local { .. })) => {
                self.proceeding(&d.id, &format!("{e}; trying again"), None)
                    .await;
                return Err(Outcome::Later(e.to_string()));
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        self.proceeding(&d.id, "downloaded 100%", Some((100, 100)))
            .await;
        if d.update == Handling::Skip {
            return Err(Outcome::Later(
                "the server asks for the download only (update: skip)".into(),
            ));
        }
        if !d.window_open {
            self.proceeding(&d.id, "waiting for the maintenance window", None)
                .await;
            return Err(Outcome::Later("maintenance window closed".into()));
        }
        let apps = self.unpack(&d.id, file).await.map_err(fail)?;
        let want: Vec<(AppName, String)> = apps
            .iter()
            .map(|(a, t)| (a.clone(), t.release.clone()))
            .collect();
        let r = self
            .handle
            .request(|reply| Command::SetFleetApps {
                owner: OWNER.into(),
                apps,
                source: format!("hawkBit action {}", d.id),
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
                tracing::info!(action = %d.id, "hawkBit action {} in force: {}", d.id, done.summary);
                Ok(want)
            }
            Err(e) => Err(fail(format!("rejected: {e}"))),
        }
    }

    /// The verified `.swu`: its target (or compose file) read, its images
    /// loaded into the engine.
    async fn unpack(
        &self,
        id: &str,
        file: PathBuf,
    ) -> Result<BTreeMap<AppName, AppTarget>, String> {
        let dir = self.server.dir.join(format!("images-{}", sanitize(id)));
        let board = self.board.clone();
        let max = self.server.max_download;
        let source = format!("hawkBit action {id}");
        let dir2 = dir.clone();
        let payload = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&dir2);
            std::fs::create_dir_all(&dir2).map_err(|e| format!("{}: {e}", dir2.display()))?;
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            payload::extract(
                std::io::BufReader::new(f),
                board.as_deref(),
                None,
                &dir2,
                Limits {
                    max_image: max,
                    max_total: max,
                },
            )
            .map_err(|e| format!("rejected: {e}"))
        })
        .await
        .map_err(|e| e.to_string())??;
        let apps = match &payload.content {
            PayloadContent::Target(json) => {
                let t =
                    crate::target::parse(json, &source).map_err(|e| format!("rejected: {e}"))?;
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
                let app = app.clone();
                let src = crate::compose::Source {
                    name: &source,
                    bytes: yaml.as_bytes(),
                    dir: &dir,
                };
                let t = crate::compose::load(&src, &app, Some(&payload.version), &NoFiles)
                    .map_err(|e| format!("rejected: {e}"))?;
                BTreeMap::from([(app, t)])
            }
        };
        if !payload.images.is_empty() {
            self.proceeding(id, "loading images", None).await;
            let archives = payload.images.clone();
            let r = self
                .handle
                .request(|reply| Command::LoadImages { archives, reply })
                .await
                .and_then(|r| r);
            let _ = std::fs::remove_dir_all(&dir);
            let names = r.map_err(|e| format!("loading the release's images: {e}"))?;
            self.proceeding(id, &format!("loaded {}", names.join(", ")), None)
                .await;
        }
        Ok(apps)
    }

    async fn follow(&self, id: &str, want: Vec<(AppName, String)>) -> Outcome {
        (self.on_applied)(want.clone());
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
                return Outcome::Later("holdfast is stopping".into());
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
        self.status.send_if_modified(|f| match f.hawkbit.as_mut() {
            Some(h) if h.action.as_deref() != Some(id) || h.state != state => {
                h.action = Some(id.to_owned());
                h.state = state.to_owned();
                true
            }
            _ => false,
        });
    }
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
