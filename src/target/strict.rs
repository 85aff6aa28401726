//! The first pass over a JSON text, before it is read into typed values:
//! exactly one document, and no key twice in any object. serde would
//! otherwise keep the last of two equal keys without a word, so a stray
//! second copy of an app could silently empty it.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_path_to_error::{Path, Segment};

/// Where and why a JSON text was refused by `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrictError {
    pub line: usize,
    pub column: usize,
    /// JSON path, keys escaped; `(top)` for the document itself.
    pub path: String,
    pub reason: String,
}

impl StrictError {
    /// The reason, after its path unless that is the document itself (for
    /// files whose errors name no JSON path of their own).
    pub(crate) fn located_reason(&self) -> String {
        if self.path == "(top)" {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path, self.reason)
        }
    }
}

/// Checks JSON syntax, that nothing but whitespace follows the document,
/// and that no object has a key twice.
pub(crate) fn check(text: &str) -> Result<(), StrictError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let at_top = |e: serde_json::Error, reason: String| StrictError {
        line: e.line(),
        column: e.column(),
        path: "(top)".into(),
        reason,
    };
    match serde_path_to_error::deserialize::<_, Unique>(&mut de) {
        Ok(Unique) => {}
        Err(e) => {
            let path = path_string(e.path());
            let inner = e.into_inner();
            return Err(StrictError {
                line: inner.line(),
                column: inner.column(),
                path,
                reason: serde_reason(&inner.to_string()),
            });
        }
    }
    de.end().map_err(|e| {
        at_top(
            e,
            "more input after the end of the document; give exactly one JSON value".into(),
        )
    })
}

/// serde_json appends " at line L column C"; we print the position first.
pub(crate) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// A JSON path like `apps.app1.services.main.volumes[0]`, each key escaped
/// (see `escape`); `(top)` for the document itself.
pub(crate) fn path_string(path: &Path) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            // A key that failed to parse: the object it is in says more.
            Segment::Unknown => {}
        }
    }
    if out.is_empty() {
        "(top)".into()
    } else {
        out
    }
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(&escape(key));
}

pub(crate) use crate::text::no_controls;

/// A key as it goes into a path: escaped (`text::escape`) and cut to
/// `text::SHOWN_MAX` characters, so a 100 KB key makes no 100 KB path.
/// Compose records its positions under the same spelling.
pub(crate) fn escape(key: &str) -> String {
    crate::text::escape(&crate::text::clip(key, crate::text::SHOWN_MAX))
}

/// serde's messages quote the offending value whole and list what was
/// expected (the longest list, a service's fields, is under 1000
/// characters): escaped, without the position, cut there.
const SERDE_REASON_MAX: usize = 1000;

/// An outside value as an error quotes it: in quotes, escaped, cut to
/// `text::SHOWN_MAX` characters (a 100 KB name makes no 100 KB message).
pub(crate) fn quoted(v: &str) -> String {
    format!("{:?}", crate::text::clip(v, crate::text::SHOWN_MAX))
}

/// A reason serde wrote, as an error shows it.
pub(crate) fn serde_reason(msg: &str) -> String {
    no_controls(&crate::text::clip(&strip_position(msg), SERDE_REASON_MAX))
}

/// Any JSON value, walked for its keys and dropped.
struct Unique;

impl<'de> de::Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                // Refused as the value so that the path ends in the key.
                map.next_value_seed(Duplicate(&key))?;
            }
            map.next_value::<Unique>()?;
            seen.insert(key);
        }
        Ok(Unique)
    }
}

/// The value of a key seen before: always an error.
struct Duplicate<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Duplicate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(format_args!(
            "duplicate key {:?}; give each key once",
            self.0
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> StrictError {
        check(text).unwrap_err()
    }

    #[test]
    fn one_document_without_duplicates_passes() {
        check("{\"a\": {\"b\": [1, {\"c\": null}]}, \"b\": {\"b\": 1}}\n").unwrap();
        check("  [1, 2.5, -3, true, \"x\"]  ").unwrap();
    }

    #[test]
    fn duplicates_are_found_at_any_depth_with_path_and_position() {
        let e = err("{\"a\": 1,\n \"a\": 2}");
        assert_eq!((e.line, e.column, e.path.as_str()), (2, 6, "a"));
        assert_eq!(e.reason, "duplicate key \"a\"; give each key once");
        let e = err("{\"x\": [{\"k\": {\"y\": 1, \"y\": 1}}]}");
        assert_eq!(e.path, "x[0].k.y");
        let e = err("{\"x\": {\"k\": 1, k}}");
        assert_eq!(
            (e.path.as_str(), e.reason.as_str()),
            ("x", "key must be a string")
        );
    }

    #[test]
    fn trailing_input_and_second_documents_are_refused() {
        for text in ["{} x", "{}{}", "{\"a\": 1}\n{\"a\": 2}", "[1] ]"] {
            let e = err(text);
            assert_eq!(e.path, "(top)", "{text}");
            assert!(e.reason.starts_with("more input after the end"), "{e:?}");
        }
        let e = err("{}\n\n  junk");
        assert_eq!((e.line, e.column), (3, 3));
    }

    #[test]
    fn keys_are_escaped() {
        let e = err("{\"a\\u0000b\": 1, \"a\\u0000b\": 1}");
        assert_eq!(e.path, "a\\0b");
        assert!(!e.reason.contains('\0'), "{e:?}");
        assert_eq!(escape("a\nb\\c\"d\u{1b}"), "a\\nb\\\\c\"d\\u{1b}");
        assert_eq!(no_controls("unknown field `a\0`"), "unknown field `a\\0`");
    }
}
