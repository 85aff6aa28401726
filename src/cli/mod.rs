//! The `holdfast` CLI: a thin client of holdfastd's D-Bus interface, plus
//! `lock` (which works like any app's lock client, daemon or not),
//! `config show` (which reads the same files holdfastd reads) and
//! `convert` (compose files, converted here for `apply` too).

pub mod apply;
pub mod args;
pub mod deadline;
pub mod lock;
pub mod render;

use crate::dbus::Supervisor1Proxy;

/// sysexits.h EX_UNAVAILABLE: holdfastd cannot be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;

const BUS_NAME: &str = "org.holdfast.Supervisor1";
/// What zbus connects to when DBUS_SYSTEM_BUS_ADDRESS is not set.
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// A failed exchange with holdfastd.
#[derive(Debug)]
pub enum BusFailure {
    /// The bus cannot be reached, or holdfastd is not on it: the reason.
    Unreachable(String),
    /// holdfastd (or the bus) answered with an error.
    Call(zbus::Error),
}

impl From<zbus::Error> for BusFailure {
    fn from(e: zbus::Error) -> Self {
        match unreachable_reason(&e) {
            Some(reason) => Self::Unreachable(reason),
            None => Self::Call(e),
        }
    }
}

impl From<zbus::fdo::Error> for BusFailure {
    fn from(e: zbus::fdo::Error) -> Self {
        zbus::Error::from(e).into()
    }
}

fn not_on_bus() -> String {
    format!("no {BUS_NAME} on the bus (holdfastd is not running or not connected to this bus)")
}

/// The errors that mean "nobody to talk to" rather than an answer: the
/// daemon may also vanish between our connect and a call.
fn unreachable_reason(e: &zbus::Error) -> Option<String> {
    let gone = |name: &str| {
        name == "org.freedesktop.DBus.Error.ServiceUnknown"
            || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
    };
    match e {
        zbus::Error::InputOutput(io) => Some(format!("bus connection failed: {io}")),
        zbus::Error::MethodError(name, _, _) if gone(name.as_str()) => Some(not_on_bus()),
        zbus::Error::FDO(f)
            if matches!(
                **f,
                zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
            ) =>
        {
            Some(not_on_bus())
        }
        _ => None,
    }
}

/// The bus named the way zbus picks it: `env` is DBUS_SYSTEM_BUS_ADDRESS.
pub fn describe_bus(env: Option<&str>) -> String {
    match env {
        Some(a) => format!("{a} (from DBUS_SYSTEM_BUS_ADDRESS)"),
        None => format!("{DEFAULT_SYSTEM_BUS} (the default system bus)"),
    }
}

/// The message for [`BusFailure::Unreachable`]: where we looked, why it
/// failed and what to check, one line each.
pub fn unreachable_message(reason: &str) -> String {
    let env = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok();
    unreachable_text(env.as_deref(), reason)
}

fn unreachable_text(env: Option<&str>, reason: &str) -> String {
    format!(
        "holdfastd is not reachable on the system bus {}\n\
         reason: {reason}\n\
         check: systemctl status holdfast; DBUS_SYSTEM_BUS_ADDRESS, if set, must name the system bus holdfastd is on",
        describe_bus(env)
    )
}

/// Connects to the system bus and makes sure holdfastd is on it, so that
/// every command fails the same way before doing anything.
pub async fn connect() -> Result<Supervisor1Proxy<'static>, BusFailure> {
    let conn = zbus::Connection::system()
        .await
        .map_err(|e| BusFailure::Unreachable(format!("cannot connect to the bus: {e}")))?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let name = zbus::names::BusName::try_from(BUS_NAME).map_err(zbus::Error::from)?;
    if !dbus.name_has_owner(name).await? {
        return Err(BusFailure::Unreachable(not_on_bus()));
    }
    Ok(Supervisor1Proxy::new(&conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_names_the_bus_the_reason_and_what_to_check() {
        let m = unreachable_text(Some("unix:path=/tmp/x"), "cannot connect to the bus: gone");
        assert!(
            m.contains(
                "not reachable on the system bus unix:path=/tmp/x (from DBUS_SYSTEM_BUS_ADDRESS)"
            ),
            "{m}"
        );
        assert!(m.contains("reason: cannot connect to the bus: gone"), "{m}");
        assert!(m.contains("systemctl status holdfast"), "{m}");
        let m = unreachable_text(None, "r");
        assert!(
            m.contains(&format!("{DEFAULT_SYSTEM_BUS} (the default system bus)")),
            "{m}"
        );
    }

    #[test]
    fn absent_daemon_and_broken_bus_are_unreachable() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(matches!(
            BusFailure::from(zbus::Error::InputOutput(io.into())),
            BusFailure::Unreachable(_)
        ));
        let fdo = zbus::fdo::Error::ServiceUnknown("x".into());
        assert!(matches!(
            BusFailure::from(zbus::Error::FDO(Box::new(fdo))),
            BusFailure::Unreachable(_)
        ));
        let denied = zbus::fdo::Error::AccessDenied("x".into());
        assert!(matches!(
            BusFailure::from(zbus::Error::FDO(Box::new(denied))),
            BusFailure::Call(_)
        ));
    }
}
