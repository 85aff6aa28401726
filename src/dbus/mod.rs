//! The D-Bus adapter: `org.holdfast.Supervisor1` on the system bus. Methods
//! turn into [`Command`]s; properties read the published views. Nothing
//! else lives here: logind belongs to the system layer. The contract is
//! `docs/org.holdfast.Supervisor1.xml`.

use zbus::{fdo, Connection};

use crate::command::{Command, Handle, PowerAction};

mod document;
mod error;
mod interface;
mod proxy;
mod serve;

pub use error::BusError;
pub use proxy::Supervisor1Proxy;
pub use serve::run;

pub const BUS_NAME: &str = "org.holdfast.Supervisor1";
pub const OBJECT_PATH: &str = "/org/holdfast/Supervisor1";

pub struct Supervisor {
    handle: Handle,
    lock_root: String,
}

impl Supervisor {
    async fn power(
        &self,
        action: PowerAction,
        force: bool,
        conn: &Connection,
        hdr: &zbus::message::Header<'_>,
    ) -> Result<(), BusError> {
        let who = require_root(conn, hdr).await?;
        Ok(self
            .handle
            .request(|reply| Command::Power {
                action,
                force,
                who,
                reply,
            })
            .await??)
    }
}

/// Only root may call methods (the bus policy says so too; this holds when
/// a policy is missing).
/// Answers who the caller is, for the log of forced actions.
async fn require_root(
    conn: &Connection,
    hdr: &zbus::message::Header<'_>,
) -> Result<String, BusError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BusError::AccessDenied("no sender".into()))?;
    let uid = fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| BusError::AccessDenied(e.to_string()))?;
    if uid == 0 {
        Ok(format!("D-Bus client {sender} (uid 0)"))
    } else {
        Err(BusError::AccessDenied(format!(
            "uid {uid} may not call holdfast methods; only root may"
        )))
    }
}
