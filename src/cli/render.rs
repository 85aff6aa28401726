//! Human output for the CLI.

use std::time::{Duration, UNIX_EPOCH};

use crate::cli::deadline::MAX_SECS;
use crate::command::LockInfo;
use crate::text::shown;

/// `YYYY-MM-DD HH:MM:SSZ` for microseconds since the epoch; times past year
/// 9999 (any u64 can arrive over D-Bus) as `@<epoch seconds>`.
pub fn utc(usec: u64) -> String {
    let secs = usec / 1_000_000;
    if secs > MAX_SECS {
        return format!("@{secs}");
    }
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replacen('T', " ", 1)
}

pub fn lock_table(locks: &[LockInfo], with_holders: bool) -> String {
    if locks.is_empty() {
        return "no locks\n".into();
    }
    let rows: Vec<[String; 6]> = locks
        .iter()
        .map(|l| {
            let holders = if !with_holders {
                "?".to_owned()
            } else if l.holders.is_empty() {
                "-".to_owned()
            } else {
                // A process names itself: its comm is outside text.
                l.holders
                    .iter()
                    .map(|h| format!("{} {} ({})", h.pid, shown(&h.comm), shown(&h.how)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [
                shown(&l.service),
                shown(&l.owner),
                shown(&l.kind),
                utc(l.since_usec),
                if l.stale { "yes" } else { "no" }.to_owned(),
                holders,
            ]
        })
        .collect();
    let header = ["SERVICE", "OWNER", "KIND", "SINCE", "STALE", "HOLDERS"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:w$}  ", w = widths[i]));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The holdfast.toml key of a `settings` JSON key: `inhibit_what` is
/// `inhibit.what` (the tables of the file), `lock_root` stays.
fn file_key(json_key: &str) -> String {
    for table in ["inhibit", "engine", "target", "boot", "api"] {
        if let Some(rest) = json_key
            .strip_prefix(table)
            .and_then(|r| r.strip_prefix('_'))
        {
            return format!("{table}.{rest}");
        }
    }
    json_key.to_owned()
}

/// Config keys whose value in the files differs from the one holdfastd runs
/// with. A key the daemon does not report cannot be compared: left out.
pub fn pending_keys(files: &serde_json::Value, in_force: &serde_json::Value) -> Vec<String> {
    let Some(files) = files.as_object() else {
        return Vec::new();
    };
    files
        .iter()
        .filter(|(k, v)| in_force.get(k.as_str()).is_some_and(|f| f != *v))
        .map(|(k, _)| file_key(k))
        .collect()
}

/// What brings a changed key into force; holdfastd keeps these two on a
/// reload (daemon::reload).
fn not_in_force(key: &str) -> &'static str {
    match key {
        "lock_root" | "state_dir" => {
            "not in force: a reload keeps the old value, restart with systemctl restart holdfast"
        }
        _ => "not in force: reload with systemctl reload holdfast",
    }
}

/// `config show` rows (`key = value  # source`) with the pending ones marked
/// after their source.
pub fn mark_pending(rendered: &str, pending: &[String]) -> String {
    let mut out = String::with_capacity(rendered.len());
    for line in rendered.lines() {
        out.push_str(line);
        let key = line.split(" = ").next().unwrap_or_default();
        if pending.iter().any(|p| p == key) {
            out.push_str(&format!(" ({})", not_in_force(key)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_795_000_000_000_000), "2026-11-18 11:06:40Z");
        assert_eq!(utc(951_782_400_000_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(MAX_SECS * 1_000_000 + 999_999), "9999-12-31 23:59:59Z");
    }

    #[test]
    fn beyond_year_9999_is_epoch_seconds() {
        assert_eq!(utc((MAX_SECS + 1) * 1_000_000), "@253402300800");
        assert_eq!(utc(u64::MAX), "@18446744073709");
    }

    #[test]
    fn a_holder_named_with_escape_sequences_is_shown_escaped() {
        let l = LockInfo {
            service: "app1/main".into(),
            owner: "app".into(),
            kind: "file".into(),
            since_usec: 0,
            stale: false,
            holders: vec![crate::command::HolderInfo {
                pid: 7,
                comm: "x\x1b[2J\nforged".into(),
                how: "open".into(),
            }],
        };
        let t = lock_table(&[l], true);
        assert!(t.contains("7 x\\u{1b}[2J\\nforged (open)"), "{t}");
        assert_eq!(t.lines().count(), 2, "{t}");
    }

    #[test]
    fn pending_keys_use_file_names() {
        let files = serde_json::json!({
            "lock_root": "/a", "inhibit_what": ["shutdown", "sleep"],
            "api_tcp": null, "boot_config_txt": "/b", "new_key": 1,
        });
        let in_force = serde_json::json!({
            "lock_root": "/old", "inhibit_what": ["shutdown"],
            "api_tcp": null, "boot_config_txt": "/b",
        });
        assert_eq!(
            pending_keys(&files, &in_force),
            ["inhibit.what", "lock_root"]
        );
    }

    #[test]
    fn marks_only_pending_rows() {
        let text = "lock_root = \"/a\"      # /etc/h.toml\ninhibit.what = [\"shutdown\"]  # default\napi.tcp = (off)  # default\n";
        let out = mark_pending(text, &["inhibit.what".into(), "lock_root".into()]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("# /etc/h.toml (not in force: a reload keeps the old value, restart with systemctl restart holdfast)"), "{out}");
        assert!(
            lines[1].ends_with("# default (not in force: reload with systemctl reload holdfast)"),
            "{out}"
        );
        assert_eq!(lines[2], "api.tcp = (off)  # default");
    }
}
