//! Graceful stop at shutdown: while a target is in force holdfast holds a
//! logind `delay` inhibitor; on PrepareForShutdown(true) it stops the
//! containers it manages within logind's delay, then lets go.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use sd_notify::NotifyState;
use tokio::sync::watch;
use zbus::zvariant::OwnedFd;
use zbus::Connection;

use super::plan::RunState;
use super::status::UpdateStatus;
use crate::engine::Engine;
use crate::inhibit::{Login1ManagerProxy, WHO};
use crate::logging::msgid;

const WHY: &str = "stop app containers gracefully";

/// Follows the target flag and logind on one bus connection until it ends:
/// `Ok` when the daemon stops, `Err` when the connection is gone.
pub async fn run(
    conn: &Connection,
    socket: PathBuf,
    mut updates: watch::Receiver<UpdateStatus>,
) -> zbus::Result<()> {
    let login = Login1ManagerProxy::new(conn).await?;
    let mut prepare = login.receive_prepare_for_shutdown().await?;
    let mut owner = login.inner().receive_owner_changed().await?;
    let mut fd: Option<OwnedFd> = None;
    let mut stopping = false;
    loop {
        let want = updates.borrow_and_update().target && !stopping;
        if want && fd.is_none() {
            match login.inhibit("shutdown", WHO, WHY, "delay").await {
                Ok(f) => {
                    tracing::debug!("logind delay inhibitor taken");
                    fd = Some(f);
                }
                Err(e) => tracing::warn!(error = %e, "cannot take a logind delay inhibitor"),
            }
        } else if !want {
            fd = None;
        }
        tokio::select! {
            r = updates.changed() => if r.is_err() { return Ok(()) },
            sig = prepare.next() => {
                let Some(sig) = sig else { return Err(zbus::Error::InputOutput(disconnected())) };
                let start = sig.args().map(|a| a.start).unwrap_or(false);
                if start && fd.is_some() {
                    stopping = true;
                    let delay = login.inhibit_delay_max_usec().await.unwrap_or(5_000_000);
                    stop_all(&socket, Duration::from_micros(delay)).await;
                    fd = None;
                } else if !start {
                    // The shutdown was cancelled: be ready for the next one.
                    stopping = false;
                }
            }
            // logind restarted: its inhibitors are gone; take ours again.
            o = owner.next() => match o {
                Some(_) => fd = None,
                None => return Err(zbus::Error::InputOutput(disconnected())),
            },
        }
    }
}

fn disconnected() -> std::sync::Arc<std::io::Error> {
    std::sync::Arc::new(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the bus connection is gone",
    ))
}

async fn stop_all(socket: &std::path::Path, delay: Duration) {
    let usec = u32::try_from(delay.as_micros()).unwrap_or(u32::MAX);
    let _ = sd_notify::notify(false, &[NotifyState::ExtendTimeoutUsec(usec)]);
    // Leave a second of logind's delay for the engine's answers.
    let grace = (delay.as_secs() as i32 - 1).max(1);
    let engine = match Engine::new(socket) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "shutting down: cannot stop app containers");
            return;
        }
    };
    let running = match engine.managed().await {
        Ok(list) => list
            .into_iter()
            .filter(|c| c.state == RunState::Running)
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!(error = %e, "shutting down: cannot list app containers");
            return;
        }
    };
    let stops = running.iter().map(|c| engine.stop_with(&c.id, Some(grace)));
    let results = tokio::time::timeout(delay, futures_util::future::join_all(stops)).await;
    let stopped = results
        .map(|r| r.iter().filter(|r| r.is_ok()).count())
        .unwrap_or(0);
    tracing::info!(
        message_id = msgid::CONTAINERS_STOPPED,
        stopped,
        of = running.len(),
        "shutting down: stopped {stopped} of {} app containers",
        running.len()
    );
}
