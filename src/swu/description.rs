//! `sw-description`, the manifest at the head of a `.swu`.

pub mod libconfig;
