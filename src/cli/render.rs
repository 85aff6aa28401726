//! Human output for the CLI.

use crate::command::LockInfo;

/// `YYYY-MM-DD HH:MM:SSZ` for microseconds since the epoch.
pub fn utc(usec: u64) -> String {
    let secs = usec / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    }
}
