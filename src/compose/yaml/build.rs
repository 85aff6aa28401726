//! The tree, built event by event. What each finished node costs (values
//! and bytes, aliases expanded) is known when it closes, so an alias is
//! paid for before it is copied; keys are checked against a set, merged
//! keys too, and the path of a node is only spelled out for an error.

use std::collections::{HashMap, HashSet};

use super::{Entry, Kind, Node, Pos, MAX_DEPTH, MAX_EXPANDED_BYTES, MAX_KEY_CHARS, MAX_NODES};
use crate::compose::At;

/// What a node costs: values, and bytes of text (one more per value).
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

struct Anchored {
    node: Node,
    size: Size,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        start: Size,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        start: Size,
        entries: Vec<Entry>,
        /// The keys of `entries`, for the duplicate check.
        keys: HashSet<String>,
        /// The key waiting for its value: text, position, plain (`<<`
        /// merges only unquoted).
        key: Option<(String, Pos, bool)>,
        merges: Vec<Node>,
    },
}

#[derive(Default)]
pub(super) struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    /// The document so far, aliases expanded and anchored copies counted.
    total: Size,
    root: Option<Node>,
}

impl Builder {
    pub fn root(self) -> Option<Node> {
        self.root
    }

    /// The path of what is being built, as in errors; `last` is a key the
    /// innermost mapping has taken out for its value.
    fn path(&self, last: Option<&str>) -> String {
        let mut out = String::new();
        let key = |out: &mut String, k: &str| {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&crate::target::escape_key(k));
        };
        for f in &self.stack {
            match f {
                Frame::Seq { items, .. } => out.push_str(&format!("[{}]", items.len())),
                Frame::Map { key: Some(k), .. } => key(&mut out, &k.0),
                Frame::Map { .. } => {}
            }
        }
        if let Some(k) = last {
            key(&mut out, k);
        }
        if out.is_empty() {
            "(top)".into()
        } else {
            out
        }
    }

    pub fn at(&self, pos: Pos, reason: impl Into<String>) -> At {
        At::new(pos, &self.path(None), reason)
    }

    /// Adds `add` to the document, or refuses past the bounds.
    fn charge(&mut self, add: Size, pos: Pos, alias: bool) -> Result<(), At> {
        let nodes = self.total.nodes.saturating_add(add.nodes);
        let bytes = self.total.bytes.saturating_add(add.bytes);
        if nodes > MAX_NODES {
            let what = if alias { "the aliases expand to " } else { "" };
            return Err(self.at(pos, format!("{what}more than {MAX_NODES} values")));
        }
        if bytes > MAX_EXPANDED_BYTES {
            return Err(self.at(
                pos,
                format!(
                    "the anchors and aliases expand the file to more than {} MiB",
                    MAX_EXPANDED_BYTES >> 20
                ),
            ));
        }
        self.total = Size { nodes, bytes };
        Ok(())
    }

    pub fn scalar(&mut self, node: Node, anchor: usize, plain: bool) -> Result<(), At> {
        let Kind::Scalar(text, _) = &node.kind else {
            unreachable!("a scalar event makes a scalar")
        };
        let size = Size {
            nodes: 1,
            bytes: text.len() + 1,
        };
        self.charge(size, node.pos, false)?;
        self.complete(node, anchor, size, plain)
    }

    pub fn alias(&mut self, id: usize, pos: Pos) -> Result<(), At> {
        let Some(size) = self.anchors.get(&id).map(|a| a.size) else {
            return Err(self.at(pos, "an alias of an anchor not defined before it"));
        };
        self.charge(size, pos, true)?;
        let mut node = self.anchors[&id].node.clone();
        node.pos = pos;
        self.complete(node, 0, size, false)
    }

    pub fn open(&mut self, pos: Pos, anchor: usize, map: bool) -> Result<(), At> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(self.at(pos, "a mapping key must be a string, not a list or mapping"));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.at(pos, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        let start = self.total;
        self.charge(Size { nodes: 1, bytes: 1 }, pos, false)?;
        self.stack.push(if map {
            Frame::Map {
                pos,
                anchor,
                start,
                entries: Vec::new(),
                keys: HashSet::new(),
                key: None,
                merges: Vec::new(),
            }
        } else {
            Frame::Seq {
                pos,
                anchor,
                start,
                items: Vec::new(),
            }
        });
        Ok(())
    }

    pub fn close(&mut self) -> Result<(), At> {
        let (node, anchor, start) = match self.stack.pop().expect("an open collection") {
            Frame::Seq {
                pos,
                anchor,
                start,
                items,
            } => (
                Node {
                    pos,
                    kind: Kind::Seq(items),
                },
                anchor,
                start,
            ),
            Frame::Map {
                pos,
                anchor,
                start,
                mut entries,
                mut keys,
                merges,
                ..
            } => {
                merge(&mut entries, &mut keys, merges);
                let kind = Kind::Map(entries);
                (Node { pos, kind }, anchor, start)
            }
        };
        let size = Size {
            nodes: self.total.nodes - start.nodes,
            bytes: self.total.bytes - start.bytes,
        };
        self.complete(node, anchor, size, false)
    }

    /// A finished node goes into the collection around it.
    fn complete(&mut self, node: Node, anchor: usize, size: Size, plain: bool) -> Result<(), At> {
        if anchor != 0 {
            // The anchor keeps a copy of the node.
            self.charge(
                Size {
                    nodes: 0,
                    bytes: size.bytes,
                },
                node.pos,
                false,
            )?;
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                },
            );
        }
        let key = match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                return Ok(());
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                return Ok(());
            }
            Some(Frame::Map { key, .. }) => key.take(),
        };
        let Some((k, key_pos, key_plain)) = key else {
            return self.set_key(node, plain);
        };
        let Some(Frame::Map {
            entries,
            keys,
            merges,
            ..
        }) = self.stack.last_mut()
        else {
            unreachable!("the innermost frame is a mapping")
        };
        if key_plain && k == "<<" {
            return merge_source(node, merges)
                .map_err(|(pos, r)| At::new(pos, &self.path(Some(&k)), r));
        }
        if keys.contains(&k) {
            let reason = format!("duplicate key {}; give each key once", super::super::q(&k));
            return Err(At::new(key_pos, &self.path(Some(&k)), reason));
        }
        keys.insert(k.clone());
        entries.push(Entry {
            key: k,
            key_pos,
            value: node,
        });
        Ok(())
    }

    /// `node` is the key of the innermost mapping's next entry.
    fn set_key(&mut self, node: Node, plain: bool) -> Result<(), At> {
        let Kind::Scalar(text, _) = node.kind else {
            // An alias of a list or mapping.
            return Err(self.at(
                node.pos,
                "a mapping key must be a string, not a list or mapping",
            ));
        };
        if text.len() > MAX_KEY_CHARS {
            let chars = text.chars().count();
            if chars > MAX_KEY_CHARS {
                return Err(self.at(
                    node.pos,
                    format!("a key of {chars} characters; a key is at most {MAX_KEY_CHARS}"),
                ));
            }
        }
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = Some((text, node.pos, plain));
        }
        Ok(())
    }
}

/// The value of `<<`: a mapping, or a list of mappings (earlier ones win).
fn merge_source(node: Node, merges: &mut Vec<Node>) -> Result<(), (Pos, String)> {
    let bad = |n: &Node| {
        (
            n.pos,
            format!(
                "a merge key (<<) takes a mapping or a list of mappings, not {}",
                n.what()
            ),
        )
    };
    match node.kind {
        Kind::Map(_) => merges.push(node),
        Kind::Seq(items) => {
            for n in items {
                if !matches!(n.kind, Kind::Map(_)) {
                    return Err(bad(&n));
                }
                merges.push(n);
            }
        }
        _ => return Err(bad(&node)),
    }
    Ok(())
}

/// Merged keys come after the mapping's own, which win; then the first
/// merged mapping's.
fn merge(entries: &mut Vec<Entry>, keys: &mut HashSet<String>, merges: Vec<Node>) {
    for m in merges {
        if let Kind::Map(from) = m.kind {
            for e in from {
                if !keys.contains(&e.key) {
                    keys.insert(e.key.clone());
                    entries.push(e);
                }
            }
        }
    }
}
