//! The API key under the state dir: made once when there is none, then only
//! ever read. Apps hold it (BALENA_SUPERVISOR_API_KEY), so a key file that
//! cannot be read is an error to fix, never a reason to make a new key.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

/// Keys we make are 32 hex digits; a longer file is not a key.
const MAX_KEY_LEN: usize = 256;

/// Shorter than this is too easy to guess, or a key cut short.
const MIN_KEY_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the HTTP API key {}: {source}; fix it, or remove it to have a new key made", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the HTTP API key {} is {what}, not a regular file; remove it to have a new key made", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("the HTTP API key {} belongs to uid {owner}, not to holdfastd (uid {ours}); check who put it there, then chown or remove it", path.display())]
    Owner {
        path: PathBuf,
        owner: u32,
        ours: u32,
    },
    #[error("the HTTP API key {} is {why}; fix it (at least {MIN_KEY_LEN} of A-Z a-z 0-9 . _ ~ -), or remove it to have a new key made", path.display())]
    Damaged { path: PathBuf, why: &'static str },
    #[error("cannot create the HTTP API key {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The API key: `<state_dir>/api-key` (0600), made when there is no such
/// file. An existing file is never replaced.
pub fn load_or_create_key(state_dir: &Path) -> Result<String, KeyError> {
    let path = state_dir.join("api-key");
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    match create_key(&path)? {
        Some(key) => Ok(key),
        // Made by someone else since we looked: theirs counts.
        None => read_key(&path)?.ok_or_else(|| KeyError::Read {
            source: io::ErrorKind::NotFound.into(),
            path,
        }),
    }
}

/// The key, or None when there is no file at all.
fn read_key(path: &Path) -> Result<Option<String>, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    // Never through a symlink; O_NONBLOCK so a FIFO put there cannot hang us.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(KeyError::NotAFile {
                path: path.to_owned(),
                what: "a symbolic link",
            })
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
            what: if meta.is_dir() {
                "a directory"
            } else {
                "a special file"
            },
        });
    }
    let ours = nix::unistd::geteuid().as_raw();
    if meta.uid() != ours {
        return Err(KeyError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            ours,
        });
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the HTTP API key {} was readable by others; set to 0600 (others may know it)", path.display());
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot set the HTTP API key to 0600");
        }
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_KEY_LEN as u64 + 2)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    check(&bytes)
        .map(|k| Some(k.to_owned()))
        .map_err(|why| KeyError::Damaged {
            path: path.to_owned(),
            why,
        })
}

/// A key as written by hand may end in a newline; otherwise it is used
/// as it is, in URLs (`?apikey=`) and container environments.
fn check(bytes: &[u8]) -> Result<&str, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text")?;
    let key = text.trim();
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "._~-".contains(c);
    if key.is_empty() {
        Err("empty")
    } else if key.len() > MAX_KEY_LEN {
        Err("too long")
    } else if !key.chars().all(unreserved) {
        Err("not a key: it has characters other than A-Z a-z 0-9 . _ ~ -")
    } else if key.len() < MIN_KEY_LEN {
        Err("too short")
    } else {
        Ok(key)
    }
}

/// Writes a new key beside the path and links it into place only if the
/// path is still free. None: someone else made one meanwhile.
fn create_key(path: &Path) -> Result<Option<String>, KeyError> {
    let create_err = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(create_err)?;
    let key = crate::fsutil::random_token().map_err(create_err)?;
    // Made 0600 by tempfile.
    let mut tmp = tempfile::Builder::new()
        .prefix(".api-key.")
        .tempfile_in(dir)
        .map_err(create_err)?;
    tmp.write_all(key.as_bytes()).map_err(create_err)?;
    tmp.as_file().sync_all().map_err(create_err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(create_err(e.error)),
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(create_err)?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let k = load_or_create_key(&state).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(mode(&state.join("api-key")), 0o600);
        assert_eq!(load_or_create_key(&state).unwrap(), k);
        // Only the key is left in the directory.
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
    }

    #[test]
    fn a_hand_written_key_is_used_and_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api-key");
        std::fs::write(&p, "my-own-key_0123456789\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            load_or_create_key(dir.path()).unwrap(),
            "my-own-key_0123456789"
        );
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_bad_key_file_is_an_error_and_is_left_alone() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b" \n", "empty"),
            (b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "not a key"),
            (b"\xff\xfe0123456789abcdef", "not text"),
            (b"0123", "too short"),
            (b"0123456789abcdef&x=1", "not a key"),
        ];
        for (content, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("api-key");
            std::fs::write(&p, content).unwrap();
            let e = load_or_create_key(dir.path()).unwrap_err();
            assert!(matches!(e, KeyError::Damaged { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(why) && msg.contains("api-key"), "{msg}");
            assert_eq!(&std::fs::read(&p).unwrap(), content);
        }
    }

    #[test]
    fn links_and_other_files_are_not_followed_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api-key");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "0123456789abcdef0123").unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let e = load_or_create_key(dir.path()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = load_or_create_key(dir.path()).unwrap_err();
        assert!(e.to_string().contains("special file"), "{e}");
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let e = load_or_create_key(dir.path()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn a_read_error_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        // The "state dir" is a file: ENOTDIR, not "no key yet".
        let state = dir.path().join("state");
        std::fs::write(&state, "a file").unwrap();
        let e = load_or_create_key(&state).unwrap_err();
        assert!(matches!(e, KeyError::Read { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "a file");
    }

    #[test]
    fn a_key_someone_else_owns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api-key");
        std::fs::write(&p, "0123456789abcdef0123").unwrap();
        let other = nix::unistd::geteuid().as_raw() + 1;
        if std::os::unix::fs::chown(&p, Some(other), None).is_err() {
            return; // only root can give a file away
        }
        let e = load_or_create_key(dir.path()).unwrap_err();
        assert!(matches!(e, KeyError::Owner { .. }), "{e}");
    }
}
