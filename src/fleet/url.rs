//! `http://host:port/prefix` as the fleet backends need it (plain HTTP:
//! this build has no TLS client).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`, what to connect to and the `Host` header.
    pub authority: String,
    /// Path prefix without a trailing `/` (may be empty).
    pub prefix: String,
}

impl HttpUrl {
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| "is not an http:// URL".to_owned())?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if auth.is_empty() || auth.contains('@') || path.contains(['?', '#']) {
            return Err("needs a host, and no user, query or fragment".into());
        }
        if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err("has spaces or control characters".into());
        }
        let has_port = match auth.rfind(':') {
            Some(i) => !auth.ends_with(']') && auth[i + 1..].parse::<u16>().is_ok(),
            None => false,
        };
        let authority = if has_port {
            auth.to_owned()
        } else if auth.contains(':') && !auth.ends_with(']') {
            return Err("has a port that is not a number".into());
        } else {
            format!("{auth}:80")
        };
        Ok(HttpUrl {
            authority,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_backends_need() {
        let u = HttpUrl::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("127.0.0.1:2379", "")
        );
        let u = HttpUrl::parse("http://airlock/base/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("airlock:80", "/base")
        );
        let u = HttpUrl::parse("http://[::1]:3333").unwrap();
        assert_eq!(u.authority, "[::1]:3333");
        for bad in [
            "https://x",
            "http://",
            "http://a:b",
            "http://u@h",
            "http://h/?q",
            "ftp://h",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
