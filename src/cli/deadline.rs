//! `--deadline` values: a duration from now (`90s`, `30m`, `2h`, `1d`,
//! `1h 30m`), a UTC time (`2026-11-22T18:00:00Z`) or `@<epoch seconds>`.

use std::time::UNIX_EPOCH;

/// The last second of year 9999: as far as a time can be written (and shown
/// back in `status`), so nothing later is accepted in any form.
pub const MAX_SECS: u64 = 253_402_300_799;

const FORMS: &str = "a duration (90s, 30m, 2h, 1d, \"1h 30m\"), a UTC time (2026-11-22T18:00:00Z) or @epoch-seconds";

/// Microseconds since the epoch; never 0, which the daemon reads as "no
/// deadline" (a past deadline forces the reboot at once, `@0` included).
pub fn parse(text: &str, now_usec: u64) -> Result<u64, String> {
    let bad = |why: &str| format!("deadline {text:?}: {why}");
    let too_far = || bad("too far in the future (the latest is 9999-12-31T23:59:59Z)");
    let usec = if let Some(epoch) = text.strip_prefix('@') {
        let secs: u64 = match epoch.parse() {
            Ok(s) => s,
            // All digits, yet no u64: a number too large, not a typo.
            Err(_) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(too_far())
            }
            Err(_) => return Err(bad("expected @ followed by whole seconds since the epoch")),
        };
        if secs > MAX_SECS {
            return Err(too_far());
        }
        secs * 1_000_000
    } else if looks_like_time(text) {
        let t = humantime::parse_rfc3339(text).map_err(|e| match e {
            humantime::TimestampError::InvalidFormat => {
                bad("a time must be UTC and complete, like 2026-11-22T18:00:00Z")
            }
            e => bad(&e.to_string()),
        })?;
        let since = t.duration_since(UNIX_EPOCH).map_err(|_| too_far())?;
        u64::try_from(since.as_micros()).map_err(|_| too_far())?
    } else {
        let d = humantime::parse_duration(text.trim()).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_far(),
            e => bad(&format!("{e}; expected {FORMS}")),
        })?;
        u64::try_from(d.as_micros())
            .ok()
            .and_then(|d| now_usec.checked_add(d))
            .filter(|t| t / 1_000_000 <= MAX_SECS)
            .ok_or_else(too_far)?
    };
    Ok(usec.max(1))
}

/// `YYYY-MM-DD…`: no duration starts with four digits and a dash.
fn looks_like_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_times_and_epochs() {
        assert_eq!(parse("90s", 1_000_000), Ok(91_000_000));
        assert_eq!(parse("2h", 0), Ok(7_200_000_000));
        assert_eq!(parse("1h 30m", 0), Ok(5_400_000_000));
        assert_eq!(parse("1d", 0), Ok(86_400_000_000));
        assert_eq!(parse("@1795000000", 0), Ok(1_795_000_000_000_000));
        assert_eq!(parse("1970-01-02T00:00:00Z", 0), Ok(86_400_000_000));
        assert_eq!(parse("2026-11-22T18:00:00Z", 0), Ok(1_795_370_400_000_000));
        assert_eq!(
            parse("2026-11-22T18:00:00+00:00", 0),
            Ok(1_795_370_400_000_000)
        );
        // 32-bit targets (armv7) cannot represent times past 2038 this way:
        // an error there, never a panic.
        let last = parse("9999-12-31T23:59:59Z", 0);
        if cfg!(target_pointer_width = "64") {
            assert_eq!(last, Ok(MAX_SECS * 1_000_000));
        } else {
            assert!(last.is_ok() || last.unwrap_err().contains("out of range"));
        }
        assert!(parse("soon", 0).is_err());
        assert!(parse("", 0).is_err());
        assert!(parse("@", 0).is_err());
        assert!(parse("@-5", 0).is_err());
        assert!(parse("2026-13-22T18:00:00Z", 0).is_err());
    }

    #[test]
    fn times_must_say_utc() {
        let e = parse("2026-11-22 18:00:00", 0).unwrap_err();
        assert!(e.contains("must be UTC"), "{e}");
        assert!(parse("2026-11-22T18:00:00+01:00", 0).is_err());
    }

    #[test]
    fn zero_is_never_returned() {
        // 0 would mean "no deadline" to the daemon.
        assert_eq!(parse("@0", 5), Ok(1));
        assert_eq!(parse("0s", 0), Ok(1));
    }

    #[test]
    fn huge_values_are_errors_not_overflows() {
        let now = 1_795_000_000_000_000;
        for text in [
            "99999999999999999d",
            "18446744073709551615s",
            "999999999999999999999999s",
            "600000y",
            "@18446744073709551615",
            "@99999999999999999999999",
            "@253402300800",
        ] {
            let e = parse(text, now).unwrap_err();
            assert!(e.contains("too far in the future"), "{text}: {e}");
        }
        // Fits in a u64 only without `now` added.
        let e = parse("584000y", u64::MAX - 1).unwrap_err();
        assert!(e.contains("too far in the future"), "{e}");
        assert!(parse("1d", u64::MAX).is_err());
    }
}
