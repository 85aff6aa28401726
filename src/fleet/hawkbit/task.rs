//! The hawkBit task: polls at the server's interval (spread, backing off
//! on errors), sends configData when asked, runs one deployment at a time
//! beside the polls (a lock may hold it for days; cancel still reaches
//! it), and keeps a journal so a restart resumes a download, follows an
//! applied deployment to its end, and delivers a result the server has
//! not acknowledged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use super::ddi::{self, Deployment, Execution, Finished};
use super::deploy::{Deploy, InForce, Outcome, OWNER};
use super::journal::{
    boot_id, files_of, load_journal, prepare_dir, quarantine_unfinished_read, save_journal, sweep,
    Action, Journal, JournalHandle, Unfinished,
};
use super::offer::{self, Decision, Held};
use super::Server;
use crate::command::Handle;
use crate::config::HawkbitSettings;
use crate::devconfig::DeviceInfo;
use crate::fleet::{FleetStatus, HawkbitStatus};
use crate::model::{now_usec, utc, InhibitorStatus, UpdateStatus};
use crate::names::AppName;
use crate::target::store::TargetStore;
use crate::text::shown;

pub struct HawkbitTask {
    pub settings: HawkbitSettings,
    pub fleet_id: String,
    /// `<state_dir>/hawkbit`.
    pub dir: PathBuf,
    pub handle: Handle,
    pub apps: watch::Receiver<UpdateStatus>,
    pub device: watch::Receiver<Option<DeviceInfo>>,
    pub status: watch::Sender<FleetStatus>,
    /// Asked which apps hawkBit owns, for status.
    pub store: TargetStore,
    /// The logind inhibitor's state: nothing from the server (nor a cached
    /// release) is looked at before the first attempt at it is done.
    pub inhibitor: watch::Receiver<InhibitorStatus>,
}

pub(super) struct Running {
    pub id: String,
    pub hash: String,
    /// The deployment as offered (what a retry or a parked action is
    /// compared with).
    pub deployment: Deployment,
    pub in_force: Arc<Mutex<Option<InForce>>>,
    pub task: JoinHandle<Outcome>,
}

/// What the poll loop keeps between polls.
pub(super) struct Loop {
    pub running: Option<Running>,
    /// What the last run of an action left (a back-off, a parked action).
    pub held: Option<Held>,
    /// The server's interval as last given.
    pub sleep: Duration,
    /// configData was sent in this run: a server that keeps asking for it
    /// gets it at its own interval, not every second.
    pub config_sent: bool,
}

impl HawkbitTask {
    pub fn controller_id(&self) -> String {
        self.settings
            .controller_id
            .clone()
            .unwrap_or_else(|| self.fleet_id.clone())
    }

    pub async fn run(mut self) {
        // A lock that exists at start binds logind before any release
        // (a cached one included) is read.
        InhibitorStatus::wait_settled(&mut self.inhibitor).await;
        let controller = self.controller_id();
        if let Err(e) = prepare_dir(&self.dir) {
            tracing::error!(error = %e, "hawkBit: cannot use {}: {e}; no releases from hawkBit", self.dir.display());
            self.set(|h| h.error = Some(e.clone()));
            return std::future::pending().await;
        }
        let mut server = match Server::new(&self.settings, &controller, &self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "hawkBit: {e}; no releases from hawkBit");
                self.set(|h| h.error = Some(e.clone()));
                return std::future::pending().await;
            }
        };
        self.show_owned();
        let journal = {
            let mut j = load_journal(&self.dir);
            if let Some(u) = quarantine_unfinished_read(&mut j, boot_id().as_deref()) {
                match u {
                    Unfinished::Crashed(id) => tracing::error!(action = %shown(&id),
                        "hawkBit action {}: holdfast stopped while reading its release (a crash?); \
                         it is not read again and is reported as failed", shown(&id)),
                    Unfinished::Interrupted(id) => tracing::warn!(action = %shown(&id),
                        "hawkBit action {}: the device restarted while its release was read \
                         (a power cut?); it is read once more if the server still offers it \
                         (cut again, it is reported as failed)", shown(&id)),
                }
                save_journal(&self.dir, &j);
            }
            // Nothing but the action in hand's files survives a restart.
            let keep = match j.action.as_ref().filter(|a| a.closed.is_none()) {
                Some(a) => files_of(&a.id, &a.hash).to_vec(),
                None => Vec::new(),
            };
            sweep(&self.dir, &keep, &j);
            Arc::new(Mutex::new(j))
        };
        let mut state = Loop {
            running: None,
            held: None,
            sleep: ddi::DEFAULT_SLEEP,
            config_sent: false,
        };
        // An applied deployment whose end was not seen: follow it again.
        let resume = journal.lock().unwrap().action.clone();
        if let Some(a) = resume.filter(|a| a.closed.is_none() && a.applied.is_some()) {
            state.running = Some(self.resume(&server, &journal, a));
        }
        let mut next = Instant::now();
        let mut failures = 0u32;
        loop {
            let done = async {
                match state.running.as_mut() {
                    Some(r) => (&mut r.task).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep_until(next) => {
                    let r = match server.load_token(&self.settings.auth) {
                        Ok(()) => self.poll(&server, &journal, &mut state).await,
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(s) => {
                            failures = 0;
                            state.sleep = s;
                            next = Instant::now() + ddi::next_poll(s, spread());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "hawkBit poll failed: {e}");
                            self.set(|h| h.error = Some(e.clone()));
                            next = Instant::now() + ddi::backoff(failures, state.sleep);
                            failures = failures.saturating_add(1);
                        }
                    }
                }
                out = done => {
                    let r = state.running.take().expect("a deployment was running");
                    if let Ok(out) = out {
                        self.ended(&server, &journal, &mut state, r.deployment, out).await;
                    }
                    self.show_owned();
                    // The next poll stays where the server's interval put
                    // it: an action that waits or failed is not asked for
                    // again at once.
                }
            }
        }
    }

    /// One poll; answers the server's interval.
    async fn poll(
        &self,
        server: &Server,
        journal: &Arc<Mutex<Journal>>,
        state: &mut Loop,
    ) -> Result<Duration, String> {
        let r = server.call("GET", "", None).await?;
        let p = ddi::parse_poll(&r.body).map_err(|e| e.to_string())?;
        self.set(|h| {
            h.last_poll = Some(utc(now_usec()));
            h.error = None;
        });
        if let Some(href) = &p.config_data {
            let data = self.config_data(journal);
            let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .call("PUT", href, Some(ddi::config_data(&pairs)))
                .await?;
            // What the server makes of it (a deployment for this board, a
            // new interval) is worth a look soon, not after the long
            // first-contact sleep gooseBit gives; once.
            let first = !std::mem::replace(&mut state.config_sent, true);
            return Ok(if first { ddi::MIN_SLEEP } else { p.sleep });
        }
        self.report_unsent(server, journal).await;
        if let Some(href) = &p.cancel {
            self.cancel(server, journal, href, &mut state.running)
                .await?;
        }
        let Some(href) = &p.deployment else {
            self.withdrawn(journal, state);
            return Ok(p.sleep);
        };
        let r = server.call("GET", href, None).await?;
        let d = match ddi::parse_deployment(&r.body) {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.withdrawn(journal, state);
                return Ok(p.sleep);
            }
            Err(e) => {
                // Nothing holdfast can apply: said once, closed.
                let id = href
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.split('?').next())
                    .unwrap_or("");
                if !id.is_empty() {
                    let _ = server
                        .feedback(
                            id,
                            Execution::Closed,
                            Finished::Failure,
                            None,
                            &[e.to_string()],
                        )
                        .await;
                }
                return Err(e.to_string());
            }
        };
        let decision = {
            let j = journal.lock().unwrap();
            offer::decide(
                &d,
                state
                    .running
                    .as_ref()
                    .map(|r| (r.id.as_str(), r.hash.as_str())),
                &j,
                state.held.as_ref(),
                Instant::now(),
            )
        };
        let refuse = match decision {
            Decision::Running => return Ok(p.sleep),
            Decision::Wait(why) => {
                tracing::debug!(action = %shown(&d.id), "hawkBit action {}: {}", shown(&d.id), why);
                return Ok(p.sleep);
            }
            Decision::Refuse(why) => Some(why),
            Decision::Start => None,
        };
        if let Some(old) = state.running.take() {
            old.task.abort();
            let why = format!("superseded by action {}", shown(&d.id));
            if old.id != d.id {
                self.finish(
                    server,
                    journal,
                    &old.id,
                    Outcome::Closed {
                        success: false,
                        details: vec![why],
                    },
                )
                .await;
            }
        }
        match refuse {
            Some(why) => self.refuse(server, journal, &d, why).await,
            None => state.running = Some(self.start(server, journal, d, None)),
        }
        Ok(p.sleep)
    }

    fn config_data(&self, journal: &Arc<Mutex<Journal>>) -> Vec<(&'static str, String)> {
        let board = self.board().unwrap_or_else(|| "default".into());
        let version = journal.lock().unwrap().version.clone();
        let mut data = vec![
            ("hw_boardname", board.clone()),
            ("device_type", board),
            ("fleet_id", self.fleet_id.clone()),
            ("holdfast_version", env!("CARGO_PKG_VERSION").to_owned()),
        ];
        if let Some(v) = version {
            data.push(("sw_version", v));
        }
        data
    }

    fn board(&self) -> Option<String> {
        self.device
            .borrow()
            .as_ref()
            .and_then(|d| d.device_type.clone())
    }

    fn start(
        &self,
        server: &Server,
        journal: &Arc<Mutex<Journal>>,
        d: Deployment,
        resume: Option<Vec<(AppName, String)>>,
    ) -> Running {
        let hash = d.artifact.hash.hex().to_owned();
        tracing::info!(action = %shown(&d.id), version = %shown(&d.version), artifact = %shown(&d.artifact.filename),
            "hawkBit action {}: release {}", shown(&d.id), shown(&d.version));
        {
            let mut j = journal.lock().unwrap();
            let same = j
                .action
                .as_ref()
                .is_some_and(|a| a.id == d.id && a.hash == hash);
            if !same || resume.is_none() {
                j.action = Some(Action {
                    id: d.id.clone(),
                    hash: hash.clone(),
                    version: d.version.clone(),
                    applied: None,
                    closed: None,
                    reading: false,
                    boot: None,
                });
            }
            save_journal(&self.dir, &j);
            // What an earlier action left (its artifact, part, images) is
            // not needed any more: only this action's files stay.
            sweep(&self.dir, &files_of(&d.id, &hash), &j);
        }
        let in_force = Arc::new(Mutex::new(None));
        let deploy = Deploy {
            server: server.clone(),
            handle: self.handle.clone(),
            apps: self.apps.clone(),
            status: self.status.clone(),
            board: self.board(),
            in_force: in_force.clone(),
            journal: JournalHandle {
                journal: journal.clone(),
                dir: self.dir.clone(),
            },
        };
        self.show_owned();
        Running {
            id: d.id.clone(),
            hash,
            deployment: d.clone(),
            in_force,
            task: tokio::spawn(deploy.run(d, resume)),
        }
    }

    /// After a restart: the applied deployment followed to its end.
    fn resume(&self, server: &Server, journal: &Arc<Mutex<Journal>>, a: Action) -> Running {
        let want: Vec<(AppName, String)> = a
            .applied
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(app, r)| AppName::new(app).ok().map(|a| (a, r)))
            .collect();
        let d = Deployment {
            id: a.id,
            download: ddi::Handling::Forced,
            update: ddi::Handling::Forced,
            window_open: true,
            artifact: ddi::Artifact {
                filename: String::new(),
                size: 0,
                hash: ddi::Hash::Sha256(a.hash),
                href: String::new(),
            },
            version: a.version,
        };
        self.start(server, journal, d, Some(want))
    }

    pub(super) fn show_owned(&self) {
        let apps: Vec<String> = self
            .store
            .owned_by(OWNER)
            .iter()
            .map(|a| a.to_string())
            .collect();
        self.set(|h| h.apps = apps);
    }

    pub(super) fn set(&self, f: impl FnOnce(&mut HawkbitStatus)) {
        let controller = self.controller_id();
        self.status.send_modify(|s| {
            let h = s.hawkbit.get_or_insert_with(|| HawkbitStatus {
                url: self.settings.url.clone(),
                controller_id: controller,
                ..Default::default()
            });
            f(h);
        });
    }
}

/// A number in 0..1000 for spreading polls: the clock's nanoseconds are
/// as good as any here.
fn spread() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(500)
}
