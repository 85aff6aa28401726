//! libconfig's scalars: string literals with their escapes, integers and
//! floats.

use super::{Parser, Result, Value};

impl Parser<'_> {
    /// One or more adjacent string literals, concatenated.
    pub(super) fn strings(&mut self) -> Result<String> {
        let mut s = self.string()?;
        loop {
            self.skip()?;
            if self.peek() != Some('"') {
                return Ok(s);
            }
            s.push_str(&self.string()?);
        }
    }

    fn string(&mut self) -> Result<String> {
        let start = self.pos();
        self.bump();
        let mut buf = Vec::new();
        loop {
            let at = self.pos();
            let c = match self.bump() {
                None => return Err(self.error_at(start, "this string never ends (no closing \")")),
                Some('"') => break,
                Some('\0') => return Err(self.error_at(at, "a NUL character in a string")),
                Some('\\') => match self.bump() {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('f') => '\x0c',
                    Some('x' | 'X') => {
                        let hex = self.rest().get(..2).unwrap_or("");
                        let byte = match u8::from_str_radix(hex, 16) {
                            Ok(b) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => b,
                            _ => return Err(self.error_at(at, "\\x needs two hex digits")),
                        };
                        if byte == 0 {
                            return Err(self.error_at(at, "\\x00 (NUL) in a string"));
                        }
                        self.bump();
                        self.bump();
                        buf.push(byte);
                        continue;
                    }
                    other => {
                        let why = format!(
                            "unknown escape \\{} (libconfig knows \\\" \\\\ \\n \\r \\t \\f \\xNN)",
                            other.map(String::from).unwrap_or_default()
                        );
                        return Err(self.error_at(at, why));
                    }
                },
                Some(c) => c,
            };
            let mut utf8 = [0u8; 4];
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        String::from_utf8(buf)
            .map_err(|_| self.error_at(start, "this string's \\x escapes are not UTF-8 text"))
    }

    /// libconfig's integers (decimal, `0x` hex, an optional `L`/`LL`) and
    /// floats. The whole run of number-like characters is taken, so `1abc`
    /// is an error rather than `1` followed by a name.
    pub(super) fn number(&mut self) -> Result<Value> {
        let pos = self.pos();
        let start = self.i;
        let mut prev = ' ';
        while let Some(c) = self.peek() {
            let sign_ok = matches!(c, '+' | '-') && (self.i == start || matches!(prev, 'e' | 'E'));
            if !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_') || sign_ok) {
                break;
            }
            prev = c;
            self.bump();
        }
        let text = &self.src[start..self.i];
        parse_number(text)
            .ok_or_else(|| {
                let why = format!("{text} is not a number (a string needs double quotes)");
                self.error_at(pos, why)
            })?
            .map_err(|why| self.error_at(pos, why))
    }
}

/// `None`: not a number at all; `Some(Err)`: a number out of range.
fn parse_number(text: &str) -> Option<std::result::Result<Value, String>> {
    let range = || Err(format!("{text} is out of range for a 64-bit integer"));
    let int = text
        .strip_suffix("LL")
        .or_else(|| text.strip_suffix('L'))
        .unwrap_or(text);
    if let Some(hex) = int.strip_prefix("0x").or_else(|| int.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return Some(
            i64::from_str_radix(hex, 16)
                .map(Value::Int)
                .or_else(|_| range()),
        );
    }
    let digits = int.strip_prefix(['+', '-']).unwrap_or(int);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(int.parse().map(Value::Int).or_else(|_| range()));
    }
    // A float: digits with a `.`, an exponent, or both; at least one digit
    // before the exponent.
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole) && digits(frac) && !(whole.is_empty() && frac.is_empty());
    let has_dot = mantissa.contains('.');
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if !mantissa_ok || !exp_ok || !(has_dot || exp.is_some()) {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    Some(if f.is_finite() {
        Ok(Value::Float(f))
    } else {
        Err(format!("{text} is out of range for a float"))
    })
}
