//! Human output for the CLI.

use std::time::{Duration, UNIX_EPOCH};

use crate::cli::deadline::MAX_SECS;
use crate::command::LockInfo;

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
                l.holders
                    .iter()
                    .map(|h| format!("{} {} ({})", h.pid, h.comm, h.how))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [
                l.service.clone(),
                l.owner.clone(),
                l.kind.clone(),
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
}
