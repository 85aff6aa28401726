//! One own lock file: created exclusively, flocked, tagged; removed only
//! while it is still the one we made.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

use super::Held;
use crate::locks::fs::{file_key, open_service_dir, read_own_tag, FsError, NOBODY, OWN_TAG};

/// Removes one own lock file if it is still ours: the one we created, or
/// for a leftover (no identity known) one that carries its token. Gone
/// already is done; true when this call removed it. A leftover we have
/// not flocked yet is flocked first: one another process has flocked is
/// its lock now, and is left to it.
pub(super) fn remove_held(
    root: BorrowedFd<'_>,
    root_path: &Path,
    h: &mut Held,
) -> Result<bool, Errno> {
    let dir = match open_service_dir(root, root_path, &h.entry.service) {
        Ok(d) => d,
        Err(e) if e.vanished() || e.skipped() => return Ok(false),
        Err(FsError::Io { source, .. }) => return Err(source),
        Err(_) => return Err(Errno::EIO),
    };
    let st = match fstatat(&dir, h.entry.file.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    let ours = if (h.dev, h.ino) == (0, 0) {
        read_own_tag(dir.as_fd(), &h.entry.file, &st)?.as_deref() == Some(h.entry.token.as_str())
    } else {
        file_key(&st) == (h.dev, h.ino)
    };
    if !ours {
        return Ok(false); // replaced by someone else's: not ours to remove
    }
    if h.flock.is_none() {
        match flock_existing(dir.as_fd(), &h.entry.file, &st) {
            Ok(f) => h.flock = Some(f),
            Err(Errno::EWOULDBLOCK) => {
                tracing::warn!(path = %format!("{}/{}", h.entry.service, h.entry.file),
                    "holdfast's leftover lock {}/{} is flocked by another process: it is that process's lock now",
                    h.entry.service, h.entry.file);
                return Ok(false);
            }
            Err(Errno::ESTALE) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    unlinkat(&dir, h.entry.file.as_str(), UnlinkatFlags::NoRemoveDir)?;
    // The file's identity: the table drops exactly this entry at once.
    (h.dev, h.ino) = file_key(&st);
    Ok(true)
}

/// Flocks an existing lock file without waiting, through a read-only,
/// no-follow open (a read-only lock root allows it). `ESTALE` when the
/// name no longer leads to the file `expected`, `EWOULDBLOCK` when another
/// process holds a flock on it.
pub(crate) fn flock_existing(
    dir: BorrowedFd<'_>,
    file: &str,
    expected: &nix::sys::stat::FileStat,
) -> Result<Flock<File>, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd: OwnedFd = openat(dir, file, flags, Mode::empty())?;
    if file_key(&nix::sys::stat::fstat(&fd)?) != file_key(expected) {
        return Err(Errno::ESTALE);
    }
    Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)
}

/// Exclusive, no-follow create relative to the service directory, `flock`ed,
/// tagged and handed to uid 65534 through the fd (never through a path).
pub(crate) fn create_own_lock(
    dir: BorrowedFd<'_>,
    file: &str,
    token: &str,
    shown: &Path,
) -> Result<(u64, u64, Flock<File>), Errno> {
    create_own_lock_then(dir, file, token, shown, || {})
}

/// [`create_own_lock`], with `created` run right after the exclusive
/// create (tests: what another process does in that moment).
fn create_own_lock_then(
    dir: BorrowedFd<'_>,
    file: &str,
    token: &str,
    shown: &Path,
    created: impl FnOnce(),
) -> Result<(u64, u64, Flock<File>), Errno> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd: OwnedFd = openat(dir, file, flags, Mode::from_bits_truncate(0o644))?;
    created();
    let undo = |e: Errno| {
        let _ = unlinkat(dir, file, UnlinkatFlags::NoRemoveDir);
        e
    };
    let mut writer = File::from(fd);
    let created = file_key(&nix::sys::stat::fstat(&writer).map_err(undo)?);
    // The flock is held through a read-only descriptor: a lock root with
    // nothing open for writing can still be remounted read-only.
    let reader = openat(
        dir,
        file,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(undo)?;
    if file_key(&nix::sys::stat::fstat(&reader).map_err(undo)?) != created {
        // Ours was removed and the name is someone else's file now: not
        // ours to remove.
        return Err(Errno::EEXIST);
    }
    // Someone's flock(1) opened our fresh file first: theirs, not ours.
    // It stays: removed, their flock would hold a file no one can see.
    let held =
        Flock::lock(File::from(reader), FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)?;
    let content = format!("{OWN_TAG}{token}\n");
    if let Err(e) = writer.write_all(content.as_bytes()) {
        return Err(undo(Errno::from_raw(
            e.raw_os_error().unwrap_or(Errno::EIO as i32),
        )));
    }
    if let Err(e) = fchown(
        &writer,
        Some(Uid::from_raw(NOBODY)),
        Some(Gid::from_raw(NOBODY)),
    ) {
        // Unprivileged runs (development) cannot chown; the tag still marks it.
        tracing::debug!(path = %shown.join(file).display(), error = %e, "cannot hand own lock to uid 65534");
    }
    drop(writer);
    Ok((created.0, created.1, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, OwnedFd) {
        let t = tempfile::tempdir().unwrap();
        let fd = nix::fcntl::open(
            t.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        (t, fd)
    }

    /// flock(1) of the app opens the name the moment holdfast made it,
    /// before holdfast's flock: the file is the app's lock now and stays.
    #[test]
    fn a_fresh_file_another_process_flocked_first_stays() {
        let (t, fd) = dir();
        let path = t.path().join("updates.lock");
        let mut theirs = None;
        let r = create_own_lock_then(fd.as_fd(), "updates.lock", "tok", t.path(), || {
            let f = File::open(&path).unwrap();
            theirs = Some(Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap());
        });
        assert_eq!(r.unwrap_err(), Errno::EWOULDBLOCK);
        assert!(path.exists(), "the app's flocked lock was removed");
        assert!(theirs.is_some());
    }

    /// Ours removed and the name made again by someone else in between:
    /// their file stays.
    #[test]
    fn a_file_put_in_place_of_ours_stays() {
        let (t, fd) = dir();
        let path = t.path().join("updates.lock");
        let r = create_own_lock_then(fd.as_fd(), "updates.lock", "tok", t.path(), || {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, b"mine").unwrap();
        });
        assert_eq!(r.unwrap_err(), Errno::EEXIST);
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
    }

    #[test]
    fn made_tagged_and_flocked() {
        let (t, fd) = dir();
        let (_, _, _held) = create_own_lock(fd.as_fd(), "updates.lock", "tok", t.path()).unwrap();
        let text = std::fs::read_to_string(t.path().join("updates.lock")).unwrap();
        assert_eq!(text, format!("{OWN_TAG}tok\n"));
        let f = File::open(t.path().join("updates.lock")).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err());
    }
}
