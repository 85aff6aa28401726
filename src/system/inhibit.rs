//! The logind `block` inhibitor: held exactly while the gate says so. The
//! held fd survives a reconnect (logind tracks the fd, not our bus
//! connection); a failed `Inhibit` is reported and retried by the caller.

use std::time::Duration;

use zbus::zvariant::OwnedFd;

use super::logind::{bounded, Login1ManagerProxy, WHO};
use crate::logging::msgid;
use crate::model::InhibitorStatus;

struct Held {
    what: String,
    why: String,
    _fd: OwnedFd,
}

#[derive(Default)]
pub struct BlockInhibitor {
    held: Option<Held>,
    /// The last attempt failed: try again even if nothing changed.
    failed: bool,
}

impl BlockInhibitor {
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// logind lost its inhibitors (it left the bus).
    pub fn forget(&mut self) {
        self.held = None;
    }

    /// Whether `want`/`what` differs from what is held (or a retry is due).
    pub fn needs(&self, want: &Option<String>, what: &str) -> bool {
        let current = self
            .held
            .as_ref()
            .map(|h| (h.what.as_str(), h.why.as_str()));
        self.failed
            || match (want, current) {
                (None, None) => false,
                (Some(why), Some((w, y))) => why != y || what != w,
                _ => true,
            }
    }

    /// Makes the held inhibitor match `want`: the new one is taken before
    /// the old one goes (no gap); when logind refuses, the old one stays.
    /// `renew`: take it again even if it looks right (logind restarted).
    pub async fn reconcile(
        &mut self,
        login: &Login1ManagerProxy<'_>,
        want: Option<String>,
        what: &str,
        renew: bool,
    ) -> InhibitorStatus {
        if renew && self.held.is_some() {
            self.failed = true;
        }
        if !self.needs(&want, what) {
            return self.status(what, None);
        }
        match want {
            Some(why) => match bounded(login.inhibit(what, WHO, &why, "block")).await {
                Ok(fd) => {
                    let first = self.held.is_none();
                    self.held = Some(Held {
                        what: what.to_owned(),
                        why: why.clone(),
                        _fd: fd,
                    });
                    self.failed = false;
                    if first {
                        tracing::info!(message_id = msgid::INHIBITOR_TAKEN, what = %what, why = %why,
                            "logind block inhibitor taken");
                    } else {
                        tracing::debug!(what = %what, why = %why, "logind block inhibitor renewed");
                    }
                    self.status(what, None)
                }
                Err(e) => {
                    if !self.failed {
                        tracing::warn!(error = %e, "cannot take a logind inhibitor; retrying");
                    }
                    self.failed = true;
                    self.status(what, Some(e.to_string()))
                }
            },
            None => {
                self.held = None;
                self.failed = false;
                tracing::info!(
                    message_id = msgid::INHIBITOR_RELEASED,
                    "logind block inhibitor released"
                );
                self.status(what, None)
            }
        }
    }

    fn status(&self, what: &str, error: Option<String>) -> InhibitorStatus {
        match &self.held {
            Some(h) => InhibitorStatus {
                held: true,
                what: h.what.clone(),
                why: h.why.clone(),
                error,
                settled: true,
            },
            None => InhibitorStatus {
                held: false,
                what: what.to_owned(),
                why: String::new(),
                error,
                settled: true,
            },
        }
    }
}

/// How long a released inhibitor may stay listed before the power call
/// goes ahead anyway (and logind says why it refuses).
const LET_GO_BOUND: Duration = Duration::from_secs(2);
const LET_GO_POLL: Duration = Duration::from_millis(5);

/// Waits until logind no longer lists a block inhibitor of this process.
/// Closing our fd is the release, but logind reads that close at idle
/// priority, after bus calls already queued: a Reboot sent at once can meet
/// our own inhibitor (systemd >= 257 refuses root too). logind signals no
/// change of its inhibitors, so it is asked; each answer lets it run its
/// loop once more. False when still listed after the bound.
pub async fn until_released(login: &Login1ManagerProxy<'_>) -> bool {
    let pid = std::process::id();
    let until = tokio::time::Instant::now() + LET_GO_BOUND;
    loop {
        let ours = match bounded(login.list_inhibitors()).await {
            Ok(list) => list
                .iter()
                .any(|(_, who, _, mode, _, p)| who == WHO && mode == "block" && *p == pid),
            // Cannot tell: the power call itself will say.
            Err(_) => return true,
        };
        if !ours {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(LET_GO_POLL).await;
    }
}
