//! What comes of a deployment's run: a result recorded, reported and
//! its files removed; or a wait kept (a back-off, an action parked until
//! the server changes it); and what a withdrawn offer leaves.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::ddi::{Deployment, Execution, Finished};
use super::deploy::Outcome;
use super::journal::{save_journal, sweep, Action, Closed, Journal};
use super::offer;
use super::task::{HawkbitTask, Loop};
use super::Server;
use crate::text::shown;

impl HawkbitTask {
    /// A deployment's run ended: closed (reported), or waiting (a
    /// back-off, or until the server changes it).
    pub(super) async fn ended(
        &self,
        server: &Server,
        journal: &Arc<Mutex<Journal>>,
        state: &mut Loop,
        d: Deployment,
        out: Outcome,
    ) {
        let id = shown(&d.id);
        match out {
            Outcome::Closed { .. } => {
                state.held = None;
                self.finish(server, journal, &d.id, out).await;
            }
            Outcome::Retry(why) => {
                let h =
                    offer::after_retry(&d, why, state.held.as_ref(), state.sleep, Instant::now());
                tracing::info!(action = %id, "hawkBit action {id}: not now ({})", h.why);
                self.set(|s| s.state = format!("not now: {}", h.why));
                state.held = Some(h);
            }
            Outcome::Parked(why) => {
                tracing::info!(action = %id, "hawkBit action {id}: waiting ({why})");
                self.set(|s| s.state = format!("not now: {why}"));
                state.held = Some(offer::after_parked(&d, why));
            }
        }
    }

    /// The server offers no deployment: what waited for one (a back-off, a
    /// parked download) is dropped with its files.
    pub(super) fn withdrawn(&self, journal: &Arc<Mutex<Journal>>, state: &mut Loop) {
        if state.running.is_some() || state.held.take().is_none() {
            return;
        }
        let j = journal.lock().unwrap();
        let n = sweep(&self.dir, &[], &j);
        tracing::info!("hawkBit: the server offers no deployment now; {n} downloads removed");
    }

    pub(super) async fn finish(
        &self,
        server: &Server,
        journal: &Arc<Mutex<Journal>>,
        id: &str,
        out: Outcome,
    ) {
        let Outcome::Closed { success, details } = out else {
            return;
        };
        tracing::info!(
            action = %shown(id),
            success,
            "hawkBit action {}: {}",
            shown(id),
            details.join("; ")
        );
        {
            let mut j = journal.lock().unwrap();
            let version = j
                .action
                .as_ref()
                .filter(|a| a.id == id)
                .map(|a| a.version.clone());
            if let Some(a) = j.action.as_mut().filter(|a| a.id == id) {
                a.closed = Some(Closed {
                    success,
                    details: details.clone(),
                    reported: false,
                });
                a.reading = false;
            }
            if success {
                j.version = version;
            }
            save_journal(&self.dir, &j);
            // The artifact is not needed any more.
            sweep(&self.dir, &[], &j);
        }
        self.set(|h| {
            h.action = Some(shown(id));
            h.state = match success {
                true => "applied".into(),
                false => format!("failed: {}", details.join("; ")),
            };
        });
        self.report_unsent(server, journal).await;
    }

    /// A closed result the server has not acknowledged yet.
    pub(super) async fn report_unsent(&self, server: &Server, journal: &Arc<Mutex<Journal>>) {
        let pending = journal.lock().unwrap().action.clone();
        let Some(a) = pending else { return };
        let Some(c) = a.closed.filter(|c| !c.reported) else {
            return;
        };
        let finished = if c.success {
            Finished::Success
        } else {
            Finished::Failure
        };
        if server
            .feedback(&a.id, Execution::Closed, finished, None, &c.details)
            .await
            .is_ok()
        {
            let mut j = journal.lock().unwrap();
            if let Some(c) = j.action.as_mut().and_then(|a| a.closed.as_mut()) {
                c.reported = true;
            }
            save_journal(&self.dir, &j);
        }
    }

    /// An offer closed as failed without a look at it.
    pub(super) async fn refuse(
        &self,
        server: &Server,
        journal: &Arc<Mutex<Journal>>,
        d: &Deployment,
        why: String,
    ) {
        let id = shown(&d.id);
        tracing::warn!(action = %id, "hawkBit action {id}: {why}");
        {
            let mut j = journal.lock().unwrap();
            j.action = Some(Action {
                id: d.id.clone(),
                hash: d.artifact.hash.hex().to_owned(),
                version: d.version.clone(),
                applied: None,
                closed: Some(Closed {
                    success: false,
                    details: vec![why.clone()],
                    reported: false,
                }),
                reading: false,
                boot: None,
            });
            save_journal(&self.dir, &j);
            sweep(&self.dir, &[], &j);
        }
        self.set(|h| {
            h.action = Some(id.clone());
            h.state = format!("failed: {why}");
        });
        self.report_unsent(server, journal).await;
    }
}
