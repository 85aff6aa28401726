//! The system layer: everything holdfast asks of logind, on a bus
//! connection of its own (independent of holdfast's bus name, so the
//! inhibitor never waits for the D-Bus adapter). It holds the `block`
//! inhibitor the gate asks for (a refused `Inhibit` is retried with a
//! back-off, not only when the table changes), holds a `delay` inhibitor
//! while a target is in force and has the containers stopped on
//! PrepareForShutdown, and makes the Reboot/PowerOff calls of the power
//! path. It reconnects with a bounded back-off when the bus goes away.

mod inhibit;
pub mod logind;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use sd_notify::NotifyState;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use zbus::zvariant::OwnedFd;
use zbus::{Connection, MatchRule, MessageStream};

use crate::command::{Command, Handle, PowerAction};
use crate::config::Settings;
use crate::gate;
use crate::liveness::Beat;
use crate::logging::msgid;
use crate::model::{InhibitorStatus, Snapshot};
use crate::target::Target;
use crate::timer::sleep_until;
use inhibit::BlockInhibitor;
use logind::{bounded, Login1ManagerProxy, LOGIND, WHO};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const DELAY_WHY: &str = "stop app containers gracefully";

/// What the power path asks of logind.
pub enum SystemRequest {
    Power {
        action: PowerAction,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

pub struct System {
    pub snapshot: watch::Receiver<Snapshot>,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub target: watch::Receiver<Option<Arc<Target>>>,
    pub status: watch::Sender<InhibitorStatus>,
    pub requests: mpsc::Receiver<SystemRequest>,
    pub handle: Handle,
    pub beat: Beat,
}

/// Why one connection's loop ended.
enum Ended {
    Disconnected,
    Shutdown,
}

/// Lives across reconnects: logind tracks our fds, not our connection.
#[derive(Default)]
struct Held {
    block: BlockInhibitor,
    delay: Option<OwnedFd>,
    /// PrepareForShutdown(true) came: containers are being stopped.
    stopping: bool,
}

impl System {
    pub async fn run(mut self) {
        let mut held = Held::default();
        let mut backoff = RETRY_MIN;
        loop {
            let conn = match Connection::system().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "cannot reach the system bus for logind");
                    self.status.send_modify(|s| {
                        s.error = Some(format!("no system bus: {e}"));
                        s.settled = true;
                    });
                    if !self.idle(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue;
                }
            };
            backoff = RETRY_MIN;
            match self.serve(&conn, &mut held).await {
                Ended::Shutdown => return,
                Ended::Disconnected => {
                    tracing::warn!("lost the system bus; reconnecting to logind")
                }
            }
        }
    }

    /// Waits `d` while answering the watchdog and refusing power requests;
    /// false when the daemon is stopping.
    async fn idle(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                g = self.beat.asked() => self.beat.answer(g),
                req = self.requests.recv() => match req {
                    Some(SystemRequest::Power { reply, .. }) => {
                        let _ = reply.send(Err("no system bus".into()));
                    }
                    None => return false,
                },
            }
        }
    }

    async fn serve(&mut self, conn: &Connection, held: &mut Held) -> Ended {
        let Ok(login) = Login1ManagerProxy::new(conn).await else {
            return Ended::Disconnected;
        };
        let Some(mut owners) = name_owner_changes(conn, LOGIND).await else {
            return Ended::Disconnected;
        };
        let Ok(mut prepare) = login.receive_prepare_for_shutdown().await else {
            return Ended::Disconnected;
        };
        // A new connection may mean logind restarted too: take ours again.
        let mut renew = held.block.is_held();
        held.delay = None;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = RETRY_MIN;
        let mut stop_all: Option<BoxFuture<'static, u32>> = None;
        // Something logind should hear about changed (or a retry is due):
        // only then is it called, never on a watchdog ping.
        let mut dirty = true;
        loop {
            if dirty {
                dirty = false;
                let failed = self.reconcile(&login, held, renew).await;
                renew = false;
                retry_at = match (failed, retry_at) {
                    (false, _) => {
                        backoff = RETRY_MIN;
                        None
                    }
                    (true, Some(at)) if at > Instant::now() => Some(at),
                    (true, _) => {
                        let at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(RETRY_MAX);
                        Some(at)
                    }
                };
            }
            tokio::select! {
                r = self.snapshot.changed() => {
                    if r.is_err() { return Ended::Shutdown }
                    dirty = true;
                }
                r = self.settings.changed() => {
                    if r.is_err() { return Ended::Shutdown }
                    dirty = true;
                }
                r = self.target.changed() => {
                    if r.is_err() { return Ended::Shutdown }
                    dirty = true;
                }
                _ = sleep_until(retry_at) => {
                    retry_at = None;
                    dirty = true;
                }
                g = self.beat.asked() => self.beat.answer(g),
                msg = owners.next() => match msg {
                    Some(Ok(m)) => {
                        let new_owner = m.body().deserialize::<(String, String, String)>()
                            .map(|(_, _, new)| new).unwrap_or_default();
                        if new_owner.is_empty() {
                            tracing::warn!("logind left the bus; its inhibitors are gone");
                            held.block.forget();
                            held.delay = None;
                        } else {
                            tracing::info!("logind (re)appeared on the bus");
                            held.delay = None;
                            renew = true;
                        }
                        dirty = true;
                    }
                    _ => return Ended::Disconnected,
                },
                sig = prepare.next() => {
                    let Some(sig) = sig else { return Ended::Disconnected };
                    let start = sig.args().map(|a| a.start).unwrap_or(false);
                    if start && held.delay.is_some() {
                        held.stopping = true;
                        let delay = bounded(login.inhibit_delay_max_usec()).await.unwrap_or(5_000_000);
                        stop_all = Some(self.stop_all(Duration::from_micros(delay)));
                    } else if !start {
                        // The shutdown was cancelled: be ready for the next one.
                        held.stopping = false;
                        stop_all = None;
                    }
                    dirty = true;
                }
                stopped = until_done(&mut stop_all) => {
                    stop_all = None;
                    tracing::info!(message_id = msgid::CONTAINERS_STOPPED, stopped,
                        "shutting down: stopped {stopped} app containers");
                    held.delay = None;
                    dirty = true;
                }
                req = self.requests.recv() => match req {
                    Some(SystemRequest::Power { action, reply }) => {
                        // The power path set `powering`: our inhibitor must be
                        // gone before we ask (systemd >= 257 refuses root too).
                        self.reconcile(&login, held, false).await;
                        let r = if held.block.is_held() {
                            Err("holdfast's block inhibitor could not be released".into())
                        } else {
                            if !inhibit::until_released(&login).await {
                                tracing::warn!("logind still lists holdfast's block inhibitor; asking anyway");
                            }
                            match action {
                                PowerAction::Reboot => bounded(login.reboot(false)).await,
                                PowerAction::PowerOff => bounded(login.power_off(false)).await,
                            }
                            .map_err(|e| e.to_string())
                        };
                        let _ = reply.send(r);
                    }
                    None => return Ended::Shutdown,
                },
            }
        }
    }

    /// Brings both inhibitors in line with the gate and the target; true
    /// when something logind refused needs a retry.
    async fn reconcile(
        &mut self,
        login: &Login1ManagerProxy<'_>,
        held: &mut Held,
        renew: bool,
    ) -> bool {
        let want = gate::inhibitor_why(&self.snapshot.borrow_and_update());
        let what = self.settings.borrow_and_update().inhibit_what_arg();
        let status = held.block.reconcile(login, want, &what, renew).await;
        let block_failed = status.error.is_some();
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        let want_delay = self.target.borrow_and_update().is_some() && !held.stopping;
        let mut delay_failed = false;
        if want_delay && held.delay.is_none() {
            match bounded(login.inhibit("shutdown", WHO, DELAY_WHY, "delay")).await {
                Ok(fd) => {
                    tracing::debug!("logind delay inhibitor taken");
                    held.delay = Some(fd);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take a logind delay inhibitor; retrying");
                    delay_failed = true;
                }
            }
        } else if !want_delay && !held.stopping {
            held.delay = None;
        }
        block_failed || delay_failed
    }

    /// Stops every managed container within logind's delay, minus a second
    /// for the engine's answers.
    fn stop_all(&self, delay: Duration) -> BoxFuture<'static, u32> {
        let usec = u32::try_from(delay.as_micros()).unwrap_or(u32::MAX);
        let _ = sd_notify::notify(false, &[NotifyState::ExtendTimeoutUsec(usec)]);
        let grace = delay
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let handle = self.handle.clone();
        async move {
            let ask = handle.request(|reply| Command::StopAll { grace, reply });
            match tokio::time::timeout(delay, ask).await {
                Ok(Ok(n)) => n,
                _ => 0,
            }
        }
        .boxed()
    }
}

/// `NameOwnerChanged` for one bus name: who owns it now. The stream also
/// ends with the connection, which is how a lost bus is noticed.
pub async fn name_owner_changes(conn: &Connection, name: &str) -> Option<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")
        .and_then(|b| b.interface("org.freedesktop.DBus"))
        .and_then(|b| b.member("NameOwnerChanged"))
        .and_then(|b| b.add_arg(name))
        .map(|b| b.build())
        .ok()?;
    MessageStream::for_match_rule(rule, conn, Some(16))
        .await
        .ok()
}

async fn until_done(f: &mut Option<BoxFuture<'static, u32>>) -> u32 {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
