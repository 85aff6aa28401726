//! Service options with nested shapes: `networks`, `depends_on`,
//! `healthcheck`, `extra_hosts`, `ulimits`, `logging`.

use serde_json::{json, Map, Value};

use super::convert::{at, idx, key, reject, Ctx};
use super::yaml::{Kind, Node};
use super::{q, At};

impl Ctx<'_> {
    /// A list of names, or name -> `{aliases, ipv4_address}`.
    pub fn service_networks(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let mut out = Map::new();
        let declared = |cx: &Self, name: &str, node: &Node, p: &str| {
            if name != crate::target::DEFAULT_NETWORK && !cx.networks.contains(name) {
                return Err(at(
                    node,
                    p,
                    format!(
                        "network {} is not declared under the top-level networks",
                        q(name)
                    ),
                ));
            }
            Ok(())
        };
        match &n.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = idx(path, i);
                    let name = self.required(item, &ip)?;
                    declared(self, &name, item, &ip)?;
                    self.mark(&key(path, &name), item.pos)?;
                    out.insert(name, json!({}));
                }
            }
            _ => {
                for e in self.names(n, path)? {
                    let p = key(path, &e.key);
                    declared(self, &e.key, &e.value, &p)?;
                    self.mark(&p, e.key_pos)?;
                    let mut net = Map::new();
                    for ne in self.mapping(&e.value, &p)? {
                        let np = key(&p, &ne.key);
                        let value = match ne.key.as_str() {
                            "aliases" => self.strings(&ne.value, &np)?,
                            "ipv4_address" => self.string(&ne.value, &np)?,
                            _ => {
                                return Err(reject(
                                    ne,
                                    &p,
                                    &["aliases", "ipv4_address"],
                                    &[
                                        "ipv6_address",
                                        "link_local_ips",
                                        "mac_address",
                                        "priority",
                                        "gw_priority",
                                        "driver_opts",
                                        "interface_name",
                                    ],
                                ))
                            }
                        };
                        net.insert(ne.key.clone(), value);
                    }
                    out.insert(e.key.clone(), Value::Object(net));
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// A list of services, or service -> `{condition, required, restart}`.
    pub fn depends_on(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        if let Kind::Seq(_) = n.kind {
            return self.strings(n, path);
        }
        let mut out = Map::new();
        for e in self.names(n, path)? {
            let p = key(path, &e.key);
            self.mark(&p, e.key_pos)?;
            let mut dep = Map::new();
            for de in self.mapping(&e.value, &p)? {
                let dp = key(&p, &de.key);
                match de.key.as_str() {
                    "condition" => {
                        dep.insert("condition".into(), self.string(&de.value, &dp)?);
                    }
                    "required" => {
                        if self.boolean(&de.value, &dp)? == Value::Bool(false) {
                            return Err(at(&de.value, &dp, "an optional dependency (required: false) is not supported by holdfast"));
                        }
                    }
                    // Restarting dependents when a dependency is updated:
                    // holdfast replaces what changed, in dependency order.
                    "restart" => {
                        self.boolean(&de.value, &dp)?;
                    }
                    _ => return Err(reject(de, &p, &["condition", "required", "restart"], &[])),
                }
            }
            out.insert(e.key.clone(), Value::Object(dep));
        }
        Ok(Value::Object(out))
    }

    pub fn healthcheck(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let mut out = Map::new();
        for e in self.mapping(n, path)? {
            let p = key(path, &e.key);
            let v = &e.value;
            let value = match e.key.as_str() {
                "test" => match v.kind {
                    Kind::Seq(_) => self.strings(v, &p)?,
                    _ => json!(["CMD-SHELL", self.required(v, &p)?]),
                },
                "interval" | "timeout" | "start_period" => self.string(v, &p)?,
                "retries" => self.integer(v, &p)?,
                "disable" => self.boolean(v, &p)?,
                _ => {
                    return Err(reject(
                        e,
                        path,
                        &[
                            "test",
                            "interval",
                            "timeout",
                            "retries",
                            "start_period",
                            "disable",
                        ],
                        &["start_interval"],
                    ))
                }
            };
            self.mark(&p, v.pos)?;
            out.insert(e.key.clone(), value);
        }
        Ok(Value::Object(out))
    }

    /// `["host:ip"]`, `["host=ip"]` or `{host: ip}` (or a list of ips).
    pub fn extra_hosts(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let mut out = Vec::new();
        match &n.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = idx(path, i);
                    let s = self.required(item, &p)?;
                    let s = match s.split_once('=') {
                        Some((h, ip)) if !h.contains(':') => format!("{h}:{ip}"),
                        _ => s,
                    };
                    self.mark(&idx(path, out.len()), item.pos)?;
                    out.push(Value::String(s));
                }
            }
            _ => {
                for e in self.names(n, path)? {
                    let p = key(path, &e.key);
                    let ips = match e.value.kind {
                        Kind::Seq(_) => self.strings(&e.value, &p)?,
                        _ => json!([self.required(&e.value, &p)?]),
                    };
                    for ip in ips.as_array().into_iter().flatten() {
                        self.mark(&idx(path, out.len()), e.value.pos)?;
                        out.push(json!(format!(
                            "{}:{}",
                            e.key,
                            ip.as_str().unwrap_or_default()
                        )));
                    }
                }
            }
        }
        self.mark(path, n.pos)?;
        Ok(Value::Array(out))
    }

    /// name -> limit, or name -> `{soft, hard}`.
    pub fn ulimits(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let mut out = Map::new();
        for e in self.names(n, path)? {
            let p = key(path, &e.key);
            self.mark(&p, e.value.pos)?;
            let value = match e.value.kind {
                Kind::Map(_) => {
                    let mut pair = Map::new();
                    for le in self.mapping(&e.value, &p)? {
                        let lp = key(&p, &le.key);
                        match le.key.as_str() {
                            "soft" | "hard" => {
                                pair.insert(le.key.clone(), self.integer(&le.value, &lp)?);
                            }
                            _ => return Err(reject(le, &p, &["soft", "hard"], &[])),
                        }
                    }
                    Value::Object(pair)
                }
                _ => self.integer(&e.value, &p)?,
            };
            out.insert(e.key.clone(), value);
        }
        Ok(Value::Object(out))
    }

    pub fn logging(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let mut out = Map::new();
        for e in self.mapping(n, path)? {
            let p = key(path, &e.key);
            let value = match e.key.as_str() {
                "driver" => self.string(&e.value, &p)?,
                "options" => self.dict(&e.value, &p, false)?,
                _ => return Err(reject(e, path, &["driver", "options"], &[])),
            };
            out.insert(e.key.clone(), value);
        }
        Ok(Value::Object(out))
    }
}
