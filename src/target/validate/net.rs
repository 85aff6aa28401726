//! Addresses, subnets and DNS names as the engine and the resolver take
//! them. Written with std::net: the checks are small.

use std::net::{IpAddr, Ipv4Addr};

use super::q;

/// An IPv4 or IPv6 subnet `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{} is not a subnet like 172.20.0.0/16 or fd00:1::/64", q(s));
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        // Digits only: "+8" and "08" are not prefixes the engine reads.
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!(
                "{}: the prefix length is at most {max} for an IPv{} subnet",
                q(s),
                if addr.is_ipv4() { 4 } else { 6 }
            ));
        }
        Ok(Cidr { addr, prefix })
    }

    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    /// The first `prefix` bits of `addr`, aligned left within its width.
    fn network(addr: IpAddr, prefix: u8) -> u128 {
        let (bits, width) = Self::bits(addr);
        let host = u32::from(width - prefix);
        if host >= 128 {
            0
        } else {
            (bits >> host) << host
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && Self::network(ip, self.prefix) == Self::network(self.addr, self.prefix)
    }

    /// `other` lies wholly inside this subnet.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }
}

pub(super) fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{} is not an IPv4 address like 172.20.0.5", q(s)))
}

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{} is not an IPv4 or IPv6 address (no brackets)", q(s)))
}

/// A DNS name: dot-separated labels of 1-63 letters, digits and '-' (and
/// '_' when `underscore`, as the engine's resolver takes service names),
/// not starting or ending with '-'; at most `max` characters, an optional
/// final '.' when `trailing_dot`.
pub(super) fn dns_name(s: &str, underscore: bool, trailing_dot: bool, max: usize) -> bool {
    let body = if trailing_dot {
        s.strip_suffix('.').unwrap_or(s)
    } else {
        s
    };
    !body.is_empty()
        && s.len() <= max
        && body.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || (underscore && c == '_'))
        })
}

/// The kernel's limit for host and domain names (`__NEW_UTS_LEN`).
const UTS_LEN: usize = 64;

/// `hostname` or `domainname`: RFC 1123 labels, at most 64 characters
/// (sethostname(2) refuses more when the container starts).
pub(super) fn check_uts_name(v: &str) -> Result<(), String> {
    if dns_name(v, false, false, UTS_LEN) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a host name: dot-separated labels of 1-63 letters, digits and '-' \
             (not first or last in a label), at most {UTS_LEN} characters in all",
            q(v)
        ))
    }
}

/// A `dns_search` domain; `.` alone means "no search domain".
pub(super) fn check_search_domain(v: &str) -> Result<(), String> {
    if v == "." || dns_name(v, false, true, 253) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a domain name: dot-separated labels of 1-63 letters, digits and '-' \
             (not first or last in a label), at most 253 characters, or '.' for none",
            q(v)
        ))
    }
}

/// A network alias: a DNS name; '_' allowed, as in service names.
pub(super) fn check_alias(v: &str) -> Result<(), String> {
    if dns_name(v, true, false, 253) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a DNS name: dot-separated labels of 1-63 letters, digits, '_' and '-' \
             (not first or last in a label), at most 253 characters",
            q(v)
        ))
    }
}
