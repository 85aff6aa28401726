//! Variable interpolation as compose does it, and `.env`-style files.
//!
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
//! (unset), `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`,
//! and `$$` for a literal `$`. Defaults, errors and alternatives are
//! interpolated themselves (`${A:-${B}}`). Any other `$` is an error.

/// Where (in characters from the start of the value) and why a value
/// cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpError {
    pub offset: usize,
    pub reason: String,
}

/// Looks a variable up: `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn interpolate(s: &str, lookup: Lookup) -> Result<String, InterpError> {
    let chars: Vec<char> = s.chars().collect();
    expand(&chars, 0, lookup)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Expands `chars`, which start at `base` in the whole value.
fn expand(chars: &[char], base: usize, lookup: Lookup) -> Result<String, InterpError> {
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        let err = |reason: String| InterpError {
            offset: base + i,
            reason,
        };
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some(&c) if is_name_start(c) => {
                let end = (i + 1..chars.len())
                    .find(|&j| !is_name(chars[j]))
                    .unwrap_or(chars.len());
                let name: String = chars[i + 1..end].iter().collect();
                out.push_str(&lookup(&name).unwrap_or_default());
                i = end;
            }
            Some('{') => {
                let close = matching_brace(chars, i + 2).ok_or_else(|| {
                    err("\"${\" without its closing \"}\"; write \"$$\" for a literal \"$\"".into())
                })?;
                let inner = &chars[i + 2..close];
                out.push_str(&braced(inner, base + i + 2, lookup).map_err(|e| {
                    if e.offset == usize::MAX {
                        err(e.reason)
                    } else {
                        e
                    }
                })?);
                i = close + 1;
            }
            _ => {
                return Err(err(
                    "a \"$\" that starts no variable; write \"$$\" for a literal \"$\"".into(),
                ))
            }
        }
    }
    Ok(out)
}

/// The `}` closing a `${` whose content starts at `from`, nesting counted.
fn matching_brace(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0;
    let mut j = from;
    while j < chars.len() {
        match chars[j] {
            '$' if chars.get(j + 1) == Some(&'$') => j += 1,
            '$' if chars.get(j + 1) == Some(&'{') => {
                depth += 1;
                j += 1;
            }
            '}' if depth == 0 => return Some(j),
            '}' => depth -= 1,
            _ => {}
        }
        j += 1;
    }
    None
}

/// The inside of `${...}`. An error of the whole `${...}` has offset MAX.
fn braced(inner: &[char], base: usize, lookup: Lookup) -> Result<String, InterpError> {
    let whole = |reason: String| InterpError {
        offset: usize::MAX,
        reason,
    };
    let end = inner
        .iter()
        .position(|&c| !is_name(c))
        .unwrap_or(inner.len());
    let name: String = inner[..end].iter().collect();
    let shown: String = inner.iter().collect();
    if name.is_empty() || !is_name_start(inner[0]) {
        return Err(whole(format!(
            "\"${{{shown}}}\": a variable name is a letter or '_', then letters, digits or '_'"
        )));
    }
    let value = lookup(&name);
    let rest = &inner[end..];
    if rest.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let (colon, op, word_at) = match rest {
        [':', op, ..] => (true, *op, end + 2),
        [op, ..] => (false, *op, end + 1),
        [] => unreachable!(),
    };
    if !matches!(op, '-' | '?' | '+') {
        return Err(whole(format!(
            "\"${{{shown}}}\": after the name comes }}, :-, -, :?, ?, :+ or +"
        )));
    }
    let word = || expand(&inner[word_at..], base + word_at, lookup);
    // With ':', an empty value counts as unset.
    let set = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match op {
        '-' if set => Ok(value.unwrap_or_default()),
        '-' => word(),
        '+' if set => word(),
        '+' => Ok(String::new()),
        _ if set => Ok(value.unwrap_or_default()),
        _ => {
            let message = word()?;
            let what = if colon { "unset or empty" } else { "unset" };
            Err(whole(if message.is_empty() {
                format!("required variable {name} is {what}")
            } else {
                format!("required variable {name} is {what}: {message}")
            }))
        }
    }
}

/// A `.env`-style file: `KEY=VALUE` lines, `#` comments and blank lines,
/// an optional `export ` before the key. Values: `'single'` (literal),
/// `"double"` (escapes `\n \t \\ \" \$`, then interpolated), or bare
/// (a ` #` starts a comment; interpolated). Interpolation sees the keys
/// set earlier in the file, then `lookup`. A bare `KEY` takes its value
/// from `lookup` and is left out when that is unset.
/// Errors: (line, column, reason).
pub fn parse_env_file(
    text: &str,
    lookup: Lookup,
) -> Result<Vec<(String, String)>, (usize, usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v.trim_start())),
            None => (line, None),
        };
        let col = indent + 1;
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((line_no, col, format!("{line:?} is not KEY=VALUE")));
        }
        let Some(value) = value else {
            if let Some(v) = lookup(key) {
                out.push((key.to_owned(), v));
            }
            continue;
        };
        let earlier = |name: &str| {
            out.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| lookup(name))
        };
        let bad = |reason: String| (line_no, col, format!("{key}: {reason}"));
        let value = if let Some(rest) = value.strip_prefix('\'') {
            let end = rest
                .find('\'')
                .ok_or_else(|| bad("a ' without its closing '".into()))?;
            rest[..end].to_owned()
        } else if let Some(rest) = value.strip_prefix('"') {
            let unescaped =
                double_quoted(rest).ok_or_else(|| bad("a \" without its closing \"".into()))?;
            interpolate(&unescaped, &earlier).map_err(|e| bad(e.reason))?
        } else {
            let v = match value.find(" #").or_else(|| value.find("\t#")) {
                Some(i) => value[..i].trim_end(),
                None => value,
            };
            interpolate(v, &earlier).map_err(|e| bad(e.reason))?
        };
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value));
    }
    Ok(out)
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
