//! Deleting app locks: only when the lock override is turned on (the
//! documented one-time effect). Relative to opened, no-follow directories;
//! holdfast's own lock files (a recorded token) are left to their owner.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::fs::{open_root, open_subdir, read_lock_entries, read_own_tag, FsError};
use super::state::EntryKind;
use crate::names::ServiceId;

/// What happened to one lock path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub id: ServiceId,
    pub name: String,
    pub result: Result<(), String>,
}

/// Removes every app lock path of the given services (files, symlinks
/// themselves, empty directories). A non-empty lock directory is reported,
/// not emptied.
pub fn remove_app_locks(
    root_path: &Path,
    ids: &[ServiceId],
    own_tokens: &BTreeSet<String>,
) -> Result<Vec<Broken>, FsError> {
    let root = open_root(root_path)?;
    let mut out = Vec::new();
    for id in ids {
        let app_path = root_path.join(id.app.as_str());
        let Ok(app) = open_subdir(root.as_fd(), id.app.as_str(), &app_path) else {
            continue;
        };
        let shown = app_path.join(id.service.as_str());
        let Ok(dir) = open_subdir(app.as_fd(), id.service.as_str(), &shown) else {
            continue;
        };
        let entries = match read_lock_entries(dir.as_fd()) {
            Ok(e) => e,
            Err(e) => {
                out.push(Broken {
                    id: id.clone(),
                    name: "(directory)".into(),
                    result: Err(e.desc().to_owned()),
                });
                continue;
            }
        };
        let apps = entries
            .into_iter()
            .filter(|e| !e.token.as_ref().is_some_and(|t| own_tokens.contains(t)));
        for entry in apps {
            // Re-check right before the unlink: same object as just read.
            let Ok(st) = fstatat(
                dir.as_fd(),
                entry.name.as_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue;
            };
            if super::fs::file_key(&st) != (entry.dev, entry.ino) {
                continue;
            }
            // A file whose tag cannot be read may be holdfast's own: left.
            if entry.kind == EntryKind::File {
                if let Err(e) = read_own_tag(dir.as_fd(), &entry.name, &st) {
                    out.push(Broken {
                        id: id.clone(),
                        name: entry.name,
                        result: Err(format!("cannot read it ({}); left alone", e.desc())),
                    });
                    continue;
                }
            }
            let flag = if entry.kind == EntryKind::Dir {
                UnlinkatFlags::RemoveDir
            } else {
                UnlinkatFlags::NoRemoveDir
            };
            let result =
                unlinkat(dir.as_fd(), entry.name.as_str(), flag).map_err(|e| e.desc().to_owned());
            out.push(Broken {
                id: id.clone(),
                name: entry.name,
                result,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{AppName, ServiceName};

    #[test]
    fn removes_files_dirs_and_symlinks_themselves_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("locks");
        let svc = root.join("a/s");
        std::fs::create_dir_all(&svc).unwrap();
        std::fs::write(svc.join("updates.lock"), b"").unwrap();
        std::fs::create_dir(svc.join("resin-updates.lock")).unwrap();
        let outside = tmp.path().join("precious");
        std::fs::write(&outside, b"keep").unwrap();
        let svc2 = root.join("a/t");
        std::fs::create_dir_all(&svc2).unwrap();
        std::os::unix::fs::symlink(&outside, svc2.join("updates.lock")).unwrap();
        let id = |s: &str| ServiceId::new(AppName::new("a").unwrap(), ServiceName::new(s).unwrap());
        let done = remove_app_locks(&root, &[id("s"), id("t")], &BTreeSet::new()).unwrap();
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|b| b.result.is_ok()), "{done:?}");
        assert!(!svc.join("updates.lock").exists() && !svc.join("resin-updates.lock").exists());
        assert!(svc2.join("updates.lock").symlink_metadata().is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    }
}
