//! The compose document to the app target's JSON: the walk over mappings
//! (known keys, unsupported keys, unknown keys), scalars with their
//! interpolation and type, and the top level with its networks and
//! volumes. Every JSON path written is recorded with its position.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::interpolate::interpolate;
use super::q;
use super::yaml::{Entry, Kind, Node, Pos, Type};
use super::{At, Host};

pub(crate) struct Ctx<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub host: &'a dyn Host,
    pub dir: &'a Path,
    /// JSON path (below the app) -> where it came from.
    pub positions: BTreeMap<String, Pos>,
    /// `env_file`s read, for the release hash.
    pub files_read: Vec<Vec<u8>>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
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
            format!("{:?} is not supported by holdfast", e.key),
        );
    }
    let near = known
        .iter()
        .filter(|c| distance(c, &e.key) <= 2)
        .min_by_key(|c| distance(c, &e.key));
    let hint = near.map_or(String::new(), |c| format!("; did you mean {c:?}?"));
    At::new(e.key_pos, &p, format!("unknown key {:?}{hint}", e.key))
}

impl<'a> Ctx<'a> {
    pub fn new(
        lookup: &'a dyn Fn(&str) -> Option<String>,
        host: &'a dyn Host,
        dir: &'a Path,
    ) -> Self {
        Ctx {
            lookup,
            host,
            dir,
            positions: BTreeMap::new(),
            files_read: Vec::new(),
            networks: Vec::new(),
            volumes: Vec::new(),
        }
    }

    pub fn mark(&mut self, path: &str, pos: Pos) {
        self.positions.entry(path.to_owned()).or_insert(pos);
    }

    pub fn env(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// A mapping's entries (null: none), `x-` extension keys left out.
    pub fn mapping<'n>(&mut self, n: &'n Node, path: &str) -> Result<Vec<&'n Entry>, At> {
        self.mark(path, n.pos);
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
        self.mark(path, n.pos);
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
            Kind::Scalar(s, Type::Str) => interpolate(s, self.lookup)
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
        self.mark(path, n.pos);
        Ok(Value::String(s))
    }

    /// A boolean, or a string compose reads as one (after interpolation).
    pub fn boolean(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos);
        if let Kind::Scalar(_, Type::Bool(b)) = n.kind {
            return Ok(Value::Bool(b));
        }
        let s = self.required(n, path)?;
        match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "off" => Ok(Value::Bool(false)),
            _ => Err(at(n, path, format!("expected true or false, not {s:?}"))),
        }
    }

    /// An integer, or a string of one (after interpolation).
    pub fn integer(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos);
        if let Kind::Scalar(_, Type::Int(i)) = n.kind {
            return Ok(json!(i));
        }
        let s = self.required(n, path)?;
        s.trim()
            .parse::<i64>()
            .map(|i| json!(i))
            .map_err(|_| at(n, path, format!("expected a whole number, not {s:?}")))
    }

    /// A number as YAML typed it, else the (interpolated) string; the
    /// target's types read both (sizes, CPUs). A float that is not finite
    /// (`.inf`, `.nan`, `1e400`) has no JSON number: it would become null,
    /// "not given", and the limit would be lost.
    pub fn number_or_string(&mut self, n: &Node, path: &str) -> Result<Value, At> {
        self.mark(path, n.pos);
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
        self.mark(path, n.pos);
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
        self.mark(path, n.pos);
        let mut out = Map::new();
        let mut put = |cx: &mut Self, k: String, v: Option<String>, pos: Pos, at_n: &Node| {
            let p = key(path, &k);
            if out.contains_key(&k) {
                return Err(At::new(pos, &p, format!("{k:?} is given twice")));
            }
            let v = match v {
                Some(v) => v,
                None if from_env => match cx.env(&k) {
                    Some(v) => v,
                    None => return Ok(()),
                },
                None => String::new(),
            };
            cx.mark(&p, at_n.pos);
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
