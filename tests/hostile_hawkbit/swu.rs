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
