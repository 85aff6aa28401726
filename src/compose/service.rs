//! One compose service to a target service: each key holdfast takes, in
//! compose's shapes, normalized to the one shape the target has.

use serde_json::{json, Map, Value};

use super::convert::{at, idx, key, reject, Ctx};
use super::envfile::parse_env_file;
use super::yaml::{Kind, Node, Type};
use super::At;

/// Compose's service keys holdfast takes (the target's field names).
#[rustfmt::skip]
pub const KNOWN: &[&str] = &[
    "image", "command", "entrypoint", "environment", "env_file", "labels", "volumes", "tmpfs",
    "restart", "network_mode", "networks", "ports", "expose", "privileged", "devices",
    "working_dir", "user", "stop_signal", "stop_grace_period", "depends_on", "healthcheck",
    "cap_add", "cap_drop", "sysctls", "extra_hosts", "dns", "dns_search", "hostname",
    "domainname", "mem_limit", "memswap_limit", "cpus", "cpu_shares", "cpuset", "pids_limit",
    "ulimits", "shm_size", "read_only", "init", "security_opt", "group_add", "ipc", "pid",
    "logging", "oom_score_adj",
];

/// Compose's service keys holdfast does not take.
#[rustfmt::skip]
pub const UNSUPPORTED: &[&str] = &[
    "annotations", "attach", "blkio_config", "cgroup", "cgroup_parent", "configs",
    "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "credential_spec", "deploy", "develop", "device_cgroup_rules", "dns_opt",
    "driver_opts", "external_links", "extends", "gpus", "isolation", "label_file", "links",
    "mac_address", "mem_reservation", "mem_swappiness", "models", "oom_kill_disable",
    "platform", "post_start", "pre_stop", "profiles", "provider", "pull_policy", "runtime",
    "scale", "secrets", "stdin_open", "storage_opt", "tty", "use_api_socket", "userns_mode",
    "uts", "volumes_from",
];

impl Ctx<'_> {
    pub fn service(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let entries = self.mapping(n, path)?;
        let mut out = Map::new();
        let mut env_file: Option<Map<String, Value>> = None;
        let mut tmpfs_extra = Vec::new();
        for e in &entries {
            let p = key(path, &e.key);
            let v = &e.value;
            if matches!(v.kind, Kind::Scalar(_, Type::Null)) {
                // `key:` with nothing: as if not given.
                continue;
            }
            let value = match e.key.as_str() {
                "build" => {
                    return Err(At::new(
                        e.key_pos,
                        &p,
                        "holdfast runs images; build and push them first, then name the image in `image`",
                    ))
                }
                "image" | "working_dir" | "user" | "stop_signal" | "hostname" | "domainname"
                | "cpuset" | "ipc" | "pid" | "network_mode" | "stop_grace_period" => {
                    self.string(v, &p)?
                }
                "command" | "entrypoint" => self.command(v, &p)?,
                "environment" => self.dict(v, &p, true)?,
                "env_file" => {
                    env_file = Some(self.env_files(v, &p)?);
                    continue;
                }
                "labels" | "sysctls" => self.dict(v, &p, false)?,
                "volumes" => {
                    let (binds, tmpfs) = self.volume_list(v, &p)?;
                    tmpfs_extra = tmpfs;
                    binds
                }
                "tmpfs" | "dns" | "dns_search" => self.string_or_list(v, &p)?,
                "restart" => self.restart(v, &p)?,
                "networks" => self.service_networks(v, &p)?,
                "ports" => self.ports(v, &p)?,
                "expose" | "devices" | "cap_add" | "cap_drop" | "security_opt" | "group_add" => {
                    self.strings(v, &p)?
                }
                "privileged" | "read_only" | "init" => self.boolean(v, &p)?,
                "depends_on" => self.depends_on(v, &p)?,
                "healthcheck" => self.healthcheck(v, &p)?,
                "extra_hosts" => self.extra_hosts(v, &p)?,
                "mem_limit" | "memswap_limit" | "shm_size" | "cpus" => self.number_or_string(v, &p)?,
                "cpu_shares" | "pids_limit" | "oom_score_adj" => self.integer(v, &p)?,
                "ulimits" => self.ulimits(v, &p)?,
                "logging" => self.logging(v, &p)?,
                _ => return Err(reject(e, path, KNOWN, UNSUPPORTED)),
            };
            out.insert(e.key.clone(), value);
        }
        if let Some(mut from_files) = env_file {
            // `environment` wins over env_file.
            if let Some(Value::Object(env)) = out.remove("environment") {
                from_files.extend(env);
            }
            out.insert("environment".into(), Value::Object(from_files));
        }
        if !tmpfs_extra.is_empty() {
            let list = out.entry("tmpfs").or_insert_with(|| json!([]));
            let list = list.as_array_mut().expect("tmpfs is a list");
            let tmpfs_path = key(path, "tmpfs");
            for (s, pos) in tmpfs_extra {
                self.mark(&idx(&tmpfs_path, list.len()), pos)?;
                list.push(Value::String(s));
            }
        }
        if out.contains_key("network_mode") && out.contains_key("networks") {
            let e = entries
                .iter()
                .find(|e| e.key == "networks")
                .expect("present");
            return Err(At::new(
                e.key_pos,
                &key(path, "networks"),
                "networks and network_mode cannot be combined: network_mode takes the service off the app's networks",
            ));
        }
        if !out.contains_key("image") {
            // At the service's name.
            let pos = self.positions.get(path).copied().unwrap_or(n.pos);
            return Err(At::new(
                pos,
                path,
                "no \"image\": holdfast runs images (build and push them first)",
            ));
        }
        Ok(Value::Object(out))
    }

    /// A list as it is, or a string split as a shell would (no expansion).
    fn command(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        if let Kind::Seq(_) = n.kind {
            return self.strings(n, path);
        }
        let s = self.required(n, path)?;
        self.mark(path, n.pos)?;
        let words = shell_split(&s).map_err(|r| at(n, path, r))?;
        Ok(json!(words))
    }

    fn restart(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let s = self.required(n, path)?;
        if let Some(count) = s.strip_prefix("on-failure:") {
            return Err(at(n, path, format!(
                "\"on-failure:{}\": a retry limit is not supported by holdfast; use on-failure (retries without limit), always, unless-stopped or no",
                crate::text::clip(count, crate::text::SHOWN_MAX)
            )));
        }
        self.string(n, path)
    }

    /// `env_file`: a path, or a list of paths or `{path, required}`.
    fn env_files(&mut self, n: &Node, path: &str) -> Result<Map<String, Value>, At> {
        let items: Vec<(&Node, String)> = match &n.kind {
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| (x, idx(path, i)))
                .collect(),
            _ => vec![(n, path.to_owned())],
        };
        let mut out = Map::new();
        for (item, p) in items {
            let (file, required) = match &item.kind {
                Kind::Map(_) => {
                    let mut file = None;
                    let mut required = true;
                    for e in self.mapping(item, &p)? {
                        let ep = key(&p, &e.key);
                        match e.key.as_str() {
                            "path" => file = Some(self.required(&e.value, &ep)?),
                            "required" => {
                                required = self.boolean(&e.value, &ep)? == Value::Bool(true)
                            }
                            _ => return Err(reject(e, &p, &["path", "required"], &["format"])),
                        }
                    }
                    (file.ok_or_else(|| at(item, &p, "no \"path\""))?, required)
                }
                _ => (self.required(item, &p)?, true),
            };
            let full = super::join_clean(self.dir, &file);
            let shown = crate::text::shown(&full.display().to_string());
            let bytes = match self.host.read(&full) {
                Ok(Some(b)) => b,
                Ok(None) if !required => continue,
                Ok(None) => return Err(at(item, &p, format!("{shown} does not exist"))),
                Err(r) => return Err(at(item, &p, format!("{shown}: {r}"))),
            };
            self.reads
                .add(&bytes)
                .map_err(|r| at(item, &p, format!("{shown}: {r}")))?;
            let text = String::from_utf8_lossy(&bytes);
            let lookup = |k: &str| self.env(k);
            let vars = parse_env_file(&text, &lookup, self.budget).map_err(|e| {
                at(
                    item,
                    &p,
                    format!("{shown}:{}:{}: {}", e.line, e.column, e.reason),
                )
            })?;
            let env_path = path
                .rsplit_once('.')
                .map_or("environment".to_owned(), |(s, _)| key(s, "environment"));
            for (k, v) in vars {
                self.mark(&key(&env_path, &k), item.pos)?;
                out.insert(k, Value::String(v.to_string()));
            }
        }
        Ok(out)
    }
}

/// Splits a command string into words as compose does (go-shellwords):
/// blanks separate words; '...' is literal; "..." keeps blanks; a
/// backslash outside '...' takes the next character as it is. No
/// expansion, and shell operators are refused: no shell runs the words.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let (mut single, mut double) = (false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if single {
            match c {
                '\'' => single = false,
                c => word.push(c),
            }
            continue;
        }
        match c {
            '\\' => {
                word.push(chars.next().ok_or("a \\ at the end of the command")?);
                in_word = true;
            }
            '"' => {
                double = !double;
                in_word = true;
            }
            '\'' if !double => {
                single = true;
                in_word = true;
            }
            c if c.is_whitespace() && !double => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            ';' | '&' | '|' | '<' | '>' | '`' if !double => {
                return Err(format!(
                    "{c:?} is shell syntax, and no shell runs this command; \
                     write a list such as [\"sh\", \"-c\", \"...\"]"
                ))
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if single || double {
        return Err("a quote without its closing quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}
