//! `http://` and `https://` URLs as the fleet clients need them: a base
//! (`host:port` and a path prefix) for the backends, or an absolute link
//! split into that base and the path and query to request (hawkBit gives
//! absolute hrefs).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: Scheme,
    /// The host as TLS checks it: a DNS name or an IP address, an IPv6
    /// literal without its brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` (IPv6 in brackets): what to connect to; errors name it.
    pub authority: String,
    /// Path prefix without a trailing `/` (may be empty).
    pub prefix: String,
}

impl HttpUrl {
    /// A base URL: no query or fragment; a trailing `/` is dropped.
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        let (mut url, path) = Self::base(s)?;
        if path.contains(['?', '#']) {
            return Err("has a query or fragment (only a path may follow the host)".into());
        }
        url.prefix = path.trim_end_matches('/').to_owned();
        Ok(url)
    }

    /// An absolute link: the URL with an empty prefix, and the path and
    /// query to request (at least `/`; a fragment is not sent).
    pub fn split(s: &str) -> Result<(HttpUrl, String), String> {
        let (url, rest) = Self::base(s)?;
        let rest = rest.split('#').next().unwrap_or("");
        let path = if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        };
        Ok((url, path))
    }

    /// The `Host` header: the default port left out, as browsers send it
    /// (servers that build links from it then give the same form back).
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            match self.host.contains(':') {
                true => format!("[{}]", self.host),
                false => self.host.clone(),
            }
        } else {
            self.authority.clone()
        }
    }

    /// Everything but the prefix; the rest of the text (from the path on)
    /// is returned as it stands.
    fn base(s: &str) -> Result<(HttpUrl, &str), String> {
        if s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err("has spaces or control characters".into());
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((sc, rest)) if sc.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((sc, rest)) if sc.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            _ => return Err("is not an http:// or https:// URL".into()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (auth, path) = rest.split_at(end);
        if auth.is_empty() || auth.contains('@') {
            return Err("needs a host, and no user or password".into());
        }
        let (host, port) = match auth.strip_prefix('[') {
            Some(v6) => {
                let (ip, after) = v6
                    .split_once(']')
                    .ok_or_else(|| "has an IPv6 address without its closing ]".to_owned())?;
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!("has {ip:?} in brackets, not an IPv6 address"));
                }
                match after {
                    "" => (ip, None),
                    p => match p.strip_prefix(':') {
                        Some(p) => (ip, Some(p)),
                        None => return Err("has text after the IPv6 address".into()),
                    },
                }
            }
            None => match auth.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth, None),
            },
        };
        if host.is_empty() || host.contains(['[', ']']) {
            return Err("needs a host".into());
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| "has a port that is not a number from 1 to 65535".to_owned())?,
        };
        let authority = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        Ok((
            HttpUrl {
                scheme,
                host: host.to_owned(),
                port,
                authority,
                prefix: String::new(),
            },
            path,
        ))
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
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Http, "127.0.0.1", 2379)
        );
        let u = HttpUrl::parse("http://airlock/base/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("airlock:80", "/base")
        );
        assert_eq!(u.host_header(), "airlock");
        let u = HttpUrl::parse("http://[::1]:3333").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host.as_str()),
            ("[::1]:3333", "::1")
        );
        assert_eq!(u.host_header(), "[::1]:3333");
        for bad in [
            "http://",
            "http://a:b",
            "http://a:0",
            "http://a:70000",
            "http://u@h",
            "http://u:pw@h/x",
            "http://h/?q",
            "http://h?q",
            "http://h#f",
            "ftp://h",
            "https//h",
            "http://[::1",
            "http://[nothost]:1",
            "http://[::1]x",
            "http://h/a b",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_defaults_to_443_and_keeps_the_host_for_sni() {
        let u = HttpUrl::parse("https://etcd.example").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.authority.as_str()),
            (Scheme::Https, "etcd.example", 443, "etcd.example:443")
        );
        assert_eq!(u.host_header(), "etcd.example");
        let u = HttpUrl::parse("HTTPS://[fd00::1]/v3/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str(), u.prefix.as_str()),
            ("fd00::1", "[fd00::1]:443", "/v3")
        );
        assert_eq!(u.host_header(), "[fd00::1]");
        let u = HttpUrl::parse("https://10.0.0.2:2379").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.2", 2379));
        assert_eq!(u.host_header(), "10.0.0.2:2379");
    }

    #[test]
    fn splits_absolute_links() {
        let (u, p) = HttpUrl::split(
            "https://hawkbit.example:8443/DEFAULT/controller/v1/dev1/softwaremodules/3/artifacts/a%20b.swu?x=1&y=2#frag",
        )
        .unwrap();
        assert_eq!(
            (u.scheme, u.authority.as_str(), u.prefix.as_str()),
            (Scheme::Https, "hawkbit.example:8443", "")
        );
        assert_eq!(
            p,
            "/DEFAULT/controller/v1/dev1/softwaremodules/3/artifacts/a%20b.swu?x=1&y=2"
        );
        assert_eq!(HttpUrl::split("http://h").unwrap().1, "/");
        assert_eq!(HttpUrl::split("http://h?q=1").unwrap().1, "/?q=1");
        assert_eq!(HttpUrl::split("http://[::1]:8080/a/").unwrap().1, "/a/");
        for bad in [
            "/relative/path",
            "https://",
            "https://u@h/x",
            "http://h/a b",
        ] {
            assert!(HttpUrl::split(bad).is_err(), "{bad}");
        }
    }
}
