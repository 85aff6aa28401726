//! `--deadline` values: a duration from now (`90s`, `30m`, `2h`, `1d`), a
//! UTC time (`2026-11-22T18:00:00Z`) or `@<epoch seconds>`.

/// Microseconds since the epoch.
pub fn parse(text: &str, now_usec: u64) -> Result<u64, String> {
    let bad = || {
        format!("{text:?} is not a duration (90s, 30m, 2h, 1d), a UTC time (2026-11-22T18:00:00Z) or @epoch-seconds")
    };
    if let Some(epoch) = text.strip_prefix('@') {
        return epoch
            .parse::<u64>()
            .map(|s| s * 1_000_000)
            .map_err(|_| bad());
    }
    if text.ends_with('Z') {
        return utc(text).ok_or_else(bad);
    }
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            'd' => n * 86_400,
            _ => return Err(bad()),
        };
        return Ok(now_usec + secs * 1_000_000);
    }
    Err(bad())
}

/// `YYYY-MM-DDTHH:MM:SSZ` to microseconds since the epoch.
fn utc(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs).ok().map(|s| s * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn durations_times_and_epochs() {
        assert_eq!(parse("90s", 1_000_000), Ok(91_000_000));
        assert_eq!(parse("2h", 0), Ok(7_200_000_000));
        assert_eq!(parse("@1795000000", 0), Ok(1_795_000_000_000_000));
        assert_eq!(parse("1970-01-02T00:00:00Z", 0), Ok(86_400_000_000));
        assert_eq!(parse("2026-11-22T18:00:00Z", 0), Ok(1_795_370_400_000_000));
        assert!(parse("soon", 0).is_err());
        assert!(parse("2026-13-22T18:00:00Z", 0).is_err());
    }
}
