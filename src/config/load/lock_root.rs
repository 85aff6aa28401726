//! The lock root checked once every file is merged (`locks::root`), with
//! the file and line that set it.

use std::path::Path;

use super::{ConfigError, Merge};

/// The lock root must be a directory of holdfast's own (`locks::root`):
/// refused here, at start and on reload, with the file and line that set it.
pub(super) fn check(main: &Path, merged: &Merge) -> Result<(), ConfigError> {
    let s = &merged.settings;
    let mut own: Vec<(&str, &Path)> = vec![
        ("state_dir", &s.state_dir),
        ("config_json", &s.config_json),
        ("os_release", &s.os_release),
        ("target.file", &s.target_file),
        ("boot.config_txt", &s.boot_config_txt),
        ("api.socket", &s.api_socket),
        ("engine.registry_auth", &s.registry_auth),
        ("config file", main),
    ];
    own.extend(s.config_dirs.iter().map(|d| ("config_dirs", d.as_path())));
    own.extend(
        s.engine_socket
            .iter()
            .map(|e| ("engine.socket", e.as_path())),
    );
    crate::locks::root::check(&s.lock_root, &own)
        .map(drop)
        .map_err(|reason| {
            let (file, line) = merged
                .lock_root_at
                .clone()
                .map_or((main.to_owned(), None), |(f, l)| (f, Some(l)));
            ConfigError {
                file,
                line,
                key: Some("lock_root".into()),
                reason: format!(
                    "{}: {reason}",
                    crate::text::shown(&s.lock_root.display().to_string())
                ),
            }
        })
}
