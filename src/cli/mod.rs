//! The `holdfast` CLI: a thin client of holdfastd's D-Bus interface, plus
//! `lock` (which works like any app's lock client, daemon or not) and
//! `config show` (which reads the same files holdfastd reads).

pub mod deadline;
pub mod lock;
pub mod render;
