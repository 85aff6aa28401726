//! holdfast: a device supervisor that honours application update locks.
//!
//! Data flows one way: lock directory events (`locks::watch`) -> lock table
//! (`locks::state`, a pure reducer) -> subscribers (`inhibit`). Config
//! sources (`config`) -> validated settings. D-Bus and CLI -> one
//! `command::Command` handled by the daemon's core task (`daemon`).

pub mod api;
pub mod arbiter;
pub mod bootcfg;
pub mod cli;
pub mod command;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod devconfig;
pub mod engine;
pub mod fsutil;
pub mod inhibit;
pub mod inotify;
pub mod locks;
pub mod logging;
pub mod names;
pub mod power;
pub mod status;
pub mod target;
pub mod update;
