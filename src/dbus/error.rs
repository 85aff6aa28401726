//! How a command's failure reaches a D-Bus client: the error names of
//! `org.holdfast.Supervisor1`, and strings made safe to send.

use crate::command::CommandError;
use crate::locks::own::OwnLockError;
use crate::text::clip;

/// Errors as D-Bus error names; the only place they are mapped.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.holdfast.Supervisor1.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A lock is held by an app.
    Locked(String),
    InvalidName(String),
    NotHeld(String),
    AccessDenied(String),
    InvalidTarget(String),
    NotFound(String),
    /// The state does not allow it (an app hawkBit owns, an app that is
    /// down).
    Conflict(String),
    Failed(String),
}

/// How much of a failure's text a reply carries: a reason may quote what
/// the caller sent (a long name, a value of a document).
pub(super) const REASON_MAX: usize = 1000;

impl From<CommandError> for BusError {
    fn from(e: CommandError) -> Self {
        let msg = printable(&clip(&e.to_string(), REASON_MAX));
        match e {
            CommandError::OwnLock(OwnLockError::Contended { .. }) | CommandError::Locked { .. } => {
                BusError::Locked(msg)
            }
            CommandError::OwnLock(OwnLockError::NotHeld(_)) => BusError::NotHeld(msg),
            CommandError::InvalidName(_) => BusError::InvalidName(msg),
            CommandError::InvalidTarget(m) => {
                BusError::InvalidTarget(printable(&clip(&m, REASON_MAX)))
            }
            CommandError::NotFound(_) => BusError::NotFound(msg),
            CommandError::Conflict(_) => BusError::Conflict(msg),
            _ => BusError::Failed(msg),
        }
    }
}

/// D-Bus strings may not hold NUL (a reply with one breaks the connection);
/// control characters are shown escaped.
pub(super) fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '\n' | '\t' => vec![c],
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect()
}
