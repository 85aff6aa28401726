//! `.env` and `env_file` files, and the variables a compose file's values
//! see. An env file may be anything a path names (`/proc/self/environ`),
//! so its errors say the line, the column and what is wrong, never what
//! the line holds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::interpolate::{interpolate, too_long, Budget, Lookup, MAX_VALUE_BYTES};
use super::Host;

/// Largest `.env` or `env_file` (a program gets at most 2 MiB of
/// arguments and environment from the kernel).
pub const MAX_ENV_FILE_BYTES: usize = 1 << 20;
/// Most bytes of `.env` and `env_file`s one compose file reads in all
/// (a file named by many services is counted each time).
pub const MAX_ENV_FILES_BYTES: usize = 16 << 20;

/// The env files one compose file reads: counted against the bounds and
/// hashed into the release as they come.
pub struct Reads {
    left: usize,
    hash: Sha256,
}

impl Reads {
    /// `hash` has the compose file's bytes.
    pub fn new(hash: Sha256) -> Self {
        Reads {
            left: MAX_ENV_FILES_BYTES,
            hash,
        }
    }

    /// The bytes of one file read, or why they are refused.
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > MAX_ENV_FILE_BYTES {
            // As fsutil::read_regular says it (the file system's read).
            return Err(format!("is larger than {MAX_ENV_FILE_BYTES} bytes"));
        }
        if bytes.len() > self.left {
            return Err(format!(
                "one file too many: the .env and env_files one compose file reads hold at most {} MiB in all",
                MAX_ENV_FILES_BYTES >> 20
            ));
        }
        self.left -= bytes.len();
        self.hash.update(bytes);
        Ok(())
    }

    /// The hash of the compose file and of every file read, in order.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.hash).finalize().to_vec()
    }
}

/// Where in an env file and what is wrong; `reason` quotes nothing of
/// the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// The variables of an env file, in the order they are first set.
pub type EnvVars = Vec<(String, Rc<str>)>;

/// A `.env`-style file: `KEY=VALUE` lines, `#` comments and blank lines,
/// an optional `export ` before the key, a byte order mark at the start
/// ignored. Values: `'single'` (literal), `"double"` (escapes `\n \t \\
/// \" \$`, then interpolated), or bare (a ` #` starts a comment;
/// interpolated). Interpolation sees the keys set earlier in the file,
/// then `lookup`. A bare `KEY` takes its value from `lookup` and is left
/// out when that is unset. A key set again keeps its place.
pub fn parse_env_file(text: &str, lookup: Lookup, budget: &Budget) -> Result<EnvVars, EnvError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut vars: EnvVars = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        // Columns are counted only for an error.
        let err = |byte: usize, extra: usize, reason: String| EnvError {
            line: n + 1,
            column: raw[..byte].chars().count() + 1 + extra,
            reason,
        };
        if let Some(at) = raw.find('\0') {
            return Err(err(
                at,
                0,
                "a NUL character: an env file holds lines of text, KEY=VALUE".into(),
            ));
        }
        let mut at = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export ") {
            Some(rest) => {
                let rest = rest.trim_start();
                at += line.len() - rest.len();
                rest
            }
            None => line,
        };
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => {
                let vt = v.trim_start();
                (
                    k.trim_end(),
                    Some((vt, at + k.len() + 1 + v.len() - vt.len())),
                )
            }
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(
                at,
                0,
                "not KEY=VALUE, a comment (#) or a blank line".into(),
            ));
        }
        let Some((value, vat)) = value else {
            if let Some(v) = lookup(key) {
                set(&mut vars, &mut index, key, v);
            }
            continue;
        };
        let earlier = |name: &str| {
            index
                .get(name)
                .map(|&i| vars[i].1.clone())
                .or_else(|| lookup(name))
        };
        let v: String = if let Some(rest) = value.strip_prefix('\'') {
            let end = rest
                .find('\'')
                .ok_or_else(|| err(vat, 0, "a ' without its closing '".into()))?;
            rest[..end].to_owned()
        } else if let Some(rest) = value.strip_prefix('"') {
            let unescaped = double_quoted(rest)
                .ok_or_else(|| err(vat, 0, "a \" without its closing \"".into()))?;
            // Offsets in the unescaped text are not columns: the quote's.
            interpolate(&unescaped, &earlier, budget).map_err(|e| err(vat, 0, e.bare))?
        } else {
            let v = match value.find(" #").or_else(|| value.find("\t#")) {
                Some(i) => value[..i].trim_end(),
                None => value,
            };
            interpolate(v, &earlier, budget).map_err(|e| err(vat, e.offset, e.bare))?
        };
        if v.len() > MAX_VALUE_BYTES {
            return Err(err(vat, 0, too_long()));
        }
        set(&mut vars, &mut index, key, Rc::from(v));
    }
    Ok(vars)
}

fn set(vars: &mut EnvVars, index: &mut HashMap<String, usize>, key: &str, v: Rc<str>) {
    match index.get(key) {
        Some(&i) => vars[i].1 = v,
        None => {
            index.insert(key.to_owned(), vars.len());
            vars.push((key.to_owned(), v));
        }
    }
}

/// The content of a double-quoted value up to its closing quote, with
/// `\n \t \\ \"` unescaped; `\$` stays `$$` for interpolation.
fn double_quoted(rest: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '$' => out.push_str("$$"),
                other @ ('\\' | '"') => out.push(other),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

/// The variables a compose file's values see: the shell's (each asked of
/// the host once), then `.env`'s.
pub struct Vars<'a> {
    host: &'a dyn Host,
    asked: RefCell<HashMap<String, Option<Rc<str>>>>,
    dotenv: HashMap<String, Rc<str>>,
}

impl<'a> Vars<'a> {
    pub fn new(host: &'a dyn Host) -> Self {
        Vars {
            host,
            asked: RefCell::new(HashMap::new()),
            dotenv: HashMap::new(),
        }
    }

    pub fn set_dotenv(&mut self, vars: EnvVars) {
        self.dotenv = vars.into_iter().collect();
    }

    /// A variable of the shell.
    pub fn shell(&self, name: &str) -> Option<Rc<str>> {
        if let Some(v) = self.asked.borrow().get(name) {
            return v.clone();
        }
        let v: Option<Rc<str>> = self.host.env(name).map(Rc::from);
        self.asked.borrow_mut().insert(name.to_owned(), v.clone());
        v
    }

    /// A variable as interpolation sees it: the shell's, else `.env`'s.
    pub fn get(&self, name: &str) -> Option<Rc<str>> {
        self.shell(name).or_else(|| self.dotenv.get(name).cloned())
    }
}
