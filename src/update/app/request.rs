//! What the updater asks of an app's task, and how a request is answered
//! when the task cannot serve it.

use tokio::sync::{mpsc, oneshot};

use super::Outcome;
use crate::command::{CommandError, ServiceAction};
use crate::names::{AppName, ServiceName};

pub enum AppRequest {
    /// Run a pass now; `forced_by` goes through locks for this pass.
    Check { forced_by: Option<String> },
    Restart {
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<u32, CommandError>>,
    },
    Service {
        action: ServiceAction,
        service: Option<ServiceName>,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    Purge {
        force: bool,
        who: String,
        reply: PurgeReply,
    },
    /// The device is shutting down: refuse to start services from now on.
    DeviceStopping,
}

pub(super) type PurgeReply = oneshot::Sender<Result<Vec<String>, CommandError>>;

impl AppRequest {
    /// Answers the request with `e` instead of serving it.
    pub fn refuse(self, e: CommandError) {
        match self {
            AppRequest::Check { .. } | AppRequest::DeviceStopping => {}
            AppRequest::Restart { reply, .. } => drop(reply.send(Err(e))),
            AppRequest::Service { reply, .. } => drop(reply.send(Err(e))),
            AppRequest::Purge { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// Hands `req` to the task of `app`; answers it when there is none.
pub fn send(task: Option<&mpsc::UnboundedSender<AppRequest>>, app: &AppName, req: AppRequest) {
    let Some(tx) = task else {
        return req.refuse(CommandError::NotFound(format!(
            "app {app} is not managed by holdfast (not in the target)"
        )));
    };
    if let Err(e) = tx.send(req) {
        e.0.refuse(CommandError::Unavailable);
    }
}

/// Why a pass did not end at the target, for an answer.
pub(super) fn not_done(o: Option<&Outcome>) -> String {
    match o {
        None => "its release was not healthy and there is nothing to roll back to".into(),
        Some(Outcome::Done { .. }) => "it left the target".into(),
        Some(Outcome::Waiting(b) | Outcome::SlotBusy(b)) => {
            format!("it waits for {}", b.join(", "))
        }
        Some(
            Outcome::EngineDown(e)
            | Outcome::Failed(e)
            | Outcome::Unhealthy(e)
            | Outcome::PutBack(e),
        ) => e.clone(),
    }
}
