//! Who this device is in the fleet: `[fleet] id`, else config.json's
//! `uuid`, else an id derived from `/etc/machine-id` the way systemd's
//! `sd_id128_get_machine_app_specific()` derives one (so
//! `systemd-id128 machine-id --app-specific=4b21fc4d66754b0e9924c623ae68c1d3`
//! prints the same), which does not give the machine id itself away.

use std::path::Path;

use sha2::{Digest, Sha256};

/// holdfast's application id for the derived id (fixed: changing it
/// changes every derived fleet id).
pub const APP_ID: [u8; 16] = [
    0x4b, 0x21, 0xfc, 0x4d, 0x66, 0x75, 0x4b, 0x0e, 0x99, 0x24, 0xc6, 0x23, 0xae, 0x68, 0xc1, 0xd3,
];

/// Where the id came from, for the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    Config,
    ConfigJson,
    MachineId,
}

impl IdSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IdSource::Config => "config",
            IdSource::ConfigJson => "config.json uuid",
            IdSource::MachineId => "machine-id (app-specific)",
        }
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `sd_id128_get_machine_app_specific(machine, app)` as lower-case hex.
pub fn app_specific(machine: [u8; 16], app: [u8; 16]) -> String {
    let h = hmac_sha256(&machine, &app);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    // A v4 UUID, as systemd's id128_make_v4_uuid() makes it.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    crate::fsutil::hex(&id)
}

/// `/etc/machine-id`'s 32 hex digits.
pub fn parse_machine_id(text: &str) -> Option<[u8; 16]> {
    let t = text.trim();
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()?;
    }
    (out != [0; 16]).then_some(out)
}

/// The id in force: the configured one, else config.json's `uuid`, else
/// the derived one. `Err` when none can be had.
pub fn resolve(
    configured: Option<&str>,
    config_json: &Path,
    machine_id: &Path,
) -> Result<(String, IdSource), String> {
    if let Some(id) = configured {
        return Ok((id.to_owned(), IdSource::Config));
    }
    match config_json_uuid(config_json) {
        Ok(Some(uuid)) => return Ok((uuid, IdSource::ConfigJson)),
        Ok(None) => {}
        // Resolved once at start: said once, naming the file and why.
        Err(why) => tracing::warn!(file = %config_json.display(), reason = %why,
            "the fleet id does not come from {}: {why}; it is derived from {} instead",
            config_json.display(), machine_id.display()),
    }
    let text = std::fs::read_to_string(machine_id).map_err(|e| {
        format!(
            "no [fleet] id, no config.json uuid, and {}: {e}",
            machine_id.display()
        )
    })?;
    let m = parse_machine_id(&text)
        .ok_or_else(|| format!("{} is not a machine id", machine_id.display()))?;
    Ok((app_specific(m, APP_ID), IdSource::MachineId))
}

/// config.json's `uuid`: `Ok(None)` when there is no file or no uuid in
/// it, `Err` with why when one is there and cannot be used.
fn config_json_uuid(path: &Path) -> Result<Option<String>, String> {
    let bytes = match crate::fsutil::read_regular(path, 1 << 20) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {}", e.reason())),
    };
    let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_owned())?;
    let v = crate::devconfig::parse(&text, &path.display().to_string())
        .map_err(|e| format!("it does not parse: {e}"))?;
    match v.get("uuid") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(u)) if super::valid_id(u) => Ok(Some(u.clone())),
        Some(u) => Err(format!(
            "its uuid {} is not 1 to 128 printable characters without spaces or '/'",
            crate::text::shown(&u.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn derived_like_systemd() {
        // `systemd-id128 machine-id --app-specific=4b21fc4d...` on a machine
        // whose /etc/machine-id is 3d1219c7c4c5404aaa1f6d2a48adfda4 (systemd 252).
        let m = parse_machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(app_specific(m, APP_ID), "c176a0072ca34c71812710fee2def2b0");
        let m = parse_machine_id("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(app_specific(m, APP_ID), "53a37a920c56442babbd25b8a802429e");
        assert_eq!(parse_machine_id("00000000000000000000000000000000"), None);
        assert_eq!(parse_machine_id("xyz"), None);
    }

    /// Against systemd itself, where it and a machine id are there.
    #[test]
    fn derived_like_this_machines_systemd() {
        let Ok(text) = std::fs::read_to_string("/etc/machine-id") else {
            return;
        };
        let Some(m) = parse_machine_id(&text) else {
            return;
        };
        let app: String = APP_ID.iter().map(|b| format!("{b:02x}")).collect();
        let Ok(out) = std::process::Command::new("systemd-id128")
            .args(["machine-id", &format!("--app-specific={app}")])
            .output()
        else {
            return;
        };
        if out.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                app_specific(m, APP_ID)
            );
        }
    }

    #[test]
    fn configured_beats_config_json_beats_machine_id() {
        let t = tempfile::tempdir().unwrap();
        let cj = t.path().join("config.json");
        let mid = t.path().join("machine-id");
        std::fs::write(&mid, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(
            resolve(None, &cj, &mid).unwrap(),
            (
                "53a37a920c56442babbd25b8a802429e".into(),
                IdSource::MachineId
            )
        );
        std::fs::write(&cj, r#"{"uuid": "d0a1b2"}"#).unwrap();
        assert_eq!(
            resolve(None, &cj, &mid).unwrap(),
            ("d0a1b2".into(), IdSource::ConfigJson)
        );
        assert_eq!(
            resolve(Some("dev-7"), &cj, &mid).unwrap(),
            ("dev-7".into(), IdSource::Config)
        );
        std::fs::remove_file(&cj).unwrap();
        std::fs::remove_file(&mid).unwrap();
        assert!(resolve(None, &cj, &mid).is_err());
    }

    #[test]
    fn an_unusable_config_json_uuid_says_why() {
        let t = tempfile::tempdir().unwrap();
        let cj = t.path().join("config.json");
        assert_eq!(config_json_uuid(&cj), Ok(None));
        std::fs::write(&cj, r#"{"deviceType": "x"}"#).unwrap();
        assert_eq!(config_json_uuid(&cj), Ok(None));
        std::fs::write(&cj, "{\"uuid\": \"ab\\u0001c\"}").unwrap();
        let why = config_json_uuid(&cj).unwrap_err();
        assert!(why.starts_with("its uuid \"ab\\u0001c\" is not"), "{why}");
        assert!(!why.contains('\u{1}'), "{why}");
        std::fs::write(&cj, r#"{"uuid": "a b"}"#).unwrap();
        assert!(config_json_uuid(&cj).is_err());
        std::fs::write(&cj, r#"{"uuid": "#).unwrap();
        assert!(config_json_uuid(&cj)
            .unwrap_err()
            .starts_with("it does not parse"));
        std::fs::remove_file(&cj).unwrap();
        std::fs::create_dir(&cj).unwrap();
        assert!(config_json_uuid(&cj)
            .unwrap_err()
            .starts_with("cannot read it"));
    }
}
