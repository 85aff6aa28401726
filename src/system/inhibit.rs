//! The logind `block` inhibitor: held exactly while the gate says so. The
//! held fd survives a reconnect (logind tracks the fd, not our bus
//! connection); a failed `Inhibit` is reported and retried by the caller.

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
            },
            None => InhibitorStatus {
                held: false,
                what: what.to_owned(),
                why: String::new(),
                error,
            },
        }
    }
}
