//! holdfast: a device supervisor that honours application update locks.
//!
//! Data flows one way (docs/architecture.md): lock directory events
//! (`locks::watch`) -> the lock table (`locks::state`, a pure reducer) in
//! the core's one published `model::Snapshot` -> one `gate` answering
//! every "may we act?" -> the logind layer (`system`) and the per-app
//! update machines (`update`) -> the planner -> the executor, the only
//! engine caller. D-Bus, HTTP and CLI are adapters over one
//! `command::Command`.

pub mod api;
pub mod bootcfg;
pub mod cli;
pub mod command;
pub mod compose;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dbus;
pub mod devconfig;
pub mod device_config;
pub mod engine;
pub mod fleet;
pub mod fsutil;
pub mod gate;
pub mod inotify;
pub mod keeper;
pub mod liveness;
pub mod locks;
pub mod logging;
pub mod memory;
pub mod model;
pub mod names;
pub mod power;
pub mod status;
pub mod swu;
pub mod system;
pub mod target;
pub mod text;
pub mod timer;
pub mod update;
pub mod window;
