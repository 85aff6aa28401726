use super::*;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn render_keeps_foreign_lines_and_replaces_managed_ones() {
    let text = b"# boot\ndtoverlay=vc4\ngpu_mem=16\ngpu_mem=32\nold=1\n";
    let managed: BTreeSet<String> = ["old".to_string()].into();
    let out = render(
        text,
        &map(&[("gpu_mem", "64"), ("hdmi_safe", "1")]),
        &managed,
    );
    assert_eq!(out, b"# boot\ndtoverlay=vc4\ngpu_mem=64\nhdmi_safe=1\n");
    assert_eq!(
        render(
            &out,
            &map(&[("gpu_mem", "64"), ("hdmi_safe", "1")]),
            &BTreeSet::new()
        ),
        out
    );
}

#[test]
fn render_line_endings() {
    let want = map(&[("gpu_mem", "64")]);
    let none = BTreeSet::new();
    // A last line without a newline keeps having none...
    assert_eq!(render(b"a=1\ngpu_mem=16", &want, &none), b"a=1\ngpu_mem=64");
    // ...unless a line now follows it.
    assert_eq!(render(b"a=1", &want, &none), b"a=1\ngpu_mem=64\n");
    // Removing the last line leaves the one before as it was.
    let old: BTreeSet<String> = ["old".to_string()].into();
    assert_eq!(render(b"a=1\nold=2", &BTreeMap::new(), &old), b"a=1\n");
    // Added lines follow the file's endings.
    assert_eq!(render(b"a=1\r\n", &want, &none), b"a=1\r\ngpu_mem=64\r\n");
    assert_eq!(render(b"", &want, &none), b"gpu_mem=64\n");
    assert_eq!(render(b"", &BTreeMap::new(), &old), b"");
}

/// Stages `cfg` against a config.txt holding `text`, applies it and
/// answers the file's bytes.
fn through_apply(text: &[u8], cfg: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("config.txt");
    std::fs::write(&txt, text).unwrap();
    let b = BootConfig::new(&txt, dir.path());
    let cfg: BTreeMap<String, String> = cfg
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect();
    b.take(&cfg).unwrap();
    b.apply_staged().unwrap();
    std::fs::read(&txt).unwrap()
}

#[test]
fn non_utf8_bytes_survive_take_and_apply() {
    let text = b"# caf\xe9 \xff\xfe\ndtoverlay=vc4,\x80\x81\ngpu_mem=16\nenable_uart=1\n\xc3(=x\n";
    assert_eq!(
        through_apply(text, &[("gpu_mem", "64"), ("hdmi_safe", "1")]),
        b"# caf\xe9 \xff\xfe\ndtoverlay=vc4,\x80\x81\ngpu_mem=64\nenable_uart=1\n\xc3(=x\nhdmi_safe=1\n"
    );
}

#[test]
fn crlf_and_missing_final_newline_survive_take_and_apply() {
    assert_eq!(
        through_apply(
            b"dtoverlay=vc4\r\ngpu_mem=16\r\nenable_uart=1",
            &[("gpu_mem", "64"), ("hdmi_safe", "1")]
        ),
        b"dtoverlay=vc4\r\ngpu_mem=64\r\nenable_uart=1\r\nhdmi_safe=1\r\n"
    );
    assert_eq!(
        through_apply(b"dtoverlay=vc4\ngpu_mem=16", &[("gpu_mem", "64")]),
        b"dtoverlay=vc4\ngpu_mem=64"
    );
}

#[test]
fn staged_until_applied_then_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("config.txt");
    std::fs::write(&txt, "dtoverlay=vc4\n").unwrap();
    let b = BootConfig::new(&txt, dir.path());
    let cfg = map(&[("BALENA_HOST_CONFIG_gpu_mem", "64"), ("HOLDFAST_NOTE", "x")]);
    assert!(b.take(&cfg).unwrap());
    assert_eq!(
        std::fs::read_to_string(&txt).unwrap(),
        "dtoverlay=vc4\n",
        "nothing written before the reboot"
    );
    assert!(
        std::fs::read_to_string(dir.path().join("device-config.json"))
            .unwrap()
            .contains("HOLDFAST_NOTE")
    );
    assert!(b.apply_staged().unwrap());
    assert_eq!(
        std::fs::read_to_string(&txt).unwrap(),
        "dtoverlay=vc4\ngpu_mem=64\n"
    );
    assert!(!b.take(&cfg).unwrap(), "applied: nothing more to stage");
    // Dropping the key removes the line holdfast wrote.
    assert!(b.take(&BTreeMap::new()).unwrap());
    b.apply_staged().unwrap();
    assert_eq!(std::fs::read_to_string(&txt).unwrap(), "dtoverlay=vc4\n");
}

#[test]
fn a_missing_config_txt_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("config.txt");
    let b = BootConfig::new(&txt, dir.path());
    assert!(b
        .take(&map(&[("BALENA_HOST_CONFIG_gpu_mem", "64")]))
        .unwrap());
    assert!(b.apply_staged().unwrap());
    assert_eq!(std::fs::read(&txt).unwrap(), b"gpu_mem=64\n");
}

#[test]
fn unreadable_config_txt_is_an_error_and_stays_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("config.txt");
    let b = BootConfig::new(&txt, dir.path());
    let cfg = map(&[("BALENA_HOST_CONFIG_gpu_mem", "64")]);

    std::fs::create_dir(&txt).unwrap();
    let err = b.take(&cfg).unwrap_err();
    assert!(matches!(err, BootConfigError::ConfigTxt(_)), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert!(txt.is_dir());
    assert_eq!(b.state().unwrap(), BootState::default(), "nothing staged");

    // Staged while readable, then a FIFO appears: apply writes nothing,
    // returns at once and keeps the keys staged.
    std::fs::remove_dir(&txt).unwrap();
    std::fs::write(&txt, "dtoverlay=vc4\n").unwrap();
    assert!(b.take(&cfg).unwrap());
    std::fs::remove_file(&txt).unwrap();
    nix::unistd::mkfifo(&txt, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = b.apply_staged().unwrap_err();
    assert!(err.to_string().contains("is a FIFO"), "{err}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&txt)
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(b.state().unwrap().staged, Some(map(&[("gpu_mem", "64")])));
}

#[test]
fn damaged_state_is_an_error_and_config_txt_stays_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("config.txt");
    std::fs::write(&txt, "dtoverlay=vc4\ngpu_mem=16\n").unwrap();
    let b = BootConfig::new(&txt, dir.path());
    let cfg = map(&[("BALENA_HOST_CONFIG_gpu_mem", "64")]);

    std::fs::write(&b.state_file, "{\"managed\": [\"gpu_").unwrap();
    let err = b.take(&cfg).unwrap_err();
    assert!(matches!(err, BootConfigError::StateDamaged { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("boot-config.json is damaged"), "{msg}");
    assert!(msg.contains("remove it"), "{msg}");
    assert!(b.apply_staged().is_err());
    assert_eq!(
        std::fs::read(&b.state_file).unwrap(),
        b"{\"managed\": [\"gpu_",
        "the damaged file is left for the user"
    );

    std::fs::remove_file(&b.state_file).unwrap();
    std::fs::write(&b.device_file, "not json").unwrap();
    let err = b.take(&cfg).unwrap_err();
    assert!(
        err.to_string().contains("device-config.json is damaged"),
        "{err}"
    );
    assert_eq!(std::fs::read(&txt).unwrap(), b"dtoverlay=vc4\ngpu_mem=16\n");
}

#[test]
fn an_unmounted_boot_partition_gets_no_config_txt() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    let txt = boot.join("config.txt");
    let b = BootConfig::new(&txt, dir.path());
    let cfg = map(&[("BALENA_HOST_CONFIG_gpu_mem", "64")]);
    assert!(b.take(&cfg).unwrap());
    // An empty directory on the same file system: a mount point with
    // nothing mounted.
    let e = b.apply_staged().unwrap_err();
    assert!(matches!(e, BootConfigError::NotMounted { .. }), "{e}");
    assert!(!txt.exists());
    assert!(b.state().unwrap().staged.is_some(), "still staged");
    // Files there: a real directory where config.txt is simply new.
    std::fs::write(boot.join("cmdline.txt"), b"x").unwrap();
    assert!(b.apply_staged().unwrap());
    assert_eq!(std::fs::read_to_string(&txt).unwrap(), "gpu_mem=64\n");
}
