//! The part of `org.freedesktop.login1.Manager` holdfast uses.

use zbus::zvariant::OwnedFd;

pub const LOGIND: &str = "org.freedesktop.login1";
/// `who` of every inhibitor holdfast takes.
pub const WHO: &str = "holdfast";
/// A logind that does not answer within this is treated as refusing, so
/// the system layer's loop never hangs on it (the dbus-daemon's own reply
/// timeout is 25 s).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A logind call bounded by [`CALL_TIMEOUT`].
pub async fn bounded<T>(
    call: impl std::future::Future<Output = zbus::Result<T>>,
) -> zbus::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(zbus::Error::Failure(format!(
            "logind did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
pub trait Login1Manager {
    fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> zbus::Result<OwnedFd>;

    fn reboot(&self, interactive: bool) -> zbus::Result<()>;

    fn power_off(&self, interactive: bool) -> zbus::Result<()>;

    #[allow(clippy::type_complexity)]
    fn list_inhibitors(&self) -> zbus::Result<Vec<(String, String, String, String, u32, u32)>>;

    #[zbus(signal)]
    fn prepare_for_shutdown(&self, start: bool) -> zbus::Result<()>;

    #[zbus(property, name = "InhibitDelayMaxUSec")]
    fn inhibit_delay_max_usec(&self) -> zbus::Result<u64>;
}
