use super::*;

#[tokio::test]
async fn a_removed_directory_is_watched_again_when_it_is_back() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("boot");
    std::fs::create_dir(&dir).unwrap();
    let mut w = NamesWatch::content(&dir, &["config.json"]);
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    tokio::time::timeout(Duration::from_secs(5), w.changed())
        .await
        .unwrap()
        .unwrap();
    // Gone (as an unmount would make it), then back.
    std::fs::remove_dir_all(&dir).unwrap();
    let back = dir.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::create_dir(&back).unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), w.changed())
        .await
        .expect("noticed the directory came back")
        .unwrap();
    std::fs::write(dir.join("config.json"), b"{\"a\": 1}").unwrap();
    tokio::time::timeout(Duration::from_secs(5), w.changed())
        .await
        .expect("and watches it again")
        .unwrap();
}

#[tokio::test]
async fn a_burst_of_rewrites_is_one_change() {
    let t = tempfile::tempdir().unwrap();
    let mut w = NamesWatch::content(t.path(), &["f"]);
    for i in 0..50 {
        std::fs::write(t.path().join("f"), format!("{i}")).unwrap();
    }
    w.changed().await.unwrap();
    let more = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
    assert!(more.is_err(), "the burst settled into one change");
}

#[tokio::test]
async fn a_change_seen_by_a_dropped_wait_is_still_reported() {
    let t = tempfile::tempdir().unwrap();
    let mut w = NamesWatch::content(t.path(), &["f"]);
    std::fs::write(t.path().join("f"), b"1").unwrap();
    // Dropped while it settles (a select! loop's other branch won).
    let cut = tokio::time::timeout(SETTLE / 3, w.changed()).await;
    assert!(cut.is_err(), "settling takes {SETTLE:?}");
    tokio::time::timeout(Duration::from_secs(2), w.changed())
        .await
        .expect("the write is still reported")
        .unwrap();
}

/// A tmpfs on `dir` until dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_file_system_mounted_on_the_directory_is_watched() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("boot");
    std::fs::create_dir(&dir).unwrap();
    let mut w = NamesWatch::content(&dir, &["config.json"]);
    // inotify says nothing of a mount; the mount table does.
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let _mount = Mount(dir.clone());
    tokio::time::timeout(Duration::from_secs(5), w.changed())
        .await
        .expect("the mount is a change")
        .unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    tokio::time::timeout(Duration::from_secs(5), w.changed())
        .await
        .expect("a write in the mounted file system is seen")
        .unwrap();
}
