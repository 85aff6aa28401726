//! hawkBit's cancelAction, as the task answers it.

use std::sync::{Arc, Mutex};

use super::ddi::{self, Execution, Finished};
use super::deploy::OWNER;
use super::journal::{save_journal, Journal};
use super::task::{HawkbitTask, Running};
use super::verdict::started;
use super::Server;
use crate::command::Command;
use crate::text::{no_controls, shown};

impl HawkbitTask {
    /// hawkBit's cancelAction. A deployment still downloading stops; one
    /// in force whose apps have not begun to change (each still waiting
    /// for its lock, its window or its images) is taken back: hawkBit's
    /// previous apps are put in force again, and nothing was touched. Once
    /// an app's containers are being replaced, the cancel is rejected
    /// (deploy another release to change it).
    pub(super) async fn cancel(
        &self,
        server: &Server,
        journal: &Arc<Mutex<Journal>>,
        href: &str,
        running: &mut Option<Running>,
    ) -> Result<(), String> {
        let r = server.call("GET", href, None).await?;
        let (cancel_id, stop_id) = ddi::parse_cancel(&r.body).map_err(|e| e.to_string())?;
        let path = format!("/cancelAction/{}/feedback", super::encode(&cancel_id));
        // The server's ids, as messages and the log show them.
        let stop = shown(&stop_id);
        let (execution, finished, detail) = match running.as_ref().filter(|r| r.id == stop_id) {
            None => (
                Execution::Closed,
                Finished::Success,
                format!("action {stop} is not running here"),
            ),
            Some(r) => {
                let in_force = r.in_force.lock().unwrap().clone();
                let too_late = match &in_force {
                    None => None,
                    Some(f) if started(&self.apps.borrow(), &f.want) => {
                        Some("its apps are being replaced already")
                    }
                    Some(f) if f.previous.is_none() => {
                        Some("what ran before it is not known since holdfast restarted")
                    }
                    Some(_) => None,
                };
                match too_late {
                    Some(why) => (
                        Execution::Rejected,
                        Finished::Failure,
                        format!("action {stop} cannot be canceled: {why}; deploy another release to change it"),
                    ),
                    None => {
                        let r = running.take().expect("matched above");
                        r.task.abort();
                        if let Some(previous) = in_force.and_then(|f| f.previous) {
                            self.handle
                                .request(|reply| Command::SetFleetApps {
                                    owner: OWNER.into(),
                                    apps: previous,
                                    source: format!("hawkBit cancel of action {stop}"),
                                    reply,
                                })
                                .await
                                .and_then(|r| r)
                                .map_err(|e| format!("cancel of action {stop}: putting the previous apps back: {e}"))?;
                        }
                        let mut j = journal.lock().unwrap();
                        if j.action.as_ref().is_some_and(|a| a.id == stop_id) {
                            j.action = None;
                        }
                        save_journal(&self.dir, &j);
                        drop(j);
                        self.set(|h| h.state = format!("action {stop} canceled"));
                        self.show_owned();
                        (
                            Execution::Closed,
                            Finished::Success,
                            format!("action {stop} canceled before its apps changed"),
                        )
                    }
                }
            }
        };
        tracing::info!(action = %stop, "hawkBit cancel {}: {}", shown(&cancel_id), no_controls(&detail));
        let body = ddi::feedback(execution, finished, None, &[detail]);
        server.call("POST", &path, Some(body)).await.map(|_| ())
    }
}
