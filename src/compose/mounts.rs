//! Service `volumes`, short and long syntax: binds (relative host paths
//! made absolute), named volumes (declared at the top level) and tmpfs.

use serde_json::Value;

use super::convert::{at, idx, key, reject, Ctx};
use super::yaml::{Kind, Node, Pos, Type};
use super::{q, At};

impl Ctx<'_> {
    /// Service `volumes`: binds and named volumes (the target's `volumes`)
    /// and, from the long syntax, tmpfs mounts (with their positions).
    pub fn volume_list(&mut self, n: &Node, path: &str) -> Result<(Value, Vec<(String, Pos)>), At> {
        self.mark(path, n.pos)?;
        let Kind::Seq(items) = &n.kind else {
            return Err(at(n, path, format!("expected a list, not {}", n.what())));
        };
        let (mut binds, mut tmpfs) = (Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            match &item.kind {
                Kind::Map(_) => match self.long_volume(item, &p)? {
                    Mount::Bind(s) => {
                        self.mark(&idx(path, binds.len()), item.pos)?;
                        binds.push(Value::String(s));
                    }
                    Mount::Tmpfs(s) => tmpfs.push((s, item.pos)),
                },
                _ => {
                    let s = self.required(item, &p)?;
                    let line = self.short_volume(&s).map_err(|r| at(item, &p, r))?;
                    self.mark(&idx(path, binds.len()), item.pos)?;
                    binds.push(Value::String(line));
                }
            }
        }
        Ok((Value::Array(binds), tmpfs))
    }

    /// A bind's host path (relative ones from the compose file's
    /// directory, `~` from HOME) or a declared volume's name.
    fn source(&self, src: &str) -> Result<String, String> {
        if src.starts_with('/') {
            return Ok(src.to_owned());
        }
        if src == "." || src.starts_with("./") || src == ".." || src.starts_with("../") {
            return Ok(super::join_clean(self.dir, src).display().to_string());
        }
        if let Some(rest) = src.strip_prefix('~') {
            if !(rest.is_empty() || rest.starts_with('/')) {
                return Err(format!("{}: only ~ and ~/path are understood", q(src)));
            }
            let home = self
                .env("HOME")
                .ok_or_else(|| format!("{}: HOME is not set", q(src)))?;
            return Ok(super::join_clean(
                std::path::Path::new(&*home),
                rest.trim_start_matches('/'),
            )
            .display()
            .to_string());
        }
        if !self.volumes.contains(src) {
            return Err(format!(
                "volume {} is not declared under the top-level volumes (a host path starts with /, ./ or ../)",
                q(src)
            ));
        }
        Ok(src.to_owned())
    }

    /// `source:target[:options]`.
    fn short_volume(&self, s: &str) -> Result<String, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dest, opts) = match parts.as_slice() {
            [_] => return Err(format!(
                "{} is an anonymous volume, not supported by holdfast; name it (name:{}) and declare it under the top-level volumes",
                q(s), crate::text::clip(s, crate::text::SHOWN_MAX)
            )),
            [src, dest] => (*src, *dest, ""),
            [src, dest, opts] => (*src, *dest, *opts),
            _ => return Err(format!("{} is not source:target[:options]", q(s))),
        };
        let mut ro = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => ro = true,
                "rw" => ro = false,
                // Docker Desktop's; nothing on Linux.
                "cached" | "delegated" | "consistent" => {}
                _ => {
                    return Err(format!(
                        "volume option {} is not supported by holdfast (ro or rw)",
                        q(o)
                    ))
                }
            }
        }
        Ok(line(&self.source(src)?, dest, ro))
    }

    /// `{type, source, target, read_only, bind, volume, tmpfs, consistency}`.
    fn long_volume(&mut self, n: &Node, path: &str) -> Result<Mount, At> {
        let (mut ty, mut ty_node, mut src, mut dest) = ("volume".to_owned(), n, None, None);
        let (mut ro, mut tmpfs_opts) = (false, Vec::new());
        for e in self.mapping(n, path)? {
            let p = key(path, &e.key);
            let v = &e.value;
            match e.key.as_str() {
                "type" => {
                    ty = self.required(v, &p)?;
                    ty_node = v;
                }
                "source" => src = Some((self.required(v, &p)?, v)),
                "target" => dest = Some(self.required(v, &p)?),
                "read_only" => ro = self.boolean(v, &p)? == Value::Bool(true),
                "consistency" => {
                    self.required(v, &p)?;
                }
                "bind" => {
                    for b in self.mapping(v, &p)? {
                        match b.key.as_str() {
                            // The engine's binds create a missing host path.
                            "create_host_path" => {
                                self.boolean(&b.value, &key(&p, &b.key))?;
                            }
                            _ => {
                                return Err(reject(
                                    b,
                                    &p,
                                    &["create_host_path"],
                                    &["propagation", "selinux", "recursive"],
                                ))
                            }
                        }
                    }
                }
                "tmpfs" => {
                    for t in self.mapping(v, &p)? {
                        let tp = key(&p, &t.key);
                        match t.key.as_str() {
                            "size" => tmpfs_opts.push(format!(
                                "size={}",
                                self.required(&t.value, &tp)?.to_ascii_lowercase()
                            )),
                            "mode" => tmpfs_opts.push(format!(
                                "mode={}",
                                mode_text(&t.value, &self.required(&t.value, &tp)?)
                            )),
                            _ => return Err(reject(t, &p, &["size", "mode"], &[])),
                        }
                    }
                }
                _ => {
                    return Err(reject(
                        e,
                        path,
                        &[
                            "type",
                            "source",
                            "target",
                            "read_only",
                            "bind",
                            "tmpfs",
                            "consistency",
                        ],
                        &["volume", "image"],
                    ))
                }
            }
        }
        let dest = dest.ok_or_else(|| at(n, path, "no \"target\" (the path in the container)"))?;
        match ty.as_str() {
            "tmpfs" => {
                if src.is_some() {
                    return Err(at(n, path, "a tmpfs mount has no source"));
                }
                let mut s = dest;
                if !tmpfs_opts.is_empty() {
                    s = format!("{s}:{}", tmpfs_opts.join(","));
                }
                Ok(Mount::Tmpfs(s))
            }
            "bind" | "volume" => {
                let (src, src_node) = src.ok_or_else(|| {
                    at(
                        n,
                        path,
                        format!(
                            "no \"source\": {}",
                            if ty == "bind" {
                                "a bind needs the host path"
                            } else {
                                "anonymous volumes are not supported by holdfast; name the volume"
                            }
                        ),
                    )
                })?;
                if ty == "bind" && !(src.starts_with(['/', '.', '~'])) {
                    return Err(at(
                        src_node,
                        &key(path, "source"),
                        format!("{} is not a host path (/, ./, ../ or ~/)", q(&src)),
                    ));
                }
                if ty == "volume" && src.starts_with(['/', '.', '~']) {
                    return Err(at(
                        src_node,
                        &key(path, "source"),
                        format!(
                            "{} is a path; a volume's source is its name (or use type: bind)",
                            q(&src)
                        ),
                    ));
                }
                let src = self
                    .source(&src)
                    .map_err(|r| at(src_node, &key(path, "source"), r))?;
                Ok(Mount::Bind(line(&src, &dest, ro)))
            }
            other => Err(at(
                ty_node,
                &key(path, "type"),
                format!(
                    "volume type {} is not supported by holdfast (volume, bind or tmpfs)",
                    q(other)
                ),
            )),
        }
    }
}

enum Mount {
    Bind(String),
    Tmpfs(String),
}

fn line(src: &str, dest: &str, ro: bool) -> String {
    if ro {
        format!("{src}:{dest}:ro")
    } else {
        format!("{src}:{dest}")
    }
}

/// A tmpfs mode as octal digits: `1777`, `0o1777` and `"1777"` alike.
fn mode_text(n: &Node, text: &str) -> String {
    match n.kind {
        Kind::Scalar(_, Type::Int(_)) => text.trim_start_matches("0o").to_owned(),
        _ => text.to_owned(),
    }
}
