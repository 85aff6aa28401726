//! `.swu` archives no tool writes, built in memory: cpio `newc`,
//! `sw-description` first, then any entries (listed or not, any name).

use super::fake::sha256;

/// One cpio newc entry.
fn entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let namesize = name.len() + 1;
    let fields = [0, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// An archive of `entries` in this order, `sw-description` first, with
/// the trailer and padding.
pub fn archive(description: &str, entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    entry(&mut out, "sw-description", description.as_bytes());
    for (name, data) in entries {
        entry(&mut out, name, data);
    }
    entry(&mut out, "TRAILER!!!", b"");
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

/// `sw-description` listing a target file `t.json` with `target`'s hash.
pub fn target_description(target: &[u8]) -> String {
    format!(
        "software = {{ version = \"1.0.0\"; images: ( {{ filename = \"t.json\"; \
         type = \"holdfast-target\"; sha256 = \"{}\"; }} ); }};",
        sha256(target)
    )
}

/// A release whose target is `target` (any bytes: it may not parse).
pub fn target_release(target: &[u8]) -> Vec<u8> {
    archive(&target_description(target), &[("t.json", target)])
}

/// A release carrying a compose file for app `app`.
pub fn compose_release(app: &str, yaml: &[u8]) -> Vec<u8> {
    let d = format!(
        "software = {{ version = \"1.0.0\"; images: ( {{ filename = \"docker-compose.yml\"; \
         type = \"holdfast-compose\"; sha256 = \"{}\"; properties = {{ app = \"{app}\"; }}; }} ); }};",
        sha256(yaml)
    );
    archive(&d, &[("docker-compose.yml", yaml)])
}

/// About `len` bytes that no compression or dedup makes small, different
/// for each `seed`.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `<sha256>.swu` into `dir`: a release of no apps whose first
/// entry is an image of `len` zero bytes (hashed by holdfast as it reads it), built
/// on disk, never whole in memory. Answers the artifact's sha256.
pub fn image_release(dir: &std::path::Path, len: usize) -> String {
    use std::io::Write;
    let sha = |cmd: &str| -> String {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}");
        String::from_utf8(out.stdout).unwrap()[..64].to_owned()
    };
    let image = sha(&format!("head -c {len} /dev/zero | sha256sum"));
    let target = br#"{"version": 1, "apps": {}}"#;
    let d = format!(
        "software = {{ version = \"1.0.0\"; images: ( {{ filename = \"app.tar\"; \
         type = \"holdfast-image\"; sha256 = \"{image}\"; }}, {{ filename = \"t.json\"; \
         type = \"holdfast-target\"; sha256 = \"{}\"; }} ); }};",
        sha256(target)
    );
    let tmp = dir.join("release.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut head = Vec::new();
    entry(&mut head, "sw-description", d.as_bytes());
    // The image's header: an entry with no data, its size set after.
    let at = head.len();
    entry(&mut head, "app.tar", b"");
    let size = at + 6 + 6 * 8;
    head[size..size + 8].copy_from_slice(format!("{len:08X}").as_bytes());
    f.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        f.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    let mut tail = vec![0u8; (4 - (head.len() + len) % 4) % 4];
    let mut trailer = Vec::new();
    entry(&mut trailer, "t.json", target);
    entry(&mut trailer, "TRAILER!!!", b"");
    tail.extend_from_slice(&trailer);
    let total = head.len() + len + tail.len();
    tail.resize(tail.len() + (512 - total % 512) % 512, 0);
    f.write_all(&tail).unwrap();
    f.into_inner().unwrap().sync_all().unwrap();
    let hash = sha(&format!("sha256sum {}", tmp.display()));
    std::fs::rename(&tmp, dir.join(format!("{hash}.swu"))).unwrap();
    hash
}
