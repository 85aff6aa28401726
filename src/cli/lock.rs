//! `holdfast lock <app>/<service> -- command`: hold a service's update lock
//! while a command runs, exactly as an app would take it (exclusive create,
//! no symlink followed), and remove it afterwards, even on signals.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use tokio::signal::unix::{signal, SignalKind};

use crate::locks::fs::{file_key, open_or_create_subdir, open_root, FsError};
use crate::names::ServiceId;

/// sysexits' EX_TEMPFAIL: the lock is held, try again later.
pub const EXIT_LOCKED: u8 = 75;
const LOCK_FILE: &str = "updates.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockCmdError {
    #[error("{0} is already locked ({1} exists); try again later")]
    Held(ServiceId, PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {source}")]
    Create { path: PathBuf, source: Errno },
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
}

struct Held {
    dir: OwnedFd,
    _file: OwnedFd,
    dev: u64,
    ino: u64,
}

fn take(root_path: &Path, id: &ServiceId) -> Result<Held, LockCmdError> {
    let root = open_root(root_path)?;
    let app_path = root_path.join(id.app.as_str());
    let app = open_or_create_subdir(root.as_fd(), id.app.as_str(), &app_path)?;
    let dir_path = app_path.join(id.service.as_str());
    let dir = open_or_create_subdir(app.as_fd(), id.service.as_str(), &dir_path)?;
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let file = match openat(&dir, LOCK_FILE, flags, Mode::from_bits_truncate(0o644)) {
        Ok(f) => f,
        Err(Errno::EEXIST) => return Err(LockCmdError::Held(id.clone(), dir_path.join(LOCK_FILE))),
        Err(source) => {
            return Err(LockCmdError::Create {
                path: dir_path.join(LOCK_FILE),
                source,
            })
        }
    };
    let _ = nix::unistd::write(&file, format!("{}\n", std::process::id()).as_bytes());
    let st = fstat(&file).map_err(|source| LockCmdError::Create {
        path: dir_path.join(LOCK_FILE),
        source,
    })?;
    let (dev, ino) = file_key(&st);
    Ok(Held {
        dir,
        _file: file,
        dev,
        ino,
    })
}

fn release(h: &Held) {
    // Remove only the file we created, never one that replaced it.
    if let Ok(st) = fstatat(&h.dir, LOCK_FILE, AtFlags::AT_SYMLINK_NOFOLLOW) {
        if file_key(&st) == (h.dev, h.ino) {
            let _ = unlinkat(&h.dir, LOCK_FILE, UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Runs `argv` while holding the lock; returns the command's exit status.
pub async fn run(
    root_path: &Path,
    id: &ServiceId,
    argv: &[String],
) -> Result<ExitCode, LockCmdError> {
    let held = take(root_path, id)?;
    let result = run_child(argv).await;
    release(&held);
    result
}

async fn run_child(argv: &[String]) -> Result<ExitCode, LockCmdError> {
    let spawn_err = |source| LockCmdError::Spawn {
        cmd: argv[0].clone(),
        source,
    };
    let mut sigs = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        sigs.push((kind, signal(kind).map_err(spawn_err)?));
    }
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .map_err(spawn_err)?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    loop {
        let [(k0, s0), (k1, s1), (k2, s2)] = &mut sigs[..] else {
            unreachable!()
        };
        let forwarded = tokio::select! {
            status = child.wait() => {
                let status = status.map_err(spawn_err)?;
                use std::os::unix::process::ExitStatusExt;
                let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
            _ = s0.recv() => *k0,
            _ = s1.recv() => *k1,
            _ = s2.recv() => *k2,
        };
        // Pass the signal on and keep the lock until the command is gone.
        if let (Some(pid), Ok(sig)) = (
            pid,
            nix::sys::signal::Signal::try_from(forwarded.as_raw_value()),
        ) {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}
