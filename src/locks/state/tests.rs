use super::*;

fn id(s: &str) -> ServiceId {
    ServiceId::parse(s).unwrap()
}

fn entry(name: &str, ino: u64, own: bool) -> LockEntry {
    LockEntry {
        name: name.into(),
        kind: EntryKind::File,
        uid: 0,
        mtime_usec: ino * 10,
        dev: 1,
        ino,
        token: own.then(|| "t1".to_owned()),
        own: false,
    }
}

fn tokens(t: &[&str]) -> LockEvent {
    LockEvent::OwnTokens(t.iter().map(|s| s.to_string()).collect())
}

fn observed(s: &str, entries: Vec<LockEntry>) -> LockEvent {
    LockEvent::ServiceObserved { id: id(s), entries }
}

fn holders(s: &str, ino: u64, holders: Vec<Holder>) -> LockEvent {
    LockEvent::HoldersObserved {
        id: id(s),
        keys: vec![(1, ino)],
        holders,
    }
}

#[test]
fn lock_taken_then_released() {
    let mut t = LockTable::default();
    assert!(t.apply(observed("a/main", vec![])).is_empty());
    assert!(!t.is_locked());
    let c = t.apply(observed("a/main", vec![entry("updates.lock", 5, false)]));
    assert_eq!(
        c,
        vec![Change::Taken {
            id: id("a/main"),
            owner: Owner::App
        }]
    );
    assert!(t.is_locked());
    assert_eq!(t.get(&id("a/main")).unwrap().since_usec(), 50);
    // Same file seen again: no change.
    assert!(t
        .apply(observed("a/main", vec![entry("updates.lock", 5, false)]))
        .is_empty());
    let c = t.apply(observed("a/main", vec![]));
    assert_eq!(c, vec![Change::Released { id: id("a/main") }]);
    assert!(!t.is_locked());
    assert_eq!(t.service_count(), 1, "the unlocked directory stays known");
}

#[test]
fn own_locks_are_recognised_by_recorded_tag_only() {
    let mut t = LockTable::default();
    // A tag whose token holdfast never recorded is an app's lock.
    t.apply(observed("a/x", vec![entry("updates.lock", 9, true)]));
    assert_eq!(t.get(&id("a/x")).unwrap().owner(), Owner::App);
    t.apply(tokens(&["t1"]));
    assert_eq!(t.get(&id("a/x")).unwrap().owner(), Owner::Holdfast);
    t.apply(LockEvent::ServiceRemoved(id("a/x")));
    let c = t.apply(observed(
        "a/main",
        vec![
            entry("resin-updates.lock", 2, true),
            entry("updates.lock", 1, true),
        ],
    ));
    assert_eq!(
        c,
        vec![Change::Taken {
            id: id("a/main"),
            owner: Owner::Holdfast
        }]
    );
    // An app file beside an own file makes it an app lock.
    t.apply(observed(
        "a/w",
        vec![
            entry("resin-updates.lock", 3, true),
            entry("updates.lock", 4, false),
        ],
    ));
    assert_eq!(t.get(&id("a/w")).unwrap().owner(), Owner::App);
    assert_eq!(t.held_by_apps(), vec![&id("a/w")]);
}

#[test]
fn stale_when_holders_vanish() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    assert!(
        !t.get(&id("a/main")).unwrap().stale(),
        "unknown is not stale"
    );
    let holder = Holder {
        pid: 10,
        comm: "flock".into(),
        how: HoldKind::Flock,
    };
    let c = t.apply(holders("a/main", 1, vec![holder]));
    assert!(c.is_empty());
    let c = t.apply(holders("a/main", 1, vec![]));
    assert_eq!(c, vec![Change::Stale { id: id("a/main") }]);
    assert!(t.get(&id("a/main")).unwrap().stale());
    // Reported once.
    let c = t.apply(holders("a/main", 1, vec![]));
    assert!(c.is_empty());
    // Stale locks still count.
    assert!(t.is_locked());
}

#[test]
fn replaced_file_resets_holders_without_a_new_taken() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    t.apply(holders("a/main", 1, vec![]));
    let c = t.apply(observed("a/main", vec![entry("updates.lock", 2, false)]));
    assert!(c.is_empty());
    assert_eq!(t.get(&id("a/main")).unwrap().holders, None);
}

#[test]
fn removing_dirs_releases_their_locks() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    t.apply(observed("a/w", vec![entry("updates.lock", 2, false)]));
    t.apply(observed("b/x", vec![entry("updates.lock", 3, false)]));
    let c = t.apply(LockEvent::ServiceRemoved(id("b/x")));
    assert_eq!(c, vec![Change::Released { id: id("b/x") }]);
    let c = t.apply(LockEvent::AppRemoved(AppName::new("a").unwrap()));
    assert_eq!(c.len(), 2);
    assert_eq!(t.service_count(), 0);
}

#[test]
fn resync_replaces_everything() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    t.apply(observed("a/w", vec![]));
    let c = t.apply(LockEvent::Resync(vec![
        (id("a/w"), vec![entry("updates.lock", 2, false)]),
        (id("c/z"), vec![]),
    ]));
    assert_eq!(
        c,
        vec![
            Change::Released { id: id("a/main") },
            Change::Taken {
                id: id("a/w"),
                owner: Owner::App
            }
        ]
    );
    assert_eq!(t.service_count(), 2);
    assert_eq!(t.locked_ids(), vec![&id("a/w")]);
}

#[test]
fn a_holder_scan_of_replaced_files_is_ignored() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![entry("updates.lock", 2, false)]));
    let g = t.generation();
    assert!(t.apply(holders("a/main", 1, vec![])).is_empty());
    assert_eq!(t.get(&id("a/main")).unwrap().holders, None);
    assert_eq!(t.generation(), g, "nothing changed");
}

#[test]
fn unreadable_binds_until_read_again() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    t.apply(observed("a/w", vec![]));
    // Could not look: the lock stays, and an unlocked service binds too.
    let unreadable = |s: &str| LockEvent::ServiceUnreadable {
        id: id(s),
        reason: "Too many open files".into(),
    };
    let c = t.apply(unreadable("a/main"));
    assert_eq!(
        c,
        vec![Change::Unknown {
            id: id("a/main"),
            reason: "Too many open files".into()
        }]
    );
    t.apply(unreadable("a/w"));
    assert_eq!(t.held_by_apps(), vec![&id("a/main"), &id("a/w")]);
    assert_eq!(t.get(&id("a/w")).unwrap().kind(), EntryKind::Unknown);
    assert!(!t.get(&id("a/w")).unwrap().stale());
    assert_eq!(t.unknown().count(), 2);
    // Reported once.
    assert!(t.apply(unreadable("a/main")).is_empty());
    // A successful read settles both.
    assert!(t
        .apply(observed("a/main", vec![entry("updates.lock", 1, false)]))
        .is_empty());
    let c = t.apply(observed("a/w", vec![]));
    assert_eq!(c, vec![Change::Released { id: id("a/w") }]);
    assert_eq!(t.unknown().count(), 0);
    assert_eq!(t.held_by_apps(), vec![&id("a/main")]);
}

#[test]
fn blind_keeps_everything_until_a_resync() {
    let mut t = LockTable::default();
    assert!(!t.is_locked());
    let c = t.apply(LockEvent::Blind("EMFILE".into()));
    assert_eq!(
        c,
        vec![Change::Blind {
            reason: "EMFILE".into()
        }]
    );
    assert!(t.is_locked(), "not seeing binds like a lock");
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    let c = t.apply(LockEvent::Resync(vec![(id("a/main"), vec![])]));
    assert_eq!(
        c,
        vec![Change::Sighted, Change::Released { id: id("a/main") }]
    );
    assert!(!t.is_locked());
    assert_eq!(t.blind(), None);
}

#[test]
fn generation_moves_only_on_change() {
    let mut t = LockTable::default();
    t.apply(observed("a/main", vec![]));
    let g = t.generation();
    assert_eq!(g, 1, "a new directory is news");
    t.apply(observed("a/main", vec![]));
    assert_eq!(t.generation(), g, "an unlocked directory seen again");
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    assert_eq!(t.generation(), g + 1);
    t.apply(observed("a/main", vec![entry("updates.lock", 1, false)]));
    assert_eq!(t.generation(), g + 1);
}

#[test]
fn own_files_removed_by_holdfast_never_read_as_an_app_lock() {
    let mut t = LockTable::default();
    t.apply(tokens(&["t1"]));
    t.apply(observed("a/main", vec![entry("updates.lock", 7, true)]));
    assert_eq!(t.held_by_apps().len(), 0);
    // The keeper removed the file, then retired its token, before the
    // watcher saw the removal.
    let c = t.apply(LockEvent::OwnRemoved(vec![(id("a/main"), (1, 7))]));
    assert_eq!(c, vec![Change::Released { id: id("a/main") }]);
    t.apply(tokens(&[]));
    assert!(t.held_by_apps().is_empty());
    assert!(t.apply(observed("a/main", vec![])).is_empty());
}

fn misplaced(list: &[(&str, bool)]) -> LockEvent {
    LockEvent::Mounts(
        list.iter()
            .map(|(s, held)| {
                let m = Misplaced {
                    reason: format!("container of {s} mounts /old/{s}"),
                    held: *held,
                };
                (id(s), m)
            })
            .collect(),
    )
}

#[test]
fn a_misplaced_mount_binds_as_unknown_until_listed_right() {
    let mut t = LockTable::default();
    assert!(!t.mounts_known());
    let c = t.apply(misplaced(&[("a/main", false)]));
    assert!(t.mounts_known());
    assert_eq!(
        c,
        vec![Change::Misplaced {
            id: id("a/main"),
            reason: "container of a/main mounts /old/a/main".into()
        }]
    );
    let l = t.get(&id("a/main")).unwrap();
    assert_eq!((l.owner(), l.kind()), (Owner::App, EntryKind::Unknown));
    assert!(!l.stale());
    assert_eq!(t.held_by_apps(), vec![&id("a/main")]);
    let unknown: Vec<_> = t.unknown().collect();
    assert_eq!(
        unknown,
        vec![(&id("a/main"), "container of a/main mounts /old/a/main")]
    );
    // The watched directory shows nothing, then goes, then the whole root
    // is read again: none of it is "unlocked".
    assert!(t.apply(observed("a/main", vec![])).is_empty());
    assert!(t.apply(LockEvent::ServiceRemoved(id("a/main"))).is_empty());
    assert!(t
        .apply(LockEvent::AppRemoved(AppName::new("a").unwrap()))
        .is_empty());
    assert!(t.apply(LockEvent::Resync(vec![])).is_empty());
    assert!(t
        .apply(LockEvent::OwnRemoved(vec![(id("a/main"), (1, 5))]))
        .is_empty());
    assert_eq!(t.locked_ids(), vec![&id("a/main")]);
    // A lock in the watched directory (another container) comes and goes:
    // still bound by the mount.
    assert!(t
        .apply(observed("a/main", vec![entry("updates.lock", 5, false)]))
        .is_empty());
    assert!(t.apply(observed("a/main", vec![])).is_empty());
    assert!(t.get(&id("a/main")).unwrap().unseen().is_some());
    // Unreadable meanwhile: both reasons, the directory's first.
    t.apply(LockEvent::ServiceUnreadable {
        id: id("a/main"),
        reason: "EMFILE".into(),
    });
    assert_eq!(t.get(&id("a/main")).unwrap().unseen(), Some("EMFILE"));
    t.apply(observed("a/main", vec![]));
    // Listed right: released.
    let c = t.apply(misplaced(&[]));
    assert_eq!(c, vec![Change::Released { id: id("a/main") }]);
    assert!(!t.is_locked());
    assert!(t.mounts_known());
}

#[test]
fn a_misplaced_mount_held_by_holdfast_is_holdfasts() {
    let mut t = LockTable::default();
    t.apply(tokens(&["t1"]));
    t.apply(misplaced(&[("a/main", false)]));
    let g = t.generation();
    // holdfast takes the lock in the directory the container sees.
    assert!(t.apply(misplaced(&[("a/main", true)])).is_empty());
    assert!(t.generation() > g);
    let l = t.get(&id("a/main")).unwrap();
    assert_eq!((l.owner(), l.kind()), (Owner::Holdfast, EntryKind::File));
    assert_eq!(l.unseen(), None);
    assert!(t.held_by_apps().is_empty());
    assert!(t.is_locked(), "the inhibitor stays");
    // With holdfast's own locks in the watched directory too (the update).
    t.apply(observed("a/main", vec![entry("updates.lock", 7, true)]));
    assert_eq!(t.get(&id("a/main")).unwrap().owner(), Owner::Holdfast);
    // An app's lock in the watched directory is the app's.
    t.apply(observed("a/main", vec![entry("updates.lock", 8, false)]));
    assert_eq!(t.get(&id("a/main")).unwrap().owner(), Owner::App);
    // Given back before the container was made again: it binds again.
    t.apply(observed("a/main", vec![]));
    let c = t.apply(misplaced(&[("a/main", false)]));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(t.held_by_apps(), vec![&id("a/main")]);
    // The same listing again changes nothing.
    let g = t.generation();
    assert!(t.apply(misplaced(&[("a/main", false)])).is_empty());
    assert_eq!(t.generation(), g);
}
