//! Durable file writes and careful reads of files other people can put
//! anything at.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `data`: temp file in the same directory, fsync,
/// rename over the target, fsync of the directory, so a crash leaves either
/// the old or the new content, never a torn file. The file ends up 0600,
/// also when it was looser before: some of these files hold secrets.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    fs::create_dir_all(dir)?;
    // tempfile creates it 0600 at open(2) (no chmod, which vfat refuses);
    // the name tells whose leftover it is after a crash.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Lower-case hex of `bytes` (digests, ids, tokens).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 128 random bits as hex, from the kernel.
pub fn random_token() -> io::Result<String> {
    let mut buf = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex(&buf))
}

/// Why [`read_regular`] did not give a file's content.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path leads to a FIFO, socket, device or directory.
    NotRegular { path: PathBuf, kind: &'static str },
    /// The file holds more than `max` bytes.
    TooLarge { path: PathBuf, max: u64 },
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    pub fn path(&self) -> &Path {
        match self {
            Self::NotRegular { path, .. } | Self::TooLarge { path, .. } | Self::Io { path, .. } => {
                path
            }
        }
    }

    /// The message without the path, for errors that name the file
    /// themselves.
    pub fn reason(&self) -> String {
        match self {
            Self::NotRegular { kind, .. } => format!("is {kind}, not a regular file"),
            Self::TooLarge { max, .. } => format!("is larger than {max} bytes"),
            Self::Io { source, .. } => format!("cannot read: {source}"),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.reason())
    }
}

fn kind_of(t: fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file")
    }
}

/// Reads a regular file of at most `max` bytes, following symlinks.
/// `Ok(None)` means the file does not exist, nothing else: any other
/// failure is an error naming the path.
pub fn read_regular(path: &Path, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let not_regular = |kind| ReadError::NotRegular {
        path: path.to_owned(),
        kind,
    };
    // Look before opening: opening some devices acts (a watchdog arms).
    match fs::metadata(path) {
        Ok(m) => {
            if let Some(kind) = kind_of(m.file_type()) {
                return Err(not_regular(kind));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    }
    // The path may have changed since; what the opened fd is counts.
    // O_NONBLOCK so a FIFO swapped in cannot block the open; O_NOCTTY so a
    // terminal never becomes ours (std adds O_CLOEXEC).
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(not_regular(kind));
    }
    let mut buf = Vec::with_capacity(meta.len().min(max) as usize + 1);
    // One byte past the cap tells a file of exactly `max` from a bigger
    // one, whatever its size said (it may grow while we read).
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::Duration;

    /// Runs `read_regular` off the test thread so a blocking open fails
    /// the test instead of hanging it.
    fn read_soon(path: &Path, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || tx.send(read_regular(&path, max)));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("read_regular returns at once")
    }

    #[test]
    fn regular_file_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"abc\xff").unwrap();
        assert_eq!(read_regular(&p, 4).unwrap().unwrap(), b"abc\xff");
        assert!(read_regular(&dir.path().join("absent"), 4)
            .unwrap()
            .is_none());
        let link = dir.path().join("link");
        symlink(&p, &link).unwrap();
        assert_eq!(read_regular(&link, 4).unwrap().unwrap(), b"abc\xff");
    }

    #[test]
    fn too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"12345").unwrap();
        let err = read_regular(&p, 4).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { max: 4, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: is larger than 4 bytes", p.display())
        );
    }

    #[test]
    fn fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_soon(&p, 1024).unwrap_err();
        assert!(
            matches!(err, ReadError::NotRegular { kind: "a FIFO", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("is a FIFO, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let err = read_soon(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero.toml");
        symlink("/dev/zero", &link).unwrap();
        let err = read_soon(&link, 1024).unwrap_err();
        assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
        assert_eq!(err.path(), link);
        let err = read_regular(dir.path(), 1024).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn atomic_write_leaves_a_0600_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        atomic_write(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }
}
