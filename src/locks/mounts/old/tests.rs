use std::os::unix::fs::symlink;

use super::*;

fn app() -> AppName {
    AppName::new("app1").unwrap()
}

fn dirs(d: &[&Path]) -> BTreeSet<PathBuf> {
    d.iter().map(|p| p.to_path_buf()).collect()
}

#[test]
fn taken_in_every_directory_then_given_back() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let mut l = OldLocks::new(&t.path().join("state"));
    l.take(&app(), &dirs(&[&a, &b])).unwrap();
    assert!(l.holds(&app()));
    assert_eq!(l.held_dirs(&app()), dirs(&[&a, &b]));
    for d in [&a, &b] {
        for f in LOCK_FILE_NAMES {
            let text = std::fs::read_to_string(d.join(f)).unwrap();
            assert!(text.starts_with("holdfast-own-lock "), "{text}");
        }
    }
    // An app's exclusive create fails against it, as against the keeper's.
    let app_try = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(a.join("updates.lock"));
    assert!(app_try.is_err());
    assert!(l.release(&app()).is_empty());
    assert!(!a.join("updates.lock").exists() && !b.join("resin-updates.lock").exists());
    // Held when holdfastd stops: given back.
    l.take(&app(), &dirs(&[&a])).unwrap();
    drop(l);
    assert!(!a.join("updates.lock").exists());
    let record = std::fs::read_to_string(t.path().join("state/mount-locks.json")).unwrap();
    assert!(!record.contains("updates.lock"), "{record}");
}

#[test]
fn an_app_lock_there_means_nothing_is_taken() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(b.join("resin-updates.lock"), b"").unwrap();
    let mut l = OldLocks::new(&t.path().join("state"));
    let e = l.take(&app(), &dirs(&[&a, &b])).unwrap_err();
    assert_eq!(
        e,
        TakeError::Held(b.join("resin-updates.lock").display().to_string())
    );
    assert!(!l.holds(&app()));
    assert!(!a.join("updates.lock").exists(), "all or nothing");
    assert!(
        b.join("resin-updates.lock").exists(),
        "the app's lock stays"
    );
    assert!(!l.has_leftovers());
}

#[test]
fn a_symlink_or_a_missing_directory_is_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    symlink(&real, &link).unwrap();
    let mut l = OldLocks::new(&t.path().join("state"));
    assert!(matches!(
        l.take(&app(), &dirs(&[&link])),
        Err(TakeError::Failed(_))
    ));
    assert!(!real.join("updates.lock").exists());
    let gone = t.path().join("gone");
    assert!(matches!(
        l.take(&app(), &dirs(&[&gone])),
        Err(TakeError::Failed(_))
    ));
}

#[test]
fn a_crash_leaves_files_the_next_start_removes_unless_flocked_since() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let mut l = OldLocks::new(&state);
    l.take(&app(), &dirs(&[&a, &b])).unwrap();
    l.crash(); // the process dies: the files stay, their flocks go
               // Someone flocks one of them meanwhile: it is theirs now.
    let theirs = File::open(b.join("updates.lock")).unwrap();
    let _held = Flock::lock(theirs, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    // An app's own file in place of another.
    std::fs::remove_file(a.join("resin-updates.lock")).unwrap();
    std::fs::write(a.join("resin-updates.lock"), b"mine").unwrap();
    let mut l = OldLocks::new(&state);
    l.load().unwrap();
    assert!(l.has_leftovers());
    let removed = l.retry();
    // Only what was removed is said to be: the app's files stay theirs.
    let want: Vec<String> = [a.join("updates.lock"), b.join("resin-updates.lock")]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(removed, want);
    assert!(!a.join("updates.lock").exists());
    assert!(
        a.join("resin-updates.lock").exists(),
        "the app's file stays"
    );
    assert!(b.join("updates.lock").exists(), "flocked since: theirs");
    assert!(!b.join("resin-updates.lock").exists());
    assert!(!l.has_leftovers());
    // A damaged record removes nothing on a guess.
    std::fs::write(state.join("mount-locks.json"), b"{").unwrap();
    assert!(OldLocks::new(&state)
        .load()
        .unwrap_err()
        .contains("damaged"));
}

#[test]
fn a_record_that_cannot_be_read_is_not_written_over() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let a = t.path().join("a");
    std::fs::create_dir(&a).unwrap();
    // A crash left holdfast's files in `a`, and its record got damaged.
    let mut l = OldLocks::new(&state);
    l.take(&app(), &dirs(&[&a])).unwrap();
    l.crash();
    let record = state.join("mount-locks.json");
    let good = std::fs::read(&record).unwrap();
    std::fs::write(&record, b"{").unwrap();

    let mut l = OldLocks::new(&state);
    assert!(l.load().unwrap_err().contains("damaged"));
    // A take elsewhere would record over it and forget the leftovers.
    let b = t.path().join("b");
    std::fs::create_dir(&b).unwrap();
    let e = l.take(&app(), &dirs(&[&b])).unwrap_err();
    assert!(
        matches!(&e, TakeError::Failed(m) if m.contains("damaged")),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&record).unwrap(), b"{", "written over");
    assert!(!b.join("updates.lock").exists());
    assert!(
        a.join("updates.lock").exists(),
        "nothing removed on a guess"
    );

    // Repaired: the leftovers go first, then the take goes through.
    std::fs::write(&record, &good).unwrap();
    l.take(&app(), &dirs(&[&b])).unwrap();
    assert!(!a.join("updates.lock").exists(), "the leftover is removed");
    assert!(b.join("updates.lock").exists());
    let now = std::fs::read_to_string(&record).unwrap();
    assert!(!now.contains(&*a.display().to_string()), "{now}");
}
