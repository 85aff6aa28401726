//! The generated client side of `org.holdfast.Supervisor1`, used by the CLI
//! and the tests.

use std::collections::HashMap;

use crate::command::LockInfo;

#[zbus::proxy(
    interface = "org.holdfast.Supervisor1",
    default_service = "org.holdfast.Supervisor1",
    default_path = "/org/holdfast/Supervisor1"
)]
pub trait Supervisor1 {
    fn list_locks(&self) -> zbus::Result<Vec<LockInfo>>;
    fn take_locks(&self, app: &str, services: &[&str]) -> zbus::Result<Vec<String>>;
    fn release_locks(&self, app: &str) -> zbus::Result<u32>;
    fn reboot(&self, force: bool) -> zbus::Result<()>;
    fn shutdown(&self, force: bool) -> zbus::Result<()>;
    fn set_target(&self, json: &str) -> zbus::Result<String>;
    fn set_app_target(&self, app: &str, json: &str) -> zbus::Result<String>;
    fn update(&self, force: bool) -> zbus::Result<()>;
    fn restart_app(&self, app: &str, force: bool) -> zbus::Result<u32>;
    fn prune_volumes(&self, app: &str, force: bool) -> zbus::Result<Vec<String>>;
    fn rotate_api_key(&self, app: &str) -> zbus::Result<()>;
    fn request_reboot(&self, not_after_usec: u64) -> zbus::Result<String>;
    fn cancel_reboot(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn lock_override(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn lock_override_source(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn pending_reboot(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn maintenance_window(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn apps(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn engine(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn fleet(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn orphaned_volumes(&self) -> zbus::Result<HashMap<String, Vec<String>>>;
    #[zbus(property)]
    fn config_in_force(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn locked(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn locks(&self) -> zbus::Result<Vec<LockInfo>>;
    #[zbus(property)]
    fn inhibitor_held(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn inhibitor_why(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn lock_root(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unreadable_locks(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(signal, name = "LocksChanged")]
    fn lock_table_changed(&self, locks: Vec<LockInfo>) -> zbus::Result<()>;
}
