//! Pure: which services have a container whose lock mount is not the
//! directory holdfast watches for them, why, and whether holdfast can take
//! its lock in the directory the container sees instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::engine::MountedContainer;
use crate::names::ServiceId;
use crate::text::shown;

/// A service with at least one container that sees another directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which container mounts what where, and what to do.
    pub reason: String,
    /// The directories its containers see instead of the watched one, when
    /// every one is a bind mount of a directory outside the lock root:
    /// holdfast can take its lock there. `None`: it cannot (a tmpfs, a
    /// volume, nothing mounted, a directory of another service).
    pub dirs: Option<BTreeSet<PathBuf>>,
}

/// How paths compare: `resolve` gives a path as the file system resolves
/// it (symlinked parents followed), so `/var/run/x` and `/run/x` are one;
/// `real_dir` says whether a path is a directory itself, not a symlink
/// (holdfast never follows one to take a lock).
pub fn misplaced(
    containers: &[MountedContainer],
    lock_root: &Path,
    resolve: impl Fn(&Path) -> PathBuf,
    real_dir: impl Fn(&Path) -> bool,
) -> BTreeMap<ServiceId, Finding> {
    let root_real = resolve(lock_root);
    let mut out: BTreeMap<ServiceId, Finding> = BTreeMap::new();
    for c in containers {
        let id = ServiceId::new(c.app.clone(), c.service.clone());
        let expected = lock_root.join(c.app.as_str()).join(c.service.as_str());
        let expected_real = resolve(&expected);
        let mut problems = Vec::new();
        let mut dirs = Some(BTreeSet::new());
        for (dest, m) in &c.at {
            let Some(m) = m else {
                problems.push(format!(
                    "has no mount at {dest} (its own files, or a tmpfs)"
                ));
                dirs = None;
                continue;
            };
            if m.kind != "bind" {
                problems.push(format!("has a {} mount at {dest}", shown(&m.kind)));
                dirs = None;
                continue;
            }
            let source = Path::new(&m.source);
            if source == expected || resolve(source) == expected_real {
                continue;
            }
            problems.push(format!("mounts {} at {dest}", shown(&m.source)));
            // Only a directory outside the lock root: a lock file of ours
            // in another service's directory would read as that app's.
            let takeable = source.is_absolute()
                && !resolve(source).starts_with(&root_real)
                && real_dir(source);
            match (&mut dirs, takeable) {
                (Some(d), true) => {
                    d.insert(source.to_owned());
                }
                _ => dirs = None,
            }
        }
        if problems.is_empty() {
            continue;
        }
        let what = format!(
            "container {} {}, not the watched {}",
            shown(&c.name),
            problems.join(", "),
            expected.display()
        );
        let f = out.entry(id).or_insert(Finding {
            reason: String::new(),
            dirs: Some(BTreeSet::new()),
        });
        if !f.reason.is_empty() {
            f.reason.push_str("; ");
        }
        f.reason.push_str(&what);
        match (&mut f.dirs, dirs) {
            (Some(all), Some(d)) => all.extend(d),
            (all, _) => *all = None,
        }
    }
    for (id, f) in out.iter_mut() {
        let todo = match &f.dirs {
            Some(d) => format!(
                "holdfast makes it again under the app's locks once it holds the lock in {} (app {} must not hold it there); or force it (holdfast update --force) or turn the lock override on",
                d.iter().map(|p| shown(&p.display().to_string())).collect::<Vec<_>>().join(" and "),
                id.app
            ),
            None => format!(
                "holdfast cannot take the lock there: force app {}'s update (holdfast update --force) or turn the lock override on",
                id.app
            ),
        };
        f.reason = format!(
            "{}: it counts as locked until it is made again; {todo}",
            f.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LockMount;
    use crate::names::{AppName, ServiceName};

    fn bind(source: &str) -> Option<LockMount> {
        Some(LockMount {
            kind: "bind".into(),
            source: source.into(),
        })
    }

    fn container(
        name: &str,
        balena: Option<LockMount>,
        resin: Option<LockMount>,
    ) -> MountedContainer {
        MountedContainer {
            name: name.into(),
            app: AppName::new("app1").unwrap(),
            service: ServiceName::new("main").unwrap(),
            at: vec![("/tmp/balena", balena), ("/tmp/resin", resin)],
        }
    }

    fn check(cs: &[MountedContainer]) -> BTreeMap<ServiceId, Finding> {
        // `/alias` is a symlink to `/L2` here, `/L1/link` one to `/L1/x`,
        // and `/gone` is not there.
        let resolve = |p: &Path| {
            let p = crate::locks::root::lexical(p);
            match p.strip_prefix("/alias") {
                Ok(rest) => Path::new("/L2").join(rest),
                Err(_) => p,
            }
        };
        let real_dir = |p: &Path| !p.starts_with("/gone") && p != Path::new("/L1/link");
        misplaced(cs, Path::new("/L2"), resolve, real_dir)
    }

    #[test]
    fn the_watched_directory_is_right_however_it_is_written() {
        for src in ["/L2/app1/main", "/L2//app1/main/", "/alias/app1/main"] {
            assert!(
                check(&[container("c", bind(src), bind(src))]).is_empty(),
                "{src}"
            );
        }
    }

    #[test]
    fn another_directory_binds_and_says_where_to_take_the_lock() {
        let f = check(&[container(
            "app1_main_1",
            bind("/L1/app1/main"),
            bind("/L1/app1/main"),
        )]);
        let f = &f[&ServiceId::parse("app1/main").unwrap()];
        assert_eq!(f.dirs, Some([PathBuf::from("/L1/app1/main")].into()),);
        assert!(f.reason.starts_with(
            "container app1_main_1 mounts /L1/app1/main at /tmp/balena, mounts /L1/app1/main at /tmp/resin, not the watched /L2/app1/main: it counts as locked until it is made again; holdfast makes it again"
        ), "{}", f.reason);
        assert!(
            f.reason.contains(
                "(app app1 must not hold it there); or force it (holdfast update --force)"
            ),
            "{}",
            f.reason
        );
    }

    #[test]
    fn what_holdfast_cannot_lock_in_binds_until_forced() {
        let tmpfs = Some(LockMount {
            kind: "tmpfs".into(),
            source: String::new(),
        });
        let volume = Some(LockMount {
            kind: "volume".into(),
            source: "/var/lib/docker/volumes/v/_data".into(),
        });
        let cases = [
            container("c", tmpfs, bind("/L2/app1/main")),
            container("c", volume, bind("/L2/app1/main")),
            container("c", None, None),
            // Right at /tmp/balena, another service's directory at /tmp/resin.
            container("c", bind("/L2/app1/main"), bind("/L2/app2/web")),
            container("c", bind("relative"), bind("/L2/app1/main")),
            // A symlink, or a directory that is gone: never followed or made.
            container("c", bind("/L1/link"), bind("/L1/link")),
            container("c", bind("/gone/app1/main"), bind("/gone/app1/main")),
        ];
        for c in cases {
            let f = check(std::slice::from_ref(&c));
            let f = f.values().next().unwrap_or_else(|| panic!("{c:?}"));
            assert_eq!(f.dirs, None, "{c:?}");
            assert!(
                f.reason.contains("holdfast cannot take the lock there"),
                "{}",
                f.reason
            );
        }
        let f = check(&[container("c", None, bind("/L2/app1/main"))]);
        assert!(f
            .values()
            .next()
            .unwrap()
            .reason
            .starts_with("container c has no mount at /tmp/balena (its own files, or a tmpfs)"));
    }

    #[test]
    fn containers_of_one_service_add_up() {
        let f = check(&[
            container("old", bind("/L1/app1/main"), bind("/L1/app1/main")),
            container("new", bind("/L2/app1/main"), bind("/L2/app1/main")),
            container("odd", bind("/L0/app1/main"), bind("/L0/app1/main")),
        ]);
        let f = &f[&ServiceId::parse("app1/main").unwrap()];
        assert_eq!(
            f.dirs,
            Some(
                [
                    PathBuf::from("/L0/app1/main"),
                    PathBuf::from("/L1/app1/main")
                ]
                .into()
            )
        );
        assert!(f.reason.contains("container old ") && f.reason.contains("; container odd "));
        let f = check(&[
            container("old", bind("/L1/app1/main"), bind("/L1/app1/main")),
            container("odd", None, None),
        ]);
        assert_eq!(f.values().next().unwrap().dirs, None);
    }

    #[test]
    fn outside_text_is_escaped() {
        let f = check(&[container("c\u{1b}[2J", bind("/L1/a\nb"), bind("/L1/a\nb"))]);
        let r = &f.values().next().unwrap().reason;
        assert!(!r.contains('\u{1b}') && !r.contains('\n'), "{r}");
    }
}
