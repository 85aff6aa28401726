//! YAML text to a tree of nodes, each with its line and column. Built from
//! saphyr-parser's events with an explicit stack (no recursion on input
//! depth): one document, anchors and aliases, `<<` merge keys, no key twice
//! in a mapping, scalars typed by the YAML 1.2 core schema.
//!
//! The work is linear in what the document expands to, and that is
//! bounded: [`MAX_DEPTH`] levels, [`MAX_NODES`] values and
//! [`MAX_EXPANDED_BYTES`] of text once every alias is expanded, each
//! checked before an alias is copied.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use scalar::{check_tag, scalar_type};

use super::At;

mod build;
mod scalar;

use build::Builder;

/// Deepest nesting accepted; compose files are a handful of levels deep.
pub const MAX_DEPTH: usize = 64;
/// Most values a document may expand to through aliases.
pub const MAX_NODES: usize = 200_000;
/// Most bytes of text (scalars and keys, one more per value) a document
/// may expand to, aliases expanded and anchored values counted once more
/// (holdfast keeps a copy of each): a "billion laughs" file or a 1 MiB
/// string aliased a thousand times would otherwise take the memory of
/// the device. Four times the largest compose file.
pub const MAX_EXPANDED_BYTES: usize = 16 << 20;
/// Longest key, in characters: YAML's own limit on implicit keys, which
/// only the explicit `? key` form can pass.
pub const MAX_KEY_CHARS: usize = 1024;

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

/// Parses one YAML document into its tree. An empty document is `None`.
pub fn parse(text: &str) -> Result<Option<Node>, At> {
    let mut b = Builder::default();
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
                b.scalar(
                    Node {
                        pos,
                        kind: Kind::Scalar(text.into_owned(), ty),
                    },
                    anchor,
                    style == ScalarStyle::Plain,
                )?;
            }
            Event::Alias(id) => b.alias(id, pos)?,
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), "seq").map_err(|r| b.at(pos, r))?;
                b.open(pos, anchor, false)?;
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), "map").map_err(|r| b.at(pos, r))?;
                b.open(pos, anchor, true)?;
            }
            Event::SequenceEnd | Event::MappingEnd => b.close()?,
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(b.root())
}
