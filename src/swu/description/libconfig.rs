//! The libconfig syntax (<https://hyperrealm.com/libconfig/>) SWUpdate's
//! `sw-description` is written in, parsed strictly: what libconfig refuses
//! is refused here, and so are a few things it lets through that only hide
//! mistakes (unknown string escapes, `\x00`, empty list elements such as
//! `1,,2`). `@include` is refused: SWUpdate does not allow it either, and a
//! description has to stand on its own.

mod scalar;

use std::collections::HashMap;

/// The caller never has more than this (the `.swu` reader's bound).
pub const MAX_LEN: usize = 64 * 1024;
/// Real descriptions nest 4 or 5 levels; the bound keeps the recursion
/// small.
pub const MAX_DEPTH: usize = 32;

/// 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// `[ ... ]`: scalars of one type.
    Array(Vec<Node>),
    /// `( ... )`: any values.
    List(Vec<Node>),
    /// `{ ... }`: named settings, names unique.
    Group(Vec<Setting>),
}

impl Value {
    /// What it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array [ ]",
            Value::List(_) => "a list ( )",
            Value::Group(_) => "a group { }",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("{len} bytes, more than the {max} holdfast reads")]
    TooLong { len: usize, max: usize },
    #[error("line {}, column {}: {why}", at.line, at.col)]
    At { at: Pos, why: String },
}

/// The top-level settings of `src`.
pub fn parse(src: &[u8]) -> Result<Vec<Setting>> {
    if src.len() > MAX_LEN {
        return Err(SyntaxError::TooLong {
            len: src.len(),
            max: MAX_LEN,
        });
    }
    let text = std::str::from_utf8(src).map_err(|e| {
        let mut p = Parser::new(&src[..e.valid_up_to()]);
        while p.bump().is_some() {}
        p.error_at(p.pos(), "not UTF-8 text")
    })?;
    let mut p = Parser::new(text.as_bytes());
    p.settings(0, None)
}

struct Parser<'a> {
    src: &'a str,
    i: usize,
    line: u32,
    col: u32,
}

type Result<T> = std::result::Result<T, SyntaxError>;

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '*'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')
}

fn is_bool(word: &str) -> Option<bool> {
    if word.eq_ignore_ascii_case("true") {
        Some(true)
    } else if word.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl<'a> Parser<'a> {
    fn new(src: &'a [u8]) -> Self {
        Self {
            // Only called with checked UTF-8 (or its valid prefix).
            src: std::str::from_utf8(src).unwrap_or_default(),
            i: 0,
            line: 1,
            col: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn error_at(&self, at: Pos, why: impl Into<String>) -> SyntaxError {
        SyntaxError::At {
            at,
            why: why.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "the end of the text".to_owned(),
        }
    }

    /// Whitespace and comments; `@include` is an error.
    fn skip(&mut self) -> Result<()> {
        loop {
            let rest = self.rest();
            if rest.starts_with('#') || rest.starts_with("//") {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if rest.starts_with("/*") {
                let start = self.pos();
                self.bump();
                self.bump();
                while !self.rest().starts_with("*/") {
                    if self.bump().is_none() {
                        return Err(self.error_at(start, "this /* comment never ends"));
                    }
                }
                self.bump();
                self.bump();
            } else if rest.starts_with("@include") {
                return Err(self.error_at(
                    self.pos(),
                    "@include is not allowed: sw-description must stand on its own \
                     (SWUpdate refuses it too)",
                ));
            } else if rest.starts_with([' ', '\t', '\r', '\n', '\x0c']) {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    /// Settings up to the end of the text (`open` is `None`) or up to the
    /// `}` closing the group opened at `open`.
    fn settings(&mut self, depth: usize, open: Option<Pos>) -> Result<Vec<Setting>> {
        let mut out: Vec<Setting> = Vec::new();
        let mut seen: HashMap<String, Pos> = HashMap::new();
        loop {
            self.skip()?;
            match (self.peek(), open) {
                (None, None) => return Ok(out),
                (None, Some(at)) => return Err(self.error_at(at, "this { is never closed")),
                (Some('}'), Some(_)) => {
                    self.bump();
                    return Ok(out);
                }
                (Some(c), _) if is_name_start(c) => {}
                _ => {
                    let why = format!("expected a setting name, found {}", self.found());
                    return Err(self.error_at(self.pos(), why));
                }
            }
            let pos = self.pos();
            let name = self.word();
            if is_bool(name).is_some() {
                let why = format!("{name} is a boolean, not a setting name");
                return Err(self.error_at(pos, why));
            }
            if let Some(first) = seen.get(name) {
                let why = format!("{name} is set twice (first on line {})", first.line);
                return Err(self.error_at(pos, why));
            }
            seen.insert(name.to_owned(), pos);
            self.skip()?;
            if !matches!(self.peek(), Some('=' | ':')) {
                let why = format!("expected = or : after {name}, found {}", self.found());
                return Err(self.error_at(self.pos(), why));
            }
            self.bump();
            self.skip()?;
            let value = self.value(depth)?;
            self.skip()?;
            if matches!(self.peek(), Some(';' | ',')) {
                self.bump();
            }
            out.push(Setting {
                name: name.to_owned(),
                pos,
                value,
            });
        }
    }

    fn word(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        &self.src[start..self.i]
    }

    fn value(&mut self, depth: usize) -> Result<Node> {
        let pos = self.pos();
        let value = match self.peek() {
            Some(open @ ('{' | '[' | '(')) => {
                if depth >= MAX_DEPTH {
                    let why = format!("nested more than {MAX_DEPTH} levels deep");
                    return Err(self.error_at(pos, why));
                }
                self.bump();
                match open {
                    '{' => Value::Group(self.settings(depth + 1, Some(pos))?),
                    '[' => Value::Array(self.array(depth + 1, pos)?),
                    _ => Value::List(self.elements(depth + 1, ')', pos)?),
                }
            }
            Some('"') => Value::Str(self.strings()?),
            Some(c) if c.is_ascii_digit() || matches!(c, '+' | '-' | '.') => self.number()?,
            Some(c) if is_name_start(c) => {
                let word = self.word();
                match is_bool(word) {
                    Some(b) => Value::Bool(b),
                    None => {
                        let why = format!("{word} is not a value (a string needs double quotes)");
                        return Err(self.error_at(pos, why));
                    }
                }
            }
            _ => {
                let why = format!("expected a value, found {}", self.found());
                return Err(self.error_at(pos, why));
            }
        };
        Ok(Node { pos, value })
    }

    /// Values separated by commas (one trailing comma allowed, as libconfig
    /// does) up to `close`; the opening bracket at `open` is consumed.
    fn elements(&mut self, depth: usize, close: char, open: Pos) -> Result<Vec<Node>> {
        let mut out = Vec::new();
        loop {
            self.skip()?;
            match self.peek() {
                Some(c) if c == close => {
                    self.bump();
                    return Ok(out);
                }
                None => return Err(self.unclosed(open, close)),
                _ => {}
            }
            out.push(self.value(depth)?);
            self.skip()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                None => return Err(self.unclosed(open, close)),
                _ => {
                    let why = format!("expected , or {close}, found {}", self.found());
                    return Err(self.error_at(self.pos(), why));
                }
            }
        }
    }

    fn unclosed(&self, open: Pos, close: char) -> SyntaxError {
        let bracket = if close == ']' { '[' } else { '(' };
        self.error_at(open, format!("this {bracket} is never closed"))
    }

    /// An array holds scalars of one type (libconfig's rule).
    fn array(&mut self, depth: usize, open: Pos) -> Result<Vec<Node>> {
        let items = self.elements(depth, ']', open)?;
        for item in &items {
            if matches!(
                item.value,
                Value::Array(_) | Value::List(_) | Value::Group(_)
            ) {
                let why = format!(
                    "an array [ ] holds only strings, numbers or booleans, not {} \
                     (a list ( ) can)",
                    item.value.kind()
                );
                return Err(self.error_at(item.pos, why));
            }
            let first = &items[0].value;
            if std::mem::discriminant(&item.value) != std::mem::discriminant(first) {
                let why = format!(
                    "the elements of an array must be of one type: this is {}, the first {}",
                    item.value.kind(),
                    first.kind()
                );
                return Err(self.error_at(item.pos, why));
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests;
