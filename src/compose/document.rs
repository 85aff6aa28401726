//! The top level of a compose file: `services`, `networks` and `volumes`
//! (extensions, `version` and `name` accepted and left out).

use serde_json::{json, Map, Value};

use super::convert::{at, idx, key, reject, Ctx};
use super::yaml::{Kind, Node};
use super::{q, At};

/// Compose's top-level keys holdfast does not take.
const TOP_UNSUPPORTED: &[&str] = &["secrets", "configs", "include", "models"];
const TOP_KNOWN: &[&str] = &["version", "name", "services", "networks", "volumes"];

impl Ctx<'_> {
    /// The whole file: the app's target JSON, without `release`.
    pub fn document(&mut self, root: &Node) -> Result<Value, At> {
        let Kind::Map(entries) = &root.kind else {
            return Err(at(
                root,
                "",
                format!("a compose file is a mapping, not {}", root.what()),
            ));
        };
        let mut app = json!({});
        let find = |k: &str| entries.iter().find(|e| e.key == k);
        for e in entries {
            match e.key.as_str() {
                "version" | "name" | "services" | "networks" | "volumes" => {}
                k if k.starts_with("x-") => {}
                _ => return Err(reject(e, "", TOP_KNOWN, TOP_UNSUPPORTED)),
            }
        }
        if let Some(e) = find("networks") {
            app["networks"] = self.top_level(&e.value, "networks", true)?;
        }
        if let Some(e) = find("volumes") {
            app["volumes"] = self.top_level(&e.value, "volumes", false)?;
        }
        let Some(services) = find("services") else {
            return Err(at(
                root,
                "",
                "no \"services\": a compose file for holdfast names at least its services",
            ));
        };
        let mut out = Map::new();
        for e in self.names(&services.value, "services")? {
            let p = key("services", &e.key);
            if e.key.len() > crate::names::MAX_NAME_LEN {
                return Err(At::new(
                    e.key_pos,
                    &p,
                    format!(
                        "service name {} is longer than {} bytes",
                        q(&e.key),
                        crate::names::MAX_NAME_LEN
                    ),
                ));
            }
            if let Err(err) = crate::names::ServiceName::new(e.key.as_str()) {
                return Err(At::new(e.key_pos, &p, format!("service name: {err}")));
            }
            self.mark(&p, e.key_pos)?;
            out.insert(e.key.clone(), self.service(&e.value, &p)?);
        }
        app["services"] = Value::Object(out);
        Ok(app)
    }

    /// Top-level `networks` or `volumes`: name -> definition (or null).
    fn top_level(&mut self, n: &Node, path: &str, networks: bool) -> Result<Value, At> {
        let mut out = Map::new();
        for e in self.names(n, path)? {
            let p = key(path, &e.key);
            self.mark(&p, e.key_pos)?;
            if networks {
                self.networks.insert(e.key.clone());
            } else {
                self.volumes.insert(e.key.clone());
            }
            let def = self.definition(&e.value, &p, networks)?;
            out.insert(e.key.clone(), def);
        }
        Ok(Value::Object(out))
    }

    fn definition(&mut self, n: &Node, path: &str, network: bool) -> Result<Value, At> {
        let what = if network { "network" } else { "volume" };
        let mut out = Map::new();
        for e in self.mapping(n, path)? {
            let p = key(path, &e.key);
            let v = &e.value;
            let value = match (e.key.as_str(), network) {
                ("driver", _) => self.string(v, &p)?,
                ("driver_opts", _) | ("labels", _) => self.dict(v, &p, false)?,
                ("internal" | "enable_ipv6", true) => self.boolean(v, &p)?,
                ("ipam", true) => self.ipam(v, &p)?,
                ("external", _) => {
                    if self.boolean(v, &p)? == Value::Bool(false) {
                        continue;
                    }
                    return Err(At::new(e.key_pos, &p, format!(
                        "an external {what} is not supported by holdfast: it creates each {what} of an app itself, named <app>_<name>"
                    )));
                }
                ("name", _) => {
                    return Err(At::new(e.key_pos, &p, format!(
                        "a {what} name of its own is not supported by holdfast: it names each {what} <app>_<name>"
                    )))
                }
                _ => {
                    let (known, unsupported): (&[&str], &[&str]) = if network {
                        (&["driver", "driver_opts", "internal", "enable_ipv6", "ipam", "labels"],
                         &["attachable", "enable_ipv4"])
                    } else {
                        (&["driver", "driver_opts", "labels"], &[])
                    };
                    return Err(reject(e, path, known, unsupported));
                }
            };
            out.insert(e.key.clone(), value);
        }
        Ok(Value::Object(out))
    }

    fn ipam(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let mut out = Map::new();
        for e in self.mapping(n, path)? {
            let p = key(path, &e.key);
            let value = match e.key.as_str() {
                "driver" => self.string(&e.value, &p)?,
                "config" => {
                    self.mark(&p, e.value.pos)?;
                    let Kind::Seq(items) = &e.value.kind else {
                        return Err(at(&e.value, &p, "expected a list of pools"));
                    };
                    let mut pools = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let ip = idx(&p, i);
                        let mut pool = Map::new();
                        for pe in self.mapping(item, &ip)? {
                            let pp = key(&ip, &pe.key);
                            match pe.key.as_str() {
                                "subnet" | "gateway" | "ip_range" => {
                                    pool.insert(pe.key.clone(), self.string(&pe.value, &pp)?);
                                }
                                _ => {
                                    return Err(reject(
                                        pe,
                                        &ip,
                                        &["subnet", "gateway", "ip_range"],
                                        &["aux_addresses"],
                                    ))
                                }
                            }
                        }
                        pools.push(Value::Object(pool));
                    }
                    Value::Array(pools)
                }
                _ => return Err(reject(e, path, &["driver", "config"], &["options"])),
            };
            out.insert(e.key.clone(), value);
        }
        Ok(Value::Object(out))
    }
}
