//! `[fleet.hawkbit]`: the hawkBit server releases come from.

use toml::Spanned;

#[cfg(feature = "fleet")]
use super::abs_path;
use super::{ConfigError, Parsed};
use crate::config::fragment::HawkbitFragment;
use crate::config::settings::HawkbitSettings;
#[cfg(feature = "fleet")]
use crate::config::settings::{HawkbitAuth, LocalTarget};

/// Largest artifact by default: a release with its image archives.
#[cfg(feature = "fleet")]
pub const DEFAULT_MAX_DOWNLOAD: u64 = 2 << 30;

#[cfg(not(feature = "fleet"))]
pub(super) fn settings(
    p: &Parsed,
    h: &Spanned<HawkbitFragment>,
) -> Result<HawkbitSettings, ConfigError> {
    Err(super::without_fleet(
        p,
        h.span(),
        "fleet.hawkbit",
        "releases from hawkBit",
    ))
}

#[cfg(feature = "fleet")]
pub(super) fn settings(
    p: &Parsed,
    h: &Spanned<HawkbitFragment>,
) -> Result<HawkbitSettings, ConfigError> {
    let span = h.span();
    let h = h.get_ref();
    let err = |s: Option<std::ops::Range<usize>>, key: &str, r: String| {
        p.error(s.or(Some(span.clone())), &format!("fleet.hawkbit.{key}"), r)
    };
    let Some(url) = &h.url else {
        return Err(err(None, "url", "is required".into()));
    };
    let url_text = url.get_ref().trim_end_matches('/');
    crate::fleet::url::HttpUrl::parse(url_text)
        .map_err(|r| err(Some(url.span()), "url", format!("{url_text:?}: {r}")))?;
    let tenant = match &h.tenant {
        Some(t) if valid_segment(t.get_ref()) => t.get_ref().clone(),
        Some(t) => {
            return Err(err(
                Some(t.span()),
                "tenant",
                format!(
                    "{:?} is not 1 to 64 letters, digits, '-', '_' or '.'",
                    t.get_ref()
                ),
            ))
        }
        None => "DEFAULT".into(),
    };
    let controller_id = match &h.controller_id {
        Some(c) if crate::fleet::valid_id(c.get_ref()) => Some(c.get_ref().clone()),
        Some(c) => {
            return Err(err(
                Some(c.span()),
                "controller_id",
                format!(
                    "{:?} is not 1 to 128 printable characters without spaces or '/'",
                    c.get_ref()
                ),
            ))
        }
        None => None,
    };
    let auth = match (&h.token_file, &h.gateway_token_file) {
        (Some(_), Some(g)) => {
            return Err(err(
                Some(g.span()),
                "gateway_token_file",
                "give token_file or gateway_token_file, not both".into(),
            ))
        }
        (Some(t), None) => HawkbitAuth::TargetToken(abs_path(p, "fleet.hawkbit.token_file", t)?),
        (None, Some(g)) => {
            HawkbitAuth::GatewayToken(abs_path(p, "fleet.hawkbit.gateway_token_file", g)?)
        }
        (None, None) => HawkbitAuth::None,
    };
    let local_target = match h.local_target.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "refuse")) => LocalTarget::Refuse,
        Some((_, "allow")) => LocalTarget::Allow,
        Some((v, other)) => {
            return Err(err(
                Some(v.span()),
                "local_target",
                format!("{other:?} is not one of \"refuse\", \"allow\""),
            ))
        }
    };
    let max_download = match &h.max_download {
        Some(v) => parse_size(v.get_ref())
            .filter(|n| *n >= 1 << 20)
            .ok_or_else(|| {
                err(
                    Some(v.span()),
                    "max_download",
                    format!(
                        "{:?} is not a size like \"512MiB\" or \"2GiB\" of at least 1MiB",
                        v.get_ref()
                    ),
                )
            })?,
        None => DEFAULT_MAX_DOWNLOAD,
    };
    Ok(HawkbitSettings {
        url: url_text.to_owned(),
        tenant,
        controller_id,
        auth,
        ca_file: h
            .ca_file
            .as_ref()
            .map(|v| abs_path(p, "fleet.hawkbit.ca_file", v))
            .transpose()?,
        local_target,
        max_download,
    })
}

/// A tenant goes into the URL path as one segment.
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
fn valid_segment(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// `1048576`, `512MiB`, `2GiB`, `100MB`, `64KiB`.
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok()?;
    let unit: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("100MB"), Some(100_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "2 parsecs",
            "99999999999999999999GiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn tenants_are_one_path_segment() {
        assert!(valid_segment("DEFAULT") && valid_segment("my-tenant_1"));
        for bad in ["", "a/b", "..", "a b", "ä"] {
            assert!(!valid_segment(bad), "{bad}");
        }
    }
}
