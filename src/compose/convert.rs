//! The compose document to the app target's JSON: the walk over mappings
//! (known keys, unsupported keys, unknown keys), scalars with their
//! interpolation and type, and the top level with its networks and
//! volumes. Every JSON path written is recorded with its position.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::envfile::Reads;
use super::interpolate::{interpolate, too_much, Budget, Lookup};
use super::q;
use super::yaml::{Entry, Kind, Node, Pos, Type};
use super::{At, Host};

/// Most port mappings one file's `ports` expand to (a range is one per
/// port); a host has 65535 ports.
pub const MAX_PORT_LINES: usize = 65536;

/// Most bytes of JSON paths recorded with their positions. A path holds
/// the keys above it, so long names with many values below them would
/// otherwise cost their length once per value.
pub const MAX_PATH_BYTES: usize = 16 << 20;

pub(crate) struct Ctx<'a> {
    lookup: Lookup<'a>,
    pub host: &'a dyn Host,
    pub dir: &'a Path,
    /// What variables may still paste into the document.
    pub budget: &'a Budget,
    /// JSON path (below the app) -> where it came from.
    pub positions: BTreeMap<String, Pos>,
    path_bytes: usize,
    /// Port mappings so far.
    pub port_lines: usize,
    /// `.env` and `env_file`s read: their bounds and the release hash.
    pub reads: Reads,
    pub networks: HashSet<String>,
    pub volumes: HashSet<String>,
}

/// `path.key`, the key escaped as target paths have it.
pub fn key(path: &str, k: &str) -> String {
    let k = crate::target::escape_key(k);
    if path.is_empty() {
        k
    } else {
        format!("{path}.{k}")
    }
}

pub fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "(top)"
    } else {
        path
    }
}

pub fn at(n: &Node, path: &str, reason: impl Into<String>) -> At {
    At::new(n.pos, shown(path), reason)
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != b[j]))
                .min(row[j] + 1)
                .min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The error for a key that is not taken at `path`: compose's keys that
/// holdfast does not support say so; others are unknown.
pub fn reject(e: &Entry, path: &str, known: &[&str], unsupported: &[&str]) -> At {
    let p = key(path, &e.key);
    if unsupported.contains(&e.key.as_str()) {
        return At::new(
            e.key_pos,
            &p,
            format!("{} is not supported by holdfast", q(&e.key)),
        );
    }
    // No known key is near a long one (and distance is length times length).
    let near = known
        .iter()
        .filter(|c| e.key.chars().nth(c.len() + 2).is_none() && distance(c, &e.key) <= 2)
        .min_by_key(|c| distance(c, &e.key));
    let hint = near.map_or(String::new(), |c| format!("; did you mean {c:?}?"));
    At::new(e.key_pos, &p, format!("unknown key {}{hint}", q(&e.key)))
}

impl<'a> Ctx<'a> {
    pub fn new(
        lookup: Lookup<'a>,
        host: &'a dyn Host,
        dir: &'a Path,
        budget: &'a Budget,
        reads: Reads,
    ) -> Self {
        Ctx {
            lookup,
            host,
            dir,
            budget,
            positions: BTreeMap::new(),
            path_bytes: 0,
            port_lines: 0,
            reads,
            networks: HashSet::new(),
            volumes: HashSet::new(),
        }
    }

    /// Records where `path` came from (the first position given wins).
    pub fn mark(&mut self, path: &str, pos: Pos) -> Result<(), At> {
        self.path_bytes += path.len();
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(At::new(
                pos,
                shown(path),
                format!(
                    "the paths of this file's values pass {} MiB in all (long names with many values below them)",
                    MAX_PATH_BYTES >> 20
                ),
            ));
        }
        if !self.positions.contains_key(path) {
            self.positions.insert(path.to_owned(), pos);
        }
        Ok(())
    }

    /// A variable as interpolation sees it.
    pub fn env(&self, name: &str) -> Option<std::rc::Rc<str>> {
        (self.lookup)(name)
    }

    /// A mapping's entries (null: none), `x-` extension keys left out.
    pub fn mapping<'n>(&mut self, n: &'n Node, path: &str) -> Result<Vec<&'n Entry>, At> {
        self.mark(path, n.pos)?;
        match &n.kind {
            Kind::Map(entries) => Ok(entries
                .iter()
                .filter(|e| !e.key.starts_with("x-"))
                .collect()),
            Kind::Scalar(_, Type::Null) => Ok(Vec::new()),
            _ => Err(at(n, path, format!("expected a mapping, not {}", n.what()))),
        }
    }

    /// A mapping whose keys are names (services, networks, volumes).
    pub fn names<'n>(&mut self, n: &'n Node, path: &str) -> Result<&'n [Entry], At> {
        self.mark(path, n.pos)?;
        match &n.kind {
            Kind::Map(entries) => Ok(entries),
            Kind::Scalar(_, Type::Null) => Ok(&[]),
            _ => Err(at(
                n,
                path,
                format!("expected a mapping of names, not {}", n.what()),
            )),
        }
    }

    /// A scalar as text, interpolated; `None` for null.
    pub fn text(&self, n: &Node, path: &str) -> Result<Option<String>, At> {
        match &n.kind {
            Kind::Scalar(_, Type::Null) => Ok(None),
            Kind::Scalar(s, Type::Str) => interpolate(s, self.lookup, self.budget)
                .map(Some)
                .map_err(|e| at(n, path, format!("interpolation: {}", e.reason))),
            Kind::Scalar(s, _) => Ok(Some(s.clone())),
            _ => Err(at(
                n,
                path,
                format!("expected a single value, not {}", n.what()),
            )),
        }
    }

    /// A scalar as text; null is an error.
    pub fn required(&self, n: &Node, path: &str) -> Result<String, At> {
        self.text(n, path)?
            .ok_or_else(|| at(n, path, "expected a value, not null"))
    }

    pub fn string(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        let s = self.required(n, path)?;
        self.mark(path, n.pos)?;
        Ok(Value::String(s))
    }

    /// A boolean, or a string compose reads as one (after interpolation).
    pub fn boolean(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos)?;
        if let Kind::Scalar(_, Type::Bool(b)) = n.kind {
            return Ok(Value::Bool(b));
        }
        let s = self.required(n, path)?;
        match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "off" => Ok(Value::Bool(false)),
            _ => Err(at(
                n,
                path,
                format!("expected true or false, not {}", q(&s)),
            )),
        }
    }

    /// An integer, or a string of one (after interpolation).
    pub fn integer(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos)?;
        if let Kind::Scalar(_, Type::Int(i)) = n.kind {
            return Ok(json!(i));
        }
        let s = self.required(n, path)?;
        s.trim()
            .parse::<i64>()
            .map(|i| json!(i))
            .map_err(|_| at(n, path, format!("expected a whole number, not {}", q(&s))))
    }

    /// A number as YAML typed it, else the (interpolated) string; the
    /// target's types read both (sizes, CPUs). A float that is not finite
    /// (`.inf`, `.nan`, `1e400`) has no JSON number: it would become null,
    /// "not given", and the limit would be lost.
    pub fn number_or_string(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos)?;
        match &n.kind {
            Kind::Scalar(_, Type::Int(i)) => Ok(json!(i)),
            Kind::Scalar(text, Type::Float(f)) => match serde_json::Number::from_f64(*f) {
                Some(num) => Ok(Value::Number(num)),
                None => Err(at(n, path, format!("{} is not a finite number", q(text)))),
            },
            _ => self.string(n, path),
        }
    }

    /// A list of single values, as strings.
    pub fn strings(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos)?;
        let Kind::Seq(items) = &n.kind else {
            return Err(at(n, path, format!("expected a list, not {}", n.what())));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(self.string(item, &idx(path, i))?);
        }
        Ok(Value::Array(out))
    }

    /// A string (one item) or a list of strings.
    pub fn string_or_list(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        match &n.kind {
            Kind::Seq(_) => self.strings(n, path),
            _ => Ok(Value::Array(vec![self.string(n, path)?])),
        }
    }

    /// `{K: V}` or `["K=V", "K"]` as a map of strings. A key without a
    /// value (`K`, `K:` with null) takes the variable of the environment
    /// when `from_env` (left out when unset), else the empty string.
    pub fn dict(&mut self, n: &Node, path: &str, from_env: bool) -> Result<Value, At> {
        self.mark(path, n.pos)?;
        let mut out = Map::new();
        let mut put = |cx: &mut Self, k: String, v: Option<String>, pos: Pos, at_n: &Node| {
            let p = key(path, &k);
            if out.contains_key(&k) {
                return Err(At::new(pos, &p, format!("{} is given twice", q(&k))));
            }
            let v = match v {
                Some(v) => v,
                // The variable's value is pasted in as interpolation would.
                None if from_env => match cx.env(&k) {
                    Some(v) if cx.budget.take(v.len()) => v.to_string(),
                    Some(_) => return Err(At::new(pos, &p, too_much())),
                    None => return Ok(()),
                },
                None => String::new(),
            };
            cx.mark(&p, at_n.pos)?;
            out.insert(k, Value::String(v));
            Ok(())
        };
        match &n.kind {
            Kind::Map(entries) => {
                for e in entries {
                    let v = self.text(&e.value, &key(path, &e.key))?;
                    put(self, e.key.clone(), v, e.key_pos, &e.value)?;
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let s = self.required(item, &idx(path, i))?;
                    let (k, v) = match s.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (s, None),
                    };
                    put(self, k, v, item.pos, item)?;
                }
            }
            Kind::Scalar(_, Type::Null) => {}
            _ => {
                return Err(at(
                    n,
                    path,
                    format!(
                        "expected a mapping or a list of KEY=VALUE, not {}",
                        n.what()
                    ),
                ))
            }
        }
        Ok(Value::Object(out))
    }
}
