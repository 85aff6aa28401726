//! Whether a directory may be the lock root. holdfast bind-mounts
//! `<lock_root>/<app>/<service>` read-write into app containers, so the
//! lock root must be a directory of holdfast's own: one it made or marked
//! (`.holdfast-lock-root` in it), an empty or missing one, the default
//! `/run/holdfast/locks` (older holdfasts left it populated, unmarked), or
//! one laid out like a lock tree and nothing else. Never `/`, a system
//! directory, or a directory holding (or held by) holdfast's own files.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The file that marks a lock root as holdfast's. Its name starts with a
/// dot, so it can never be an app's directory.
pub const MARKER: &str = ".holdfast-lock-root";

/// Where older holdfasts kept their locks unmarked: accepted as it is.
pub const DEFAULT: &str = "/run/holdfast/locks";

/// Never the lock root itself: the file system's top and the directories
/// every system has (where `<dir>/<app>/<service>` may be anything).
const SYSTEM_DIRS: [&str; 36] = [
    "/",
    "/bin",
    "/boot",
    "/data",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/mnt/boot",
    "/mnt/data",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/run/lock",
    "/run/systemd",
    "/run/user",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/lock",
    "/var/log",
    "/var/run",
    "/var/spool",
    "/var/tmp",
    "/var/volatile",
];

/// Nor anywhere inside these: system files, kernel interfaces, the engine's
/// own data.
const SYSTEM_TREES: [&str; 14] = [
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/balena-engine",
    "/var/lib/docker",
];

/// At most this many entries (top three levels) are looked at to tell
/// whether an unmarked directory is laid out like a lock tree: a device
/// with thousands of apps fits, a home directory does not (one stat each,
/// and only once: the lock root is marked after).
const MAX_LOOKED_AT: usize = 65536;

/// Why a lock root was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Not there yet: holdfast makes it (and marks it).
    Missing,
    /// holdfast's mark is in it.
    Marked,
    Empty,
    /// The default path, as an older holdfast left it.
    Default,
    /// Unmarked, but laid out like a lock tree of an older holdfast:
    /// app and service directories with locks (and empty files) in them.
    LaidOut,
}

/// `path` with `.` components and repeated or trailing slashes gone (`..`
/// is refused by the config loader before this is asked).
pub(crate) fn lexical(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// `path` with the symlinks of its longest existing prefix resolved:
/// `/var/run/x` names `/run/x` where `/var/run` links to `/run`.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut p = lexical(path);
    loop {
        if let Ok(real) = fs::canonicalize(&p) {
            return rest.iter().rev().fold(real, |acc, c| acc.join(c));
        }
        match (p.file_name().map(ToOwned::to_owned), p.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                p = parent.to_owned();
            }
            _ => return lexical(path),
        }
    }
}

/// The path rules alone (no file system look): `None` when `root` may be
/// a lock root as far as its name goes. `own` are holdfast's own files and
/// directories, by what they are (`state_dir`, `config_json`, ...).
pub fn refused_path(root: &Path, own: &[(&str, &Path)]) -> Option<String> {
    let root = lexical(root);
    let why_own = "holdfast bind-mounts <lock_root>/<app>/<service> read-write into app containers";
    if let Some(sys) = SYSTEM_DIRS.iter().find(|d| root == Path::new(d)) {
        return Some(format!(
            "{sys} is a system directory; {why_own}, so the lock root must be a directory of its own (the default is {DEFAULT})"
        ));
    }
    if let Some(tree) = SYSTEM_TREES.iter().find(|t| root.starts_with(t)) {
        return Some(format!(
            "{} is inside {tree}, which is the system's (or the engine's); {why_own}: use a directory of its own such as {DEFAULT}",
            root.display()
        ));
    }
    for (what, p) in own {
        let p = lexical(p);
        if p == root {
            return Some(format!(
                "it is holdfast's {what}; the lock root must be a directory of its own"
            ));
        }
        if p.starts_with(&root) {
            return Some(format!(
                "holdfast's {what} {} is inside it; {why_own}, so nothing of holdfast's may be below the lock root",
                p.display()
            ));
        }
        if *what == "state_dir" && root.starts_with(&p) {
            return Some(format!(
                "it is inside holdfast's state_dir {}; keep the lock root out of the state directory",
                p.display()
            ));
        }
    }
    None
}

/// Whether `root` may be the lock root: the path rules, then (through any
/// symlinks in its parents) what is there. Nothing is written. Every
/// refusal says why and what to do.
pub fn check(root: &Path, own: &[(&str, &Path)]) -> Result<Accepted, String> {
    if let Some(why) = refused_path(root, own) {
        return Err(why);
    }
    // The same rules on the path as the file system resolves it: a
    // symlinked parent must not lead into a system directory either.
    let real = resolved(root);
    let own_real: Vec<(&str, PathBuf)> = own.iter().map(|(w, p)| (*w, resolved(p))).collect();
    let own_real: Vec<(&str, &Path)> = own_real.iter().map(|(w, p)| (*w, p.as_path())).collect();
    if let Some(why) = refused_path(&real, &own_real) {
        return Err(format!("it resolves to {}: {why}", real.display()));
    }
    let meta = match fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Accepted::Missing),
        Err(e) => return Err(format!("cannot look at it: {e}")),
    };
    if meta.file_type().is_symlink() {
        return Err(
            "it is a symlink; holdfast never follows one to its lock root: name the directory itself"
                .into(),
        );
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    match fs::symlink_metadata(root.join(MARKER)) {
        Ok(m) if m.file_type().is_file() => return Ok(Accepted::Marked),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot look for {MARKER} in it: {e}")),
    }
    if lexical(root) == Path::new(DEFAULT) {
        return Ok(Accepted::Default);
    }
    let mut budget = Budget {
        looked: 0,
        max: MAX_LOOKED_AT,
    };
    let first = look_at(root, 1, &mut budget)
        .map_err(|e| format!("cannot read it: {e}"))?
        .map(|why| format!(
            "it is not empty and not holdfast's (no {MARKER} in it): {why}; holdfast bind-mounts <lock_root>/<app>/<service> read-write into app containers, so use an empty or new directory (holdfast marks it) or {DEFAULT}; a lock root of an older holdfast whose apps left files in it is taken once its files are checked and {MARKER} is created in it"
        ));
    match (first, budget.looked) {
        (Some(why), _) => Err(why),
        (None, 0) => Ok(Accepted::Empty),
        (None, _) => Ok(Accepted::LaidOut),
    }
}

/// Files with content a lock tree's service directories may hold: the
/// locks (holdfast's own carry a tag) and the hand-over signals.
const LOCK_DIR_FILES: [&str; 5] = [
    "updates.lock",
    "resin-updates.lock",
    "update-pending",
    "handover-complete",
    "resin-kill-me",
];

/// The first entry a lock tree does not have: at the app and service
/// levels (`depth` 1, 2) anything but a directory, a symlink (never
/// followed) or an empty file; in a service's directory (3) a file with
/// content other than a lock or hand-over file, or a socket, FIFO or device.
/// Entries looked at so far, and how many may be.
struct Budget {
    looked: usize,
    max: usize,
}

fn look_at(dir: &Path, depth: u8, budget: &mut Budget) -> io::Result<Option<String>> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        budget.looked += 1;
        if budget.looked > budget.max {
            return Ok(Some(format!(
                "it holds more than {} entries in its top three levels",
                budget.max
            )));
        }
        let path = entry.path();
        // The entry's type from the listing (no stat); a file's size is
        // looked at only for a file.
        let t = entry.file_type()?;
        let shown = || crate::text::shown(&path.display().to_string());
        let lock_file =
            depth == 3 && LOCK_DIR_FILES.contains(&entry.file_name().to_string_lossy().as_ref());
        if t.is_dir() {
            if depth < 3 {
                if let Some(why) = look_at(&path, depth + 1, budget)? {
                    return Ok(Some(why));
                }
            }
        } else if t.is_file() {
            let len = match fs::symlink_metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if len > 0 && !lock_file {
                return Ok(Some(format!("{} is a file with content", shown())));
            }
        } else if !t.is_symlink() {
            return Ok(Some(format!(
                "{} is not a directory, a file or a symlink",
                shown()
            )));
        }
    }
    Ok(None)
}

/// Marks the lock root as holdfast's at start (`config::load` accepted it):
/// makes it if missing, then an exclusive, no-follow create of [`MARKER`].
/// One that cannot be written (read-only) stays unmarked, with a warning:
/// it was accepted, and is looked at again at the next start.
pub fn mark(root: &Path) {
    let path = root.join(MARKER);
    let made = fs::create_dir_all(root).and_then(|()| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&path)?;
        use std::io::Write;
        f.write_all(
            b"holdfast's lock root: <app>/<service>/ below are bind-mounted into app containers.\n",
        )
    });
    match made {
        Ok(()) => tracing::info!(root = %root.display(),
            "lock root {} marked as holdfast's ({MARKER})", root.display()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => tracing::warn!(root = %root.display(), error = %e,
            "cannot mark the lock root {} as holdfast's: {e}; it is checked again at the next start", root.display()),
    }
}

#[cfg(test)]
mod tests;
