//! SWUpdate's version forms, which gooseBit also checks on upload (it
//! answers 422 to others): up to four dot-separated numbers of at most
//! 65535 each (`1.2.3.4`), or semver with minor and patch optional
//! (`1.2.3-rc.1+build.7`).

/// Far above any real version; keeps messages and logs short.
pub const MAX_LEN: usize = 128;

pub fn is_swupdate_version(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && (is_numbers(v) || is_semver(v))
}

fn is_numbers(v: &str) -> bool {
    v.split('.').count() <= 4
        && v.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 0xffff)
        })
}

fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    // The core has no `-`, so the first one starts the pre-release.
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    core.split('.').count() <= 3
        && core.split('.').all(numeric_id)
        && pre.is_none_or(|p| p.split('.').all(|id| numeric_id(id) || alnum_id(id)))
        && build.is_none_or(|b| b.split('.').all(|id| !id.is_empty() && id_chars(id)))
}

/// `0` or digits without a leading zero.
fn numeric_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0'))
}

/// A pre-release identifier that is not only digits.
fn alnum_id(id: &str) -> bool {
    !id.is_empty() && id_chars(id) && !id.bytes().all(|b| b.is_ascii_digit())
}

fn id_chars(id: &str) -> bool {
    id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
