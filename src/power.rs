//! Reboot and power-off through logind, shared by the D-Bus and HTTP
//! adapters and the when-unlocked arbiter: the core agrees (no app lock, or
//! forced, or the override) and takes every app's locks, our block
//! inhibitor goes, then logind is asked. Containers are stopped gracefully
//! by the delay inhibitor's PrepareForShutdown hook (`update::shutdown`).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use zbus::Connection;

use crate::command::{request, Command, CommandError, PowerAction};
use crate::inhibit::{InhibitorStatus, Login1ManagerProxy};

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("logind refused to {0}: {1}")]
    Refused(&'static str, String),
    #[error("holdfast's inhibitor was not released in time")]
    InhibitorStuck,
    #[error("no system bus: {0}")]
    Bus(String),
}

#[derive(Clone)]
pub struct Power {
    pub commands: mpsc::Sender<Command>,
    pub inhibitor: watch::Receiver<InhibitorStatus>,
}

impl Power {
    pub async fn run(
        &self,
        conn: &Connection,
        action: PowerAction,
        force: bool,
        who: &str,
    ) -> Result<(), PowerError> {
        request(&self.commands, |reply| Command::PreparePower {
            action,
            force,
            who: who.to_owned(),
            reply,
        })
        .await??;
        let mut inh = self.inhibitor.clone();
        let released = tokio::time::timeout(Duration::from_secs(5), inh.wait_for(|s| !s.held))
            .await
            .is_ok_and(|r| r.is_ok());
        let result = if released {
            let login = Login1ManagerProxy::new(conn)
                .await
                .map_err(|e| PowerError::Bus(e.to_string()))?;
            match action {
                PowerAction::Reboot => login.reboot(false).await,
                PowerAction::PowerOff => login.power_off(false).await,
            }
            .map_err(|e| PowerError::Refused(action.verb(), e.to_string()))
        } else {
            Err(PowerError::InhibitorStuck)
        };
        if result.is_err() {
            let _ = request(&self.commands, |reply| Command::AbortPower { reply }).await;
        }
        result
    }
}
