//! Reading the lock directories without ever following a symlink: every
//! path is opened one component at a time relative to an opened directory,
//! with `O_NOFOLLOW`.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};

use super::state::{EntryKind, LockEntry, LOCK_FILE_NAMES};
use crate::names::{NameError, ServiceId};

/// Content prefix of holdfast's own lock files.
pub const OWN_TAG: &str = "holdfast-own-lock ";
/// uid holdfast's own locks belong to (as balena's supervisor does).
pub const NOBODY: u32 = 65534;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{path} is a symlink; lock directories are never followed")]
    Symlink { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: bad name: {source}")]
    BadName {
        path: PathBuf,
        #[source]
        source: NameError,
    },
}

impl FsError {
    /// The entry is not there (any more): an answer, not a failure to look.
    pub fn vanished(&self) -> bool {
        matches!(
            self,
            FsError::Io {
                source: Errno::ENOENT,
                ..
            }
        )
    }

    /// Not a usable directory by design (a symlink, a file, a bad name):
    /// reported and skipped, never a failure to look.
    pub fn skipped(&self) -> bool {
        matches!(
            self,
            FsError::Symlink { .. } | FsError::NotADirectory { .. } | FsError::BadName { .. }
        )
    }
}

fn io_err(path: &Path, source: Errno) -> FsError {
    FsError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens `name` inside `dir` as a directory, refusing symlinks and
/// non-directories with a specific error.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<OwnedFd, FsError> {
    match openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => Err(FsError::Symlink {
            path: shown.to_owned(),
        }),
        Err(Errno::ENOTDIR) => {
            // O_NOFOLLOW on a symlink to a directory may also say ENOTDIR.
            match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if file_type(&st) == SFlag::S_IFLNK => Err(FsError::Symlink {
                    path: shown.to_owned(),
                }),
                _ => Err(FsError::NotADirectory {
                    path: shown.to_owned(),
                }),
            }
        }
        Err(e) => Err(io_err(shown, e)),
    }
}

/// Opens `name` inside `dir`, creating it (mode 0755) when missing.
pub fn open_or_create_subdir(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &Path,
) -> Result<OwnedFd, FsError> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => open_subdir(dir, name, shown),
        Err(e) => Err(io_err(shown, e)),
    }
}

/// Opens the lock root, creating it and its parents when missing. The last
/// component must be a real directory, not a symlink.
pub fn open_root(path: &Path) -> Result<OwnedFd, FsError> {
    std::fs::create_dir_all(path).map_err(|e| io_err(path, errno_of(&e)))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or(OsStr::new("."));
    let parent_fd =
        nix::fcntl::open(parent, DIR_FLAGS, Mode::empty()).map_err(|e| io_err(parent, e))?;
    match openat(&parent_fd, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => Err(FsError::Symlink {
            path: path.to_owned(),
        }),
        Err(Errno::ENOTDIR) => Err(FsError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(e) => Err(io_err(path, e)),
    }
}

/// (device, inode) as u64 on every target: 32-bit ARM has a 32-bit ino_t.
#[allow(clippy::useless_conversion)]
pub fn file_key(st: &FileStat) -> (u64, u64) {
    (st.st_dev.into(), st.st_ino.into())
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// A directory entry that is not a usable lock directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Names of the subdirectories of `dir` that can be app or service
/// directories. Symlinks, files and badly named entries are returned as
/// `Skipped` so the caller can report them.
pub fn list_subdirs(
    dir: BorrowedFd<'_>,
    shown: &Path,
) -> Result<(Vec<String>, Vec<Skipped>), FsError> {
    let mut listing =
        Dir::openat(dir, ".", DIR_FLAGS, Mode::empty()).map_err(|e| io_err(shown, e))?;
    let mut names = Vec::new();
    let mut skipped = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| io_err(shown, e))?;
        let raw: &CStr = entry.file_name();
        let bytes = raw.to_bytes();
        // holdfast's mark on the lock root is no app's directory.
        if bytes == b"." || bytes == b".." || bytes == super::root::MARKER.as_bytes() {
            continue;
        }
        let path = shown.join(OsStr::from_bytes(bytes));
        let ty = match entry.file_type() {
            Some(t) => t,
            None => match fstatat(dir, raw, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => sflag_to_type(file_type(&st)),
                Err(Errno::ENOENT) => continue, // vanished meanwhile
                Err(e) => return Err(io_err(&path, e)),
            },
        };
        let name = match std::str::from_utf8(bytes) {
            Ok(n) => n.to_owned(),
            Err(_) => {
                skipped.push(Skipped {
                    path,
                    reason: "name is not UTF-8".into(),
                });
                continue;
            }
        };
        match ty {
            Type::Directory => names.push(name),
            Type::Symlink => skipped.push(Skipped {
                path,
                reason: "is a symlink (never followed)".into(),
            }),
            _ => skipped.push(Skipped {
                path,
                reason: "is not a directory".into(),
            }),
        }
    }
    names.sort();
    Ok((names, skipped))
}

fn sflag_to_type(f: SFlag) -> Type {
    match f {
        SFlag::S_IFDIR => Type::Directory,
        SFlag::S_IFLNK => Type::Symlink,
        SFlag::S_IFREG => Type::File,
        _ => Type::Fifo,
    }
}

fn entry_kind(st: &FileStat) -> EntryKind {
    match file_type(st) {
        SFlag::S_IFREG => EntryKind::File,
        SFlag::S_IFDIR => EntryKind::Dir,
        SFlag::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

fn mtime_usec(st: &FileStat) -> u64 {
    (st.st_mtime.max(0) as u64) * 1_000_000 + (st.st_mtime_nsec.max(0) as u64) / 1_000
}

/// Reads the lock paths in an opened service directory. Only "no such
/// entry" means absent; any other failure is an error, never "unlocked".
pub fn read_lock_entries(service_dir: BorrowedFd<'_>) -> Result<Vec<LockEntry>, Errno> {
    let mut found = Vec::new();
    for name in LOCK_FILE_NAMES {
        let st = match fstatat(service_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let kind = entry_kind(&st);
        // Whether the token is one holdfast recorded is the table's call.
        // A tag that cannot be read makes it an app's lock: it binds.
        let token = match kind {
            EntryKind::File => read_own_tag(service_dir, name, &st).unwrap_or(None),
            _ => None,
        };
        let (dev, ino) = file_key(&st);
        found.push(LockEntry {
            name: name.to_owned(),
            kind,
            uid: st.st_uid,
            mtime_usec: mtime_usec(&st),
            dev,
            ino,
            token,
            own: false,
        });
    }
    Ok(found)
}

/// (dev, ino) of the lock paths in a service directory: stat only, never an
/// open, so it cannot cause inotify events of its own.
pub fn lock_file_keys(service_dir: BorrowedFd<'_>) -> Vec<(u64, u64)> {
    LOCK_FILE_NAMES
        .iter()
        .filter_map(|name| fstatat(service_dir, *name, AtFlags::AT_SYMLINK_NOFOLLOW).ok())
        .map(|st| file_key(&st))
        .collect()
}

/// The token in one of holdfast's own lock files, if `name` is one; an
/// error when the file could not be read (that is not "no tag").
pub fn read_own_tag(
    dir: BorrowedFd<'_>,
    name: &str,
    expected: &FileStat,
) -> Result<Option<String>, Errno> {
    if expected.st_size > 256 {
        return Ok(None);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        // Gone or replaced by something we do not open: not a tag.
        Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(&fd)?;
    if file_key(&st) != file_key(expected) {
        return Ok(None);
    }
    let mut buf = [0u8; 256];
    let n = nix::unistd::read(&fd, &mut buf)?;
    let token = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| text.strip_prefix(OWN_TAG))
        .map(|t| t.trim_end().to_owned());
    Ok(token)
}

/// Opens `<root>/<app>/<service>` without following symlinks.
pub fn open_service_dir(
    root: BorrowedFd<'_>,
    root_path: &Path,
    id: &ServiceId,
) -> Result<OwnedFd, FsError> {
    let app_path = root_path.join(id.app.as_str());
    let app = open_subdir(root, id.app.as_str(), &app_path)?;
    open_subdir(
        app.as_fd(),
        id.service.as_str(),
        &app_path.join(id.service.as_str()),
    )
}

/// One service directory found by a scan.
pub type ServiceScan = (ServiceId, Vec<LockEntry>);

/// Errors of std I/O as an errno, for uniform reporting.
pub fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}
