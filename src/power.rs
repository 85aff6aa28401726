//! The power path, one task: reboots and power-offs asked through D-Bus or
//! HTTP, and the pending "reboot when unlocked, at the latest T" (carried
//! out the moment the gate allows, on a snapshot change, never by polling;
//! forced at its deadline). Each operation runs to its end in this task, so
//! a client that goes away midway cannot leave holdfast half powered off.
//!
//! The order: the gate agrees; every app's locks are taken (no app enters
//! a critical section during the shutdown; if they cannot all be taken the
//! request is refused, unless forced); staged boot config is written; the
//! core raises `powering` (the block inhibitor goes, from systemd 257 on it
//! would refuse our own request); then logind is asked. If logind refuses,
//! everything is given back.
//!
//! A reboot, not a power-off, also waits for the maintenance window
//! (`[update.periodic]`); a pending reboot's deadline passes it as it
//! passes the locks.
//!
//! With fleet-wide slots (`[fleet.lock] reboots`), a reboot takes a slot
//! once the gate agrees, then asks the gate again (a lock that came back
//! while we waited gives the slot back and the reboot waits again); every
//! give-back gives the slot back too. A pending reboot with no free slot
//! asks again with a back-off (1 s doubling to 30 s) and shows
//! `fleet-slot:<group> (n/m held)` in the fleet status.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::bootcfg::BootConfig;
use crate::command::{describe, Command, CommandError, Handle, PowerAction};
use crate::config::Settings;
use crate::fleet::slots::{Grant, Slots};
use crate::gate::{self, Blocker, Decision};
use crate::locks::own::OwnLockError;
use crate::model::{now_usec, PendingReboot, Snapshot};
use crate::system::SystemRequest;
use crate::timer::sleep_until;

/// logind said yes but we are still running after this: the shutdown did
/// not happen; give the locks and the inhibitor back.
const STILL_UP_AFTER: Duration = Duration::from_secs(600);
/// A pending reboot that failed is tried again after this, doubling.
const PENDING_RETRY_MIN: Duration = Duration::from_secs(60);
const PENDING_RETRY_MAX: Duration = Duration::from_secs(3600);
/// A pending reboot with no free fleet slot asks again after this, doubling.
const SLOT_RETRY_MIN: Duration = Duration::from_secs(1);
const SLOT_RETRY_MAX: Duration = Duration::from_secs(30);
/// What the power path holds the fleet slot for.
const REBOOT: &str = "reboot";

pub struct PowerTask {
    pub handle: Handle,
    pub snapshot: watch::Receiver<Snapshot>,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub system: mpsc::Sender<SystemRequest>,
    /// Fleet-wide slots, when `[fleet.lock]` is set (feature `fleet`).
    pub fleet: Option<Slots>,
}

fn waits_for_slot(blocked_by: &[Blocker]) -> bool {
    blocked_by
        .iter()
        .any(|b| matches!(b, Blocker::FleetSlot(_)))
}

impl PowerTask {
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut accepted_at: Option<Instant> = None;
        // A pending reboot that failed for another reason than a lock is
        // kept and tried again after a back-off (a staged boot config must
        // not be forgotten because logind refused once).
        let mut failed: Option<(PendingReboot, Instant, Duration)> = None;
        // No fleet slot was free: (ask again at, back-off).
        let mut slot_wait: Option<(Instant, Duration)> = None;
        // What the pending reboot was last logged as waiting for.
        let mut waits_for: Vec<Blocker> = Vec::new();
        loop {
            let snap = self.snapshot.borrow_and_update().clone();
            let mut wake = None;
            if snap.pending_reboot.is_none() {
                slot_wait = None;
            }
            if let (Some(p), false) = (&snap.pending_reboot, snap.powering) {
                let due = p.not_after_usec != 0 && now_usec() >= p.not_after_usec;
                let who = if due {
                    format!("{} (deadline reached)", p.who)
                } else {
                    p.who.clone()
                };
                let backing_off = failed
                    .as_ref()
                    .filter(|(f, _, _)| f == p)
                    .map(|(_, at, _)| *at)
                    .filter(|at| *at > Instant::now());
                let slot_backing_off = slot_wait
                    .map(|(at, _)| at)
                    .filter(|at| *at > Instant::now() && !due);
                if let Some(at) = backing_off {
                    wake = Some(at);
                } else if let Some(at) = slot_backing_off {
                    wake = Some(at);
                    if p.not_after_usec != 0 {
                        let wait =
                            Duration::from_micros(p.not_after_usec.saturating_sub(now_usec()));
                        wake = Instant::now().checked_add(wait).map(|d| d.min(at));
                    }
                } else if gate::reboot(&snap, due.then_some(who.as_str())).allowed() {
                    tracing::info!(force = due, who = %who, "pending reboot: {}", match (due, &snap.window_closed) {
                        (true, None) => "deadline reached, forcing through the locks".to_owned(),
                        (true, Some(w)) => format!("deadline reached, forcing through the locks and the maintenance window ({w})"),
                        (false, _) => "no app holds a lock; rebooting".to_owned(),
                    });
                    match self.power(PowerAction::Reboot, due, &who).await {
                        Ok(()) => {
                            accepted_at = Some(Instant::now());
                            failed = None;
                            slot_wait = None;
                            self.clear_pending().await;
                        }
                        // No fleet slot free: ask again after a back-off.
                        Err(CommandError::Locked { blocked_by, .. })
                            if waits_for_slot(&blocked_by) =>
                        {
                            let d = slot_wait
                                .map(|(_, d)| (d * 2).min(SLOT_RETRY_MAX))
                                .unwrap_or(SLOT_RETRY_MIN);
                            slot_wait = Some((Instant::now() + d, d));
                            wake = Some(Instant::now() + d);
                        }
                        // Locked again in between: wait for the table to say so.
                        Err(CommandError::Locked { .. }) => {}
                        Err(e) => {
                            let wait = match &failed {
                                Some((f, _, w)) if f == p => (*w * 2).min(PENDING_RETRY_MAX),
                                _ => PENDING_RETRY_MIN,
                            };
                            tracing::error!(error = %e, retry_in_s = wait.as_secs(),
                                "pending reboot failed: {e}; trying again in {}",
                                humantime::format_duration(wait));
                            failed = Some((p.clone(), Instant::now() + wait, wait));
                            wake = failed.as_ref().map(|(_, at, _)| *at);
                        }
                    }
                } else {
                    if let Decision::Blocked(b) = gate::reboot(&snap, None) {
                        if waits_for != b {
                            tracing::info!(who = %who, "pending reboot waits: {}", describe(&b));
                            waits_for = b;
                        }
                    }
                    if p.not_after_usec != 0 {
                        let wait =
                            Duration::from_micros(p.not_after_usec.saturating_sub(now_usec()));
                        wake = Instant::now().checked_add(wait);
                    }
                }
            } else {
                waits_for.clear();
            }
            let still_up = accepted_at.and_then(|t| t.checked_add(STILL_UP_AFTER));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Power { action, force, who, reply }) => {
                        let r = self.power(action, force, &who).await;
                        if r.is_ok() {
                            accepted_at = Some(Instant::now());
                            self.clear_pending().await;
                        }
                        let _ = reply.send(r);
                    }
                    Some(other) => tracing::error!(command = ?other, "command sent to the power task by mistake; dropped"),
                    None => return,
                },
                r = self.snapshot.changed() => if r.is_err() { return },
                _ = sleep_until(wake) => {}
                _ = sleep_until(still_up) => {
                    accepted_at = None;
                    tracing::error!("logind accepted our reboot {} s ago but the device is still up; giving the locks back",
                        STILL_UP_AFTER.as_secs());
                    self.give_back().await;
                }
            }
        }
    }

    /// logind accepted: a pending reboot is done with.
    async fn clear_pending(&self) {
        if self.snapshot.borrow().pending_reboot.is_some() {
            let _ = self
                .handle
                .request(|reply| Command::CancelReboot {
                    who: "holdfast (rebooting now)".into(),
                    reply,
                })
                .await;
        }
    }

    async fn power(
        &mut self,
        action: PowerAction,
        force: bool,
        who: &str,
    ) -> Result<(), CommandError> {
        let snap = self.snapshot.borrow().clone();
        let locked = |blocked_by| CommandError::Locked {
            blocked_by,
            action: action.verb().into(),
        };
        // Forced, or the override on: app locks are passed, not obeyed.
        let gate = |snap: &Snapshot, forced_by: Option<&str>| match action {
            PowerAction::Reboot => gate::reboot(snap, forced_by),
            PowerAction::PowerOff => gate::power(snap, forced_by),
        };
        let force = match gate(&snap, force.then_some(who)) {
            Decision::Blocked(b) => {
                tracing::info!(who, "refused to {}: {}", action.verb(), describe(&b));
                return Err(locked(b));
            }
            Decision::Through { why, passed } => {
                tracing::warn!(who, forced = %describe(&passed),
                    "forced {} through {}: {} ({why})", action.verb(), gate::passed_what(&passed), describe(&passed));
                true
            }
            Decision::Go => force,
        };
        // A fleet slot, once the locks allow the reboot, never before: a
        // device that would sit on a slot waiting for its locks holds none.
        let slot = match (&self.fleet, action) {
            (Some(s), PowerAction::Reboot) if s.reboots => Some(s.clone()),
            _ => None,
        };
        if let Some(slots) = &slot {
            let refused = |b: String| CommandError::Locked {
                blocked_by: vec![Blocker::FleetSlot(b)],
                action: action.verb().into(),
            };
            match slots.take(REBOOT).await {
                Ok(Grant::Granted) => {}
                Ok(Grant::NotGranted(b)) if !force => return Err(refused(b)),
                Err(e) if !force => {
                    tracing::warn!(who, error = %e, "not going to {}: cannot reach the fleet lock: {e}", action.verb());
                    return Err(refused(format!("{} (unreachable)", slots.group)));
                }
                Ok(Grant::NotGranted(b)) => tracing::warn!(
                    who,
                    "forced {} without a fleet slot (fleet-slot:{b})",
                    action.verb()
                ),
                Err(e) => tracing::warn!(who, error = %e,
                    "forced {} without a fleet slot: {e}", action.verb()),
            }
            // Locks taken while we asked: give the slot back and wait again.
            let snap = self.snapshot.borrow().clone();
            if let Decision::Blocked(b) = gate(&snap, force.then_some(who)) {
                tracing::info!(
                    who,
                    "a lock came back while taking the fleet slot: {}; giving the slot back",
                    describe(&b)
                );
                slots.release(REBOOT).await;
                return Err(locked(b));
            }
        }
        let apps = snap.table.apps();
        let taken = self
            .handle
            .request(|reply| Command::TakeForPower { apps, force, reply })
            .await?;
        match taken {
            Ok(_) => {}
            Err(e) if force => {
                tracing::warn!(error = %e, "forced {}: not every app's locks could be taken: {e}", action.verb())
            }
            Err(CommandError::OwnLock(OwnLockError::Contended { id, .. })) => {
                tracing::info!(
                    who,
                    "refused to {}: {id} was locked meanwhile",
                    action.verb()
                );
                if let Some(s) = &slot {
                    s.release(REBOOT).await;
                }
                return Err(locked(vec![Blocker::Lock(id)]));
            }
            Err(e) => {
                tracing::error!(who, error = %e, "refused to {}: cannot take every app's locks", action.verb());
                if let Some(s) = &slot {
                    s.release(REBOOT).await;
                }
                return Err(CommandError::Failed(format!(
                    "not going to {}: cannot take every app's locks first: {e}",
                    action.verb()
                )));
            }
        }
        self.write_staged_boot_config(action).await;
        tracing::info!(
            who,
            force,
            "{} requested; releasing holdfast's inhibitor first",
            action.verb()
        );
        let _ = self
            .handle
            .request(|reply| Command::SetPowering { on: true, reply })
            .await;
        let (reply, answer) = oneshot::channel();
        let asked = self
            .system
            .send(SystemRequest::Power { action, reply })
            .await
            .is_ok();
        let answer = match asked {
            true => answer
                .await
                .unwrap_or_else(|_| Err("holdfast is stopping".into())),
            false => Err("the system layer is gone".into()),
        };
        match answer {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "logind refused to {}: {e}; giving the locks back", action.verb());
                self.give_back().await;
                Err(CommandError::Failed(format!(
                    "logind refused to {}: {e}",
                    action.verb()
                )))
            }
        }
    }

    async fn give_back(&self) {
        if let Some(s) = &self.fleet {
            s.release(REBOOT).await;
        }
        if let Ok(Err(e)) = self
            .handle
            .request(|reply| Command::ReleaseForPower { reply })
            .await
        {
            tracing::error!(error = %e, "cannot give back every app's locks: {e}");
        }
        let _ = self
            .handle
            .request(|reply| Command::SetPowering { on: false, reply })
            .await;
    }

    /// The one moment a reboot is known to be allowed: staged boot config
    /// goes to config.txt. A failure leaves it staged for the next one.
    async fn write_staged_boot_config(&self, action: PowerAction) {
        let s = self.settings.borrow().clone();
        let boot = BootConfig::new(&s.boot_config_txt, &s.state_dir);
        let shown = s.boot_config_txt.display().to_string();
        match tokio::task::spawn_blocking(move || boot.apply_staged()).await {
            Ok(Ok(true)) => tracing::info!(file = %shown,
                "staged boot config written before the {}", action.verb()),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(file = %shown, error = %e,
                "cannot write the staged boot config; it stays staged: {e}"),
            Err(e) => tracing::error!(error = %e, "writing the staged boot config failed"),
        }
    }
}
