//! The own-lock keeper: the task that owns holdfast's own locks. Taking
//! and releasing them writes a durable record (fsync), so every operation
//! runs on the blocking pool; the core hears the recorded tokens through
//! the lock-event channel before the files exist, so it classifies them
//! right. A release that fails is retried with a back-off until it works.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::command::{Command, CommandError};
use crate::locks::own::{Cleanup, OwnLockError, OwnLocks, Purpose};
use crate::locks::state::LockEvent;
use crate::logging::msgid;
use crate::names::{AppName, ServiceId, ServiceName};
use crate::timer::sleep_until;

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

pub struct Keeper {
    own: Option<OwnLocks>,
    events: mpsc::Sender<LockEvent>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Keeper {
    /// Removes what a previous run left behind, then announces the tokens
    /// still recorded (leftovers that could not go yet).
    pub async fn start(
        own: OwnLocks,
        events: mpsc::Sender<LockEvent>,
    ) -> Result<Keeper, OwnLockError> {
        let mut k = Keeper {
            own: Some(own),
            events,
            retry_at: None,
            backoff: RETRY_MIN,
        };
        let cleanup: Result<Cleanup, OwnLockError> = k.with(|own| own.cleanup_leftovers()).await;
        let cleanup = cleanup?;
        for path in &cleanup.removed {
            tracing::info!(message_id = msgid::OWN_LEFTOVER_REMOVED, path = %path,
                "removed holdfast's own lock left over from a previous run: {path}");
        }
        for path in &cleanup.kept {
            tracing::warn!(path = %path, "recorded own lock {path} now belongs to someone else; left alone");
        }
        for what in &cleanup.failed {
            tracing::error!(path = %what, "cannot remove holdfast's own leftover lock {what}; retrying");
        }
        k.publish_tokens().await;
        k.schedule_retry();
        Ok(k)
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        let r = self.with(|own| own.release_all(None)).await;
                        match r {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(files = n, "released holdfast's own locks before exit"),
                            Err(e) => tracing::error!(error = %e, "cannot release own locks before exit"),
                        }
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd).await,
                    None => return,
                },
                _ = sleep_until(retry_at) => {
                    self.retry_at = None;
                    let apps = self.own.as_ref().map(OwnLocks::releasing).unwrap_or_default();
                    for app in apps {
                        match self.with(move |own| own.release(&app).map(|n| (app, n))).await {
                            Ok((app, n)) => tracing::info!(app = %app, files = n,
                                "removed holdfast's own locks of app {app} (retried)"),
                            Err(e) => tracing::debug!(error = %e, "own-lock removal still failing"),
                        }
                    }
                    self.publish_tokens().await;
                    self.schedule_retry();
                }
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::TakeLocks {
                app,
                services,
                reply,
            } => {
                let r = self.take(app, services, false, Purpose::Operator).await;
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::TakeForUpdate {
                app,
                services,
                through,
                reply,
            } => {
                let r = self.take(app, services, through, Purpose::Update).await;
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::TakeForPower { apps, force, reply } => {
                let r = self
                    .with_announce(move |own, announce| {
                        own.take_many(&apps, force, Purpose::Power, announce)
                    })
                    .await;
                if let Ok(taken) = &r {
                    tracing::info!(
                        apps = taken.len(),
                        "holdfast took every app's locks for a reboot"
                    );
                }
                // A failed take gave back what it took: the table hears it.
                self.publish_tokens().await;
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::ReleaseLocks { app, reply } => {
                let r = self
                    .release(app, &[Purpose::Operator, Purpose::Leftover])
                    .await;
                let _ = reply.send(r);
            }
            Command::ReleaseForUpdate { app, reply } => {
                let r = self.release(app, &[Purpose::Update]).await;
                let _ = reply.send(r);
            }
            Command::ReleaseForPower { reply } => {
                let r = self.with(|own| own.release_all(Some(Purpose::Power))).await;
                self.after_release(r.is_err()).await;
                let _ = reply.send(r.map(|n| n as u32).map_err(Into::into));
            }
            other => {
                tracing::error!(command = ?other, "command sent to the own-lock keeper by mistake; dropped")
            }
        }
    }

    async fn take(
        &mut self,
        app: AppName,
        services: Vec<ServiceName>,
        through: bool,
        purpose: Purpose,
    ) -> Result<Vec<ServiceId>, OwnLockError> {
        let shown = app.clone();
        let r = self
            .with_announce(move |own, announce| {
                own.take(&app, &services, through, purpose, announce)
            })
            .await;
        match &r {
            Ok(_) => tracing::info!(app = %shown, "holdfast took the locks of app {shown}"),
            Err(e) => {
                tracing::info!(app = %shown, error = %e, "could not take the locks of app {shown}")
            }
        }
        // A take may first have retried a stranded release.
        self.publish_tokens().await;
        r
    }

    /// Releases `app` if holdfast holds it for one of `purposes` (or its
    /// release is being retried).
    async fn release(&mut self, app: AppName, purposes: &[Purpose]) -> Result<u32, CommandError> {
        let own = self
            .own
            .as_ref()
            .expect("own locks are home between operations");
        let allowed = own.releasing().contains(&app)
            || own.purpose(&app).is_some_and(|p| purposes.contains(&p));
        if !allowed {
            return Err(match own.purpose(&app) {
                None => OwnLockError::NotHeld(app),
                Some(purpose) => OwnLockError::AlreadyHeld { app, purpose },
            }
            .into());
        }
        let shown = app.clone();
        let r = self.with(move |own| own.release(&app)).await;
        match &r {
            Ok(n) => {
                tracing::info!(app = %shown, files = n, "holdfast released the locks of app {shown}")
            }
            Err(e) => tracing::error!(app = %shown, error = %e, "{e}"),
        }
        self.after_release(r.is_err()).await;
        r.map(|n| n as u32).map_err(Into::into)
    }

    async fn after_release(&mut self, failed: bool) {
        self.publish_tokens().await;
        if failed {
            self.schedule_retry();
        }
    }

    fn schedule_retry(&mut self) {
        let stranded = self.own.as_ref().is_some_and(|o| !o.releasing().is_empty());
        if !stranded {
            self.backoff = RETRY_MIN;
            return;
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(RETRY_MAX);
        }
    }

    async fn publish_tokens(&mut self) {
        if let Some(own) = &mut self.own {
            let gone = own.take_gone();
            if !gone.is_empty() {
                let _ = self.events.send(LockEvent::OwnRemoved(gone)).await;
            }
            let _ = self.events.send(LockEvent::OwnTokens(own.tokens())).await;
        }
    }

    /// Runs `f` on the blocking pool with the own locks moved there and back.
    async fn with<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut OwnLocks) -> T + Send + 'static,
    ) -> T {
        let mut own = self
            .own
            .take()
            .expect("own locks are home between operations");
        let (own, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut own);
            (own, r)
        })
        .await
        .expect("own-lock work does not panic");
        self.own = Some(own);
        r
    }

    /// As `with`, with an announcer that sends tokens to the core before
    /// any file is created.
    async fn with_announce<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut OwnLocks, &mut dyn FnMut(std::collections::BTreeSet<String>)) -> T
            + Send
            + 'static,
    ) -> T {
        let events = self.events.clone();
        self.with(move |own| {
            let mut announce = |tokens| {
                let _ = events.blocking_send(LockEvent::OwnTokens(tokens));
            };
            f(own, &mut announce)
        })
        .await
    }
}
