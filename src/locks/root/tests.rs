use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

fn own(state: &Path) -> Vec<(&'static str, &Path)> {
    vec![("state_dir", state)]
}

#[test]
fn system_directories_are_refused_by_name() {
    let state = Path::new("/var/lib/holdfast");
    for p in [
        "/", "/tmp", "/tmp/", "/run", "/var", "/etc", "/home", "/root", "/var/run", "/./tmp",
    ] {
        let why = refused_path(Path::new(p), &own(state)).unwrap_or_else(|| panic!("{p}"));
        assert!(why.contains("system directory"), "{p}: {why}");
    }
    for p in [
        "/etc/holdfast/locks",
        "/proc/1",
        "/dev/shm/locks",
        "/usr/x",
        "/sys/fs",
    ] {
        let why = refused_path(Path::new(p), &own(state)).unwrap_or_else(|| panic!("{p}"));
        assert!(why.contains("is inside"), "{p}: {why}");
    }
    for p in [
        "/run/holdfast/locks",
        "/tmp/hf-x/locks",
        "/run/locks",
        "/home/x/locks",
    ] {
        assert_eq!(refused_path(Path::new(p), &own(state)), None, "{p}");
    }
}

#[test]
fn holdfasts_own_files_stay_out_of_the_lock_root() {
    let state = Path::new("/var/lib/holdfast");
    let cj = Path::new("/mnt/boot/config.json");
    let own = [("state_dir", state), ("config_json", cj)];
    let why = refused_path(Path::new("/var/lib/holdfast"), &own).unwrap();
    assert!(why.contains("holdfast's state_dir"), "{why}");
    let why = refused_path(Path::new("/var/lib/holdfast/locks"), &own).unwrap();
    assert!(why.contains("inside holdfast's state_dir"), "{why}");
    // Above the state dir: an app "holdfast" would get the state dir.
    let why = refused_path(
        Path::new("/var/lib/hf"),
        &[("state_dir", Path::new("/var/lib/hf/x"))],
    )
    .unwrap();
    assert!(why.contains("is inside it"), "{why}");
    let why = refused_path(
        Path::new("/mnt/boot/x"),
        &[("config_json", Path::new("/mnt/boot/x/c.json"))],
    )
    .unwrap();
    assert!(why.contains("config_json"), "{why}");
}

#[test]
fn missing_empty_marked_and_laid_out_are_accepted() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let root = t.path().join("locks");
    assert_eq!(check(&root, &own(&state)), Ok(Accepted::Missing));
    std::fs::create_dir(&root).unwrap();
    assert_eq!(check(&root, &own(&state)), Ok(Accepted::Empty));
    // An older holdfast's tree: apps, services, what apps wrote there.
    std::fs::create_dir_all(root.join("app1/main")).unwrap();
    std::fs::write(root.join("app1/main/updates.lock"), b"").unwrap();
    std::fs::write(root.join("app1/main/ready"), b"").unwrap();
    std::fs::write(
        root.join("app1/main/resin-updates.lock"),
        b"holdfast-own-lock 0a\n",
    )
    .unwrap();
    std::fs::write(root.join("app1/notadir"), b"").unwrap();
    symlink("/etc", root.join("evil")).unwrap();
    assert_eq!(check(&root, &own(&state)), Ok(Accepted::LaidOut));
    mark(&root);
    assert!(root.join(MARKER).is_file());
    // Marked: whatever is in it now.
    std::fs::write(root.join("file"), b"data").unwrap();
    assert_eq!(check(&root, &own(&state)), Ok(Accepted::Marked));
}

#[test]
fn a_populated_foreign_directory_is_refused_with_what_is_in_it() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let root = t.path().join("data");
    std::fs::create_dir_all(root.join("tmp/qahx")).unwrap();
    std::fs::write(root.join("tmp/qahx/api-key"), b"0123456789abcdef").unwrap();
    let why = check(&root, &own(&state)).unwrap_err();
    assert!(why.contains("not empty and not holdfast's"), "{why}");
    assert!(
        why.contains("tmp/qahx/api-key is a file with content"),
        "{why}"
    );
    // A socket or FIFO at the app level is not a lock tree either.
    let root2 = t.path().join("data2");
    std::fs::create_dir(&root2).unwrap();
    nix::unistd::mkfifo(&root2.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(check(&root2, &own(&state))
        .unwrap_err()
        .contains("is not a directory"));
    // What an app wrote in its lock directory, with content: not taken
    // without the mark (checked by whoever marks it).
    let root3 = t.path().join("data3");
    std::fs::create_dir_all(root3.join("app1/main")).unwrap();
    std::fs::write(root3.join("app1/main/state"), b"x").unwrap();
    let why = check(&root3, &own(&state)).unwrap_err();
    assert!(
        why.contains("app1/main/state is a file with content"),
        "{why}"
    );
    std::fs::write(root3.join(MARKER), b"").unwrap();
    assert_eq!(check(&root3, &own(&state)), Ok(Accepted::Marked));
    // A marker that is not a regular file marks nothing.
    std::fs::remove_file(root2.join("fifo")).unwrap();
    symlink("/etc/hostname", root2.join(MARKER)).unwrap();
    std::fs::write(root2.join("x"), b"data").unwrap();
    assert!(check(&root2, &own(&state)).is_err());
}

#[test]
fn a_symlink_or_a_file_is_refused_and_a_symlinked_parent_is_resolved() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    symlink(&real, &link).unwrap();
    assert!(check(&link, &own(&state))
        .unwrap_err()
        .contains("is a symlink"));
    let file = t.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(check(&file, &own(&state))
        .unwrap_err()
        .contains("not a directory"));
    // Through a symlinked parent into the state dir: refused as resolved.
    std::fs::create_dir_all(state.join("locks")).unwrap();
    let alias = t.path().join("alias");
    symlink(&state, &alias).unwrap();
    let why = check(&alias.join("locks"), &own(&state)).unwrap_err();
    assert!(
        why.contains("resolves to") && why.contains("state_dir"),
        "{why}"
    );
    // Through a symlinked parent to "/": refused.
    let top = t.path().join("top");
    symlink("/", &top).unwrap();
    let why = check(&top.join("tmp"), &own(&state)).unwrap_err();
    assert!(why.contains("resolves to /tmp"), "{why}");
}

#[test]
fn the_look_is_bounded() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("many");
    for i in 0..60 {
        std::fs::create_dir_all(root.join(format!("a{i}/main"))).unwrap();
    }
    let mut budget = Budget {
        looked: 0,
        max: 100,
    };
    let why = look_at(&root, 1, &mut budget).unwrap().unwrap();
    assert!(why.contains("more than 100 entries"), "{why}");
    assert_eq!(budget.looked, 101, "stops at the bound");
    // A device with thousands of apps is within the real bound.
    assert_eq!(
        check(&root, &own(&t.path().join("state"))),
        Ok(Accepted::LaidOut)
    );
}
