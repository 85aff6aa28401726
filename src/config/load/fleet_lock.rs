//! `[fleet.lock]`: refused whole without the `fleet` feature; with it,
//! one backend's keys, checked (the files are read when the client is
//! made, at start).

use toml::Spanned;

use super::super::fragment::FleetLockFragment;
use super::super::settings::FleetLockSettings;
use super::{ConfigError, Parsed};

#[cfg(not(feature = "fleet"))]
pub(super) fn fleet_lock(
    p: &Parsed,
    l: &Spanned<FleetLockFragment>,
) -> Result<FleetLockSettings, ConfigError> {
    Err(super::without_fleet(
        p,
        l.span(),
        "fleet.lock",
        "fleet-wide slots",
    ))
}

#[cfg(feature = "fleet")]
pub(super) fn fleet_lock(
    p: &Parsed,
    l: &Spanned<FleetLockFragment>,
) -> Result<FleetLockSettings, ConfigError> {
    use super::super::settings::{LockBackend, TlsFiles};
    use crate::fleet::url::{HttpUrl, Scheme};
    use std::time::Duration;

    let span = l.span();
    let l = l.get_ref();
    let err = |s: Option<std::ops::Range<usize>>, key: &str, r: String| {
        p.error(s.or(Some(span.clone())), &format!("fleet.lock.{key}"), r)
    };
    let forbid = |present: bool, key: &str, backend: &str| match present {
        true => Err(err(
            None,
            key,
            format!("is not a key of backend = \"{backend}\""),
        )),
        false => Ok(()),
    };
    // The URL as written (less a trailing `/`), and whether it is https.
    let url = |v: &Spanned<String>, key: &str| -> Result<(String, bool), ConfigError> {
        let s = v.get_ref();
        let u = HttpUrl::parse(s).map_err(|r| err(Some(v.span()), key, format!("{s:?}: {r}")))?;
        Ok((
            s.trim_end_matches('/').to_owned(),
            u.scheme == Scheme::Https,
        ))
    };
    let file = |v: &Option<Spanned<String>>, key: &str| {
        v.as_ref()
            .map(|v| super::abs_path(p, &format!("fleet.lock.{key}"), v))
            .transpose()
    };
    let tls = TlsFiles {
        ca_file: file(&l.ca_file, "ca_file")?,
        cert_file: file(&l.cert_file, "cert_file")?,
        key_file: file(&l.key_file, "key_file")?,
    };
    // TLS files beside only http URLs: the user meant TLS and would not get it.
    let tls_unused = |any_https: bool, what: &str| {
        let set = [
            ("ca_file", &l.ca_file),
            ("cert_file", &l.cert_file),
            ("key_file", &l.key_file),
        ];
        match set.iter().find(|(_, v)| v.is_some()) {
            Some((key, v)) if !any_https => Err(err(
                v.as_ref().map(Spanned::span),
                key,
                format!("is for https, but {what} http://"),
            )),
            _ => Ok(()),
        }
    };
    let duration = |v: &Spanned<String>, key: &str, min: Duration| {
        humantime::parse_duration(v.get_ref())
            .ok()
            .filter(|d| *d >= min)
            .ok_or_else(|| {
                err(
                    Some(v.span()),
                    key,
                    format!(
                        "{:?} is not a duration like \"30s\" or \"1h\" of at least {}",
                        v.get_ref(),
                        humantime::format_duration(min)
                    ),
                )
            })
    };
    let Some(kind) = &l.backend else {
        return Err(err(
            None,
            "backend",
            "is required: \"etcd\" or \"fleetlock\"".into(),
        ));
    };
    let backend = match kind.get_ref().as_str() {
        "etcd" => {
            forbid(l.url.is_some(), "url", "etcd")?;
            let Some(e) = &l.endpoints else {
                return Err(err(
                    None,
                    "endpoints",
                    "is required with backend = \"etcd\"".into(),
                ));
            };
            if e.get_ref().is_empty() {
                return Err(err(Some(e.span()), "endpoints", "names no endpoint".into()));
            }
            let mut endpoints = Vec::new();
            let mut any_https = false;
            for s in e.get_ref() {
                let (u, https) = url(&Spanned::new(e.span(), s.clone()), "endpoints")?;
                endpoints.push(u);
                any_https |= https;
            }
            if l.user.is_some() != l.password_file.is_some() {
                return Err(err(
                    None,
                    "user",
                    "user and password_file go together".into(),
                ));
            }
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(err(
                    None,
                    "cert_file",
                    "cert_file and key_file go together (a client certificate and its key)".into(),
                ));
            }
            tls_unused(any_https, "every endpoint is")?;
            LockBackend::Etcd {
                endpoints,
                user: l.user.as_ref().map(|u| u.get_ref().clone()),
                password_file: file(&l.password_file, "password_file")?,
                tls,
            }
        }
        "fleetlock" => {
            forbid(l.endpoints.is_some(), "endpoints", "fleetlock")?;
            forbid(
                l.cert_file.is_some() || l.key_file.is_some(),
                "cert_file",
                "fleetlock",
            )?;
            forbid(
                l.user.is_some() || l.password_file.is_some(),
                "user",
                "fleetlock",
            )?;
            forbid(l.stale_after.is_some(), "stale_after", "fleetlock")?;
            let Some(u) = &l.url else {
                return Err(err(
                    None,
                    "url",
                    "is required with backend = \"fleetlock\"".into(),
                ));
            };
            let (url, https) = url(u, "url")?;
            tls_unused(https, "url is")?;
            LockBackend::Fleetlock { url, tls }
        }
        other => {
            return Err(err(
                Some(kind.span()),
                "backend",
                format!("{other:?} is not one of \"etcd\", \"fleetlock\""),
            ))
        }
    };
    Ok(FleetLockSettings {
        backend,
        reboots: l.reboots.unwrap_or(true),
        updates: l.updates.unwrap_or(false),
        stale_after: l
            .stale_after
            .as_ref()
            .map(|v| duration(v, "stale_after", Duration::from_secs(1)))
            .transpose()?,
        lease_ttl: match &l.lease_ttl {
            Some(v) => duration(v, "lease_ttl", Duration::from_secs(2))?,
            None => Duration::from_secs(30),
        },
    })
}
