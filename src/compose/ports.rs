//! `ports`, short syntax (`[[ip:]host:]container[/proto]`, ranges, IPv6
//! in brackets) and long syntax, to the target's port lines.

use serde_json::Value;

use super::convert::{at, idx, key, reject, Ctx, MAX_PORT_LINES};
use super::yaml::{Kind, Node};
use super::{q, At};

/// `a-b` as (a, b), or `a` as (a, a). A range spans at most 65536
/// ports (all there are): each becomes a line.
fn range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && b - a <= u32::from(u16::MAX)).then_some((a, b))
}

/// One port mapping to `[ip:]host:container[/udp]` lines (one per port of
/// a range).
fn port_lines(ip: &str, host: &str, container: &str, proto: &str) -> Result<Vec<String>, String> {
    if host.is_empty() {
        return Err(format!(
            "container port {} is published on a random host port; holdfast needs the host port: HOST:CONTAINER",
            crate::text::clip(container, crate::text::SHOWN_MAX)
        ));
    }
    let bad = || {
        format!(
            "{}:{} is not a port or a range like 8000-8009",
            q(host),
            q(container)
        )
    };
    let (h0, h1) = range(host).ok_or_else(bad)?;
    let (c0, c1) = range(container).ok_or_else(bad)?;
    if h1 - h0 != c1 - c0 {
        return Err(format!(
            "host ports {} and container ports {} are ranges of different lengths; holdfast maps port to port",
            crate::text::clip(host, crate::text::SHOWN_MAX),
            crate::text::clip(container, crate::text::SHOWN_MAX)
        ));
    }
    let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
        Some(v6) => v6,
        None => ip,
    };
    let suffix = match proto {
        "" | "tcp" => "",
        "udp" => "/udp",
        other => {
            return Err(format!(
                "protocol {} is not supported by holdfast (tcp or udp)",
                q(other)
            ))
        }
    };
    Ok((0..=h1 - h0)
        .map(|i| {
            let pair = format!("{}:{}{suffix}", h0 + i, c0 + i);
            if ip.is_empty() {
                pair
            } else {
                format!("{ip}:{pair}")
            }
        })
        .collect())
}

/// `[[ip:]host:]container[/proto]`, IPv6 addresses in brackets.
fn short_port(s: &str) -> Result<Vec<String>, String> {
    let (spec, proto) = s.split_once('/').unwrap_or((s, ""));
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(v6) => {
            let (addr, rest) = v6.split_once("]:").ok_or_else(|| {
                format!(
                    "{}: an IPv6 address in [] is followed by :HOST:CONTAINER",
                    q(s)
                )
            })?;
            (addr, rest)
        }
        None => ("", spec),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    match (ip, parts.as_slice()) {
        (_, [c]) if ip.is_empty() => port_lines("", "", c, proto),
        ("", [c, h]) => port_lines("", h, c, proto),
        ("", [c, h, ip]) => port_lines(ip, h, c, proto),
        (ip, [c, h]) => port_lines(ip, h, c, proto),
        _ => Err(format!(
            "{} is not [[host-ip:]host-port:]container-port[/protocol]",
            q(s)
        )),
    }
}
impl Ctx<'_> {
    pub fn ports(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos)?;
        let Kind::Seq(items) = &n.kind else {
            return Err(at(n, path, format!("expected a list, not {}", n.what())));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            let lines = match &item.kind {
                Kind::Map(_) => self.long_port(item, &p)?,
                _ => {
                    let s = self.required(item, &p)?;
                    short_port(&s).map_err(|r| at(item, &p, r))?
                }
            };
            self.port_lines += lines.len();
            if self.port_lines > MAX_PORT_LINES {
                return Err(at(
                    item,
                    &p,
                    format!("the ports of this file expand to more than {MAX_PORT_LINES} mappings"),
                ));
            }
            for l in lines {
                self.mark(&idx(path, out.len()), item.pos)?;
                out.push(Value::String(l));
            }
        }
        Ok(Value::Array(out))
    }

    /// `{target, published, host_ip, protocol, mode, name, app_protocol}`.
    fn long_port(&mut self, n: &Node, path: &str) -> Result<Vec<String>, At> {
        let (mut target, mut published) = (None, String::new());
        let (mut ip, mut proto) = (String::new(), String::new());
        for e in self.mapping(n, path)? {
            let p = key(path, &e.key);
            match e.key.as_str() {
                "target" => target = Some(self.required(&e.value, &p)?),
                "published" => published = self.required(&e.value, &p)?,
                "host_ip" => ip = self.required(&e.value, &p)?,
                "protocol" => proto = self.required(&e.value, &p)?,
                // Swarm's ingress does not exist on one device; names
                // are for humans.
                "mode" | "name" | "app_protocol" => {
                    self.required(&e.value, &p)?;
                }
                _ => {
                    return Err(reject(
                        e,
                        path,
                        &[
                            "target",
                            "published",
                            "host_ip",
                            "protocol",
                            "mode",
                            "name",
                            "app_protocol",
                        ],
                        &[],
                    ))
                }
            }
        }
        let target = target.ok_or_else(|| at(n, path, "no \"target\" (the container port)"))?;
        port_lines(&ip, &published, &target, &proto).map_err(|r| at(n, path, r))
    }
}
