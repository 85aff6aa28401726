//! Update locks: the filesystem (`fs`, `holders`), the inotify watcher that
//! turns directory changes into events (`watch`), the pure table those
//! events reduce into (`state`), and holdfast's own locks (`own`).

pub mod breaker;
pub mod fs;
pub mod holders;
pub mod mounts;
pub mod own;
pub mod root;
pub mod state;
pub mod watch;

pub use state::{Change, LockEvent, LockTable};
