//! YAML text to a tree of nodes, each with its line and column. Built from
//! saphyr-parser's events with an explicit stack (no recursion on input
//! depth): one document, anchors and aliases, `<<` merge keys, no key twice
//! in a mapping, scalars typed by the YAML 1.2 core schema.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use scalar::{check_tag, scalar_type};

use super::At;

mod scalar;

/// Deepest nesting accepted; compose files are a handful of levels deep.
const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to through aliases (a "billion laughs"
/// file would otherwise take the memory of the device).
const MAX_NODES: usize = 200_000;

/// A position in the file: line and column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A scalar's type as YAML's core schema resolves a plain scalar; quoted
/// and block scalars are strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Type {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// The text as written (unescaped), and its type.
    Scalar(String, Type),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// One key of a mapping. Keys are scalars, taken as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar(..) => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.size()).sum::<usize>(),
        }
    }

    pub fn what(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(_, Type::Null) => "null",
            Kind::Scalar(_, Type::Bool(_)) => "a boolean",
            Kind::Scalar(_, Type::Int(_) | Type::Float(_)) => "a number",
            Kind::Scalar(..) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Pos, bool)>,
        merges: Vec<Node>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

/// Parses one YAML document into its tree. An empty document is `None`.
pub fn parse(text: &str) -> Result<Option<Node>, At> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
    };
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            At::new(
                Pos {
                    line: m.line(),
                    column: m.col() + 1,
                },
                "(top)",
                format!("YAML syntax: {}", e.info()),
            )
        })?;
        let pos = Pos::of(&span);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(At::new(
                        pos,
                        "(top)",
                        "a second YAML document; a compose file holds one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let ty = scalar_type(&text, style, tag.as_deref()).map_err(|r| b.at(pos, r))?;
                b.complete(
                    Node {
                        pos,
                        kind: Kind::Scalar(text.into_owned(), ty),
                    },
                    anchor,
                    style == ScalarStyle::Plain,
                )?;
            }
            Event::Alias(id) => {
                let mut node = b
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| b.at(pos, "an alias of an anchor not defined before it"))?;
                b.nodes += node.size();
                if b.nodes > MAX_NODES {
                    return Err(b.at(
                        pos,
                        format!("the aliases expand to more than {MAX_NODES} values"),
                    ));
                }
                node.pos = pos;
                b.complete(node, 0, false)?;
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), "seq").map_err(|r| b.at(pos, r))?;
                b.open(
                    pos,
                    Frame::Seq {
                        pos,
                        anchor,
                        items: Vec::new(),
                    },
                )?;
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), "map").map_err(|r| b.at(pos, r))?;
                b.open(
                    pos,
                    Frame::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                    },
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match b.stack.pop().expect("an open collection") {
                    Frame::Seq { pos, anchor, items } => (
                        Node {
                            pos,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Frame::Map {
                        pos,
                        anchor,
                        mut entries,
                        merges,
                        ..
                    } => {
                        merge(&mut entries, merges);
                        let kind = Kind::Map(entries);
                        (Node { pos, kind }, anchor)
                    }
                };
                b.complete(node, anchor, false)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(b.root)
}

impl Builder {
    /// The path of what is being built, as in errors.
    fn path(&self) -> String {
        let mut out = String::new();
        for f in &self.stack {
            match f {
                Frame::Seq { items, .. } => out.push_str(&format!("[{}]", items.len())),
                Frame::Map { key: Some(k), .. } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&crate::target::escape_key(&k.0));
                }
                Frame::Map { .. } => {}
            }
        }
        if out.is_empty() {
            "(top)".into()
        } else {
            out
        }
    }

    fn at(&self, pos: Pos, reason: impl Into<String>) -> At {
        At::new(pos, &self.path(), reason)
    }

    fn open(&mut self, pos: Pos, frame: Frame) -> Result<(), At> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(self.at(pos, "a mapping key must be a string, not a list or mapping"));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.at(pos, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A finished node goes into the collection around it.
    fn complete(&mut self, node: Node, anchor: usize, plain: bool) -> Result<(), At> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.at(node.pos, format!("more than {MAX_NODES} values")));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let path = self.path();
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => match node.kind {
                    Kind::Scalar(text, _) => *key = Some((text, node.pos, plain)),
                    _ => unreachable!("open() refuses collections as keys"),
                },
                Some((k, key_pos, key_plain)) => {
                    if key_plain && k == "<<" {
                        return merge_source(node, merges, &path);
                    }
                    if entries.iter().any(|e| e.key == k) {
                        return Err(At::new(
                            key_pos,
                            &path,
                            format!("duplicate key {:?}; give each key once", k),
                        ));
                    }
                    entries.push(Entry {
                        key: k,
                        key_pos,
                        value: node,
                    });
                }
            },
        }
        Ok(())
    }
}

/// The value of `<<`: a mapping, or a list of mappings (earlier ones win).
fn merge_source(node: Node, merges: &mut Vec<Node>, path: &str) -> Result<(), At> {
    let bad = |n: &Node| {
        At::new(
            n.pos,
            path,
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

/// Merged keys come after the mapping's own, which win.
fn merge(entries: &mut Vec<Entry>, merges: Vec<Node>) {
    for m in merges {
        if let Kind::Map(from) = m.kind {
            for e in from {
                if !entries.iter().any(|x| x.key == e.key) {
                    entries.push(e);
                }
            }
        }
    }
}
