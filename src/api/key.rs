//! The API key under the state dir.

use std::path::Path;

/// The API key: kept under the state dir (0600), made at first start.
pub fn load_or_create_key(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join("api-key");
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => Ok(k.trim().to_owned()),
        _ => {
            let key = crate::fsutil::random_token()?;
            crate::fsutil::atomic_write(&path, key.as_bytes())?;
            Ok(key)
        }
    }
}
