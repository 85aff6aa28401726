//! Variable interpolation as compose does it.
//!
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
//! (unset), `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`,
//! and `$$` for a literal `$`. Defaults, errors and alternatives are
//! interpolated themselves (`${A:-${B}}`). Any other `$` is an error.
//!
//! One pass over the value: each byte is read once, whether its part is
//! expanded or skipped (a default not taken), and nothing is copied per
//! level. The bounds keep what a value can cost to what it could be worth:
//! [`MAX_NESTING`] levels, [`MAX_VALUE_BYTES`] per value, and a [`Budget`]
//! for the bytes variables paste into one document.

use std::cell::Cell;
use std::rc::Rc;

/// Deepest `${...${...}}` nesting; compose files use two or three.
pub const MAX_NESTING: usize = 32;
/// Longest value after interpolation (the kernel passes at most 128 KiB
/// per environment string to a program).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most bytes variables' values may paste into one document (`.env` and
/// `env_file` values included).
pub const MAX_PASTED_BYTES: usize = 16 << 20;

/// Where (in characters from the start of the value) and why a value
/// cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpError {
    pub offset: usize,
    /// What is wrong, quoting the value's text (cut to a bounded length).
    pub reason: String,
    /// What is wrong without any of the value's text: env files may hold
    /// secrets, and their errors never quote them.
    pub bare: String,
}

/// Looks a variable up: `None` when unset. Values are shared, so looking
/// one up many times copies nothing.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<Rc<str>>;

/// The bytes variables may still paste into one document.
#[derive(Debug)]
pub struct Budget {
    left: Cell<usize>,
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget {
            left: Cell::new(bytes),
        }
    }

    /// Takes `n` bytes; false (and nothing taken) when fewer are left.
    pub fn take(&self, n: usize) -> bool {
        match self.left.get().checked_sub(n) {
            Some(left) => {
                self.left.set(left);
                true
            }
            None => false,
        }
    }
}

pub fn too_much() -> String {
    format!(
        "variables paste more than {} MiB into this file in all",
        MAX_PASTED_BYTES >> 20
    )
}

pub fn too_long() -> String {
    format!("the value is longer than {} MiB", MAX_VALUE_BYTES >> 20)
}

pub fn interpolate(s: &str, lookup: Lookup, budget: &Budget) -> Result<String, InterpError> {
    let x = Expand { s, lookup, budget };
    let mut out = String::new();
    match x.eval(0, 0, &mut out) {
        Ok(_) => Ok(out),
        Err(f) => Err(x.error(f)),
    }
}

/// What went wrong, at a byte offset.
enum What {
    Dollar,
    Unclosed,
    BadName,
    BadOp,
    Required {
        name: String,
        colon: bool,
        message: String,
    },
    Nested,
    TooLong,
    TooMuch,
}

struct Fail {
    at: usize,
    what: What,
}

fn fail<T>(at: usize, what: What) -> Result<T, Fail> {
    Err(Fail { at, what })
}

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_name(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

struct Expand<'a> {
    s: &'a str,
    lookup: Lookup<'a>,
    budget: &'a Budget,
}

impl Expand<'_> {
    fn bytes(&self) -> &[u8] {
        self.s.as_bytes()
    }

    fn name_end(&self, from: usize) -> usize {
        let b = self.bytes();
        let mut i = from;
        while i < b.len() && is_name(b[i]) {
            i += 1;
        }
        i
    }

    fn push(&self, out: &mut String, piece: &str, at: usize) -> Result<(), Fail> {
        if out.len() + piece.len() > MAX_VALUE_BYTES {
            return fail(at, What::TooLong);
        }
        out.push_str(piece);
        Ok(())
    }

    /// A variable's value, paid for from the document's budget.
    fn paste(&self, out: &mut String, value: Option<&str>, at: usize) -> Result<(), Fail> {
        let v = value.unwrap_or_default();
        if out.len() + v.len() > MAX_VALUE_BYTES {
            return fail(at, What::TooLong);
        }
        if !self.budget.take(v.len()) {
            return fail(at, What::TooMuch);
        }
        out.push_str(v);
        Ok(())
    }

    /// Expands from `i` to the end of the value (`depth` 0) or to the `}`
    /// closing the word of the `${` at `depth`; the index after it.
    fn eval(&self, mut i: usize, depth: usize, out: &mut String) -> Result<usize, Fail> {
        let b = self.bytes();
        loop {
            let start = i;
            while i < b.len() && b[i] != b'$' && !(depth > 0 && b[i] == b'}') {
                i += 1;
            }
            // `$` and `}` are ASCII: the cut is on a character boundary.
            self.push(out, &self.s[start..i], start)?;
            if i == b.len() {
                return if depth > 0 {
                    fail(i, What::Unclosed)
                } else {
                    Ok(i)
                };
            }
            if b[i] == b'}' {
                return Ok(i + 1);
            }
            match b.get(i + 1) {
                Some(b'$') => {
                    self.push(out, "$", i)?;
                    i += 2;
                }
                Some(&c) if is_name_start(c) => {
                    let end = self.name_end(i + 1);
                    let value = (self.lookup)(&self.s[i + 1..end]);
                    self.paste(out, value.as_deref(), i)?;
                    i = end;
                }
                Some(b'{') => i = self.braced(i, depth + 1, out)?,
                _ => return fail(i, What::Dollar),
            }
        }
    }

    /// Passes over a word not taken (a default of a set variable) to the
    /// index after its closing `}`, nesting counted: nothing in it is
    /// evaluated.
    fn skip(&self, mut i: usize, depth: usize) -> Result<usize, Fail> {
        let b = self.bytes();
        let mut inner = 0;
        while i < b.len() {
            match b[i] {
                b'$' if b.get(i + 1) == Some(&b'$') => i += 2,
                b'$' if b.get(i + 1) == Some(&b'{') => {
                    inner += 1;
                    if depth + inner > MAX_NESTING {
                        return fail(i, What::Nested);
                    }
                    i += 2;
                }
                b'}' if inner == 0 => return Ok(i + 1),
                b'}' => {
                    inner -= 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        fail(i, What::Unclosed)
    }

    /// `${...}` starting at `start` (its `$`); the index after its `}`.
    fn braced(&self, start: usize, depth: usize, out: &mut String) -> Result<usize, Fail> {
        if depth > MAX_NESTING {
            return fail(start, What::Nested);
        }
        let b = self.bytes();
        let from = start + 2;
        let end = self.name_end(from);
        if end == from || !is_name_start(b[from]) {
            return fail(start, What::BadName);
        }
        let name = &self.s[from..end];
        let (colon, op_at) = match b.get(end) {
            None => return fail(start, What::Unclosed),
            Some(b'}') => {
                let value = (self.lookup)(name);
                self.paste(out, value.as_deref(), start)?;
                return Ok(end + 1);
            }
            Some(b':') => (true, end + 1),
            Some(_) => (false, end),
        };
        let op = match b.get(op_at) {
            None => return fail(start, What::Unclosed),
            Some(&c @ (b'-' | b'?' | b'+')) => c,
            Some(_) => return fail(start, What::BadOp),
        };
        let word = op_at + 1;
        let value = (self.lookup)(name);
        // With ':', an empty value counts as unset.
        let set = value.as_deref().is_some_and(|v| !(colon && v.is_empty()));
        // An unclosed `${` is reported at the outermost one.
        let unclosed_here = |f: Fail| match f.what {
            What::Unclosed => Fail {
                at: start,
                what: What::Unclosed,
            },
            _ => f,
        };
        match (op, set) {
            (b'-' | b'?', true) => {
                self.paste(out, value.as_deref(), start)?;
                self.skip(word, depth).map_err(unclosed_here)
            }
            (b'-', false) | (b'+', true) => self.eval(word, depth, out).map_err(unclosed_here),
            (b'+', false) => self.skip(word, depth).map_err(unclosed_here),
            _ => {
                let mut message = String::new();
                self.eval(word, depth, &mut message)
                    .map_err(unclosed_here)?;
                fail(
                    start,
                    What::Required {
                        name: name.to_owned(),
                        colon,
                        message,
                    },
                )
            }
        }
    }

    /// The text of the `${...}` at `start`, for a message.
    fn whole(&self, start: usize) -> &str {
        let end = self.skip(start + 2, 1).unwrap_or(self.s.len());
        &self.s[start..end]
    }

    fn error(&self, f: Fail) -> InterpError {
        let q = |s: &str| crate::text::clip(s, crate::text::SHOWN_MAX);
        let (reason, bare) = match f.what {
            What::Dollar => {
                let r = "a \"$\" that starts no variable; write \"$$\" for a literal \"$\"";
                (r.to_owned(), r.to_owned())
            }
            What::Unclosed => {
                let r = "\"${\" without its closing \"}\"; write \"$$\" for a literal \"$\"";
                (r.to_owned(), r.to_owned())
            }
            What::BadName => {
                let r = "a variable name is a letter or '_', then letters, digits or '_'";
                (format!("\"{}\": {r}", q(self.whole(f.at))), r.to_owned())
            }
            What::BadOp => (
                format!(
                    "\"{}\": after the name comes }}, :-, -, :?, ?, :+ or +",
                    q(self.whole(f.at))
                ),
                "after a variable's name comes }, :-, -, :?, ?, :+ or +".to_owned(),
            ),
            What::Required {
                name,
                colon,
                message,
            } => {
                let what = if colon { "unset or empty" } else { "unset" };
                let mut r = format!("required variable {} is {what}", q(&name));
                if !message.is_empty() {
                    r.push_str(": ");
                    r.push_str(&q(&message));
                }
                let bare = if colon {
                    "a required variable is unset or empty"
                } else {
                    "a required variable is unset"
                };
                (r, bare.to_owned())
            }
            What::Nested => {
                let r = format!("variables nested more than {MAX_NESTING} deep");
                (r.clone(), r)
            }
            What::TooLong => (too_long(), too_long()),
            What::TooMuch => (too_much(), too_much()),
        };
        InterpError {
            offset: self.s[..f.at].chars().count(),
            reason,
            bare,
        }
    }
}
