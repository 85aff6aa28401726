//! What a scalar is: YAML 1.2's core schema for plain scalars, core tags
//! (`!!str 12`), and no other tags.

use saphyr_parser::{ScalarStyle, Tag};

use super::Type;

fn core_tag(tag: &Tag) -> Option<&str> {
    tag.is_yaml_core_schema().then_some(tag.suffix.as_str())
}

pub(super) fn check_tag(tag: Option<&Tag>, want: &str) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(t) if core_tag(t) == Some(want) => Ok(()),
        Some(t) => Err(format!("YAML tag {t} is not supported by holdfast")),
    }
}

pub(super) fn scalar_type(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
) -> Result<Type, String> {
    if let Some(t) = tag {
        return match core_tag(t) {
            Some("str") => Ok(Type::Str),
            Some(s @ ("null" | "bool" | "int" | "float")) => match resolve(text) {
                ty @ Type::Null if s == "null" => Ok(ty),
                ty @ Type::Bool(_) if s == "bool" => Ok(ty),
                ty @ Type::Int(_) if s == "int" => Ok(ty),
                Type::Int(i) if s == "float" => Ok(Type::Float(i as f64)),
                ty @ Type::Float(_) if s == "float" => Ok(ty),
                _ => Err(format!("{text:?} is not a valid !!{s}")),
            },
            _ => Err(format!("YAML tag {t} is not supported by holdfast")),
        };
    }
    Ok(match style {
        ScalarStyle::Plain => resolve(text),
        _ => Type::Str,
    })
}

/// The YAML 1.2 core schema: what a plain scalar is.
fn resolve(s: &str) -> Type {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Type::Null,
        "true" | "True" | "TRUE" => return Type::Bool(true),
        "false" | "False" | "FALSE" => return Type::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Type::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Type::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Type::Float(f64::NAN),
        _ => {}
    }
    let int = |digits: &str, radix| {
        (!digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)))
            .then(|| i64::from_str_radix(digits, radix).ok())
            .flatten()
    };
    if let Some(h) = s.strip_prefix("0x") {
        return int(h, 16).map_or(Type::Str, Type::Int);
    }
    if let Some(o) = s.strip_prefix("0o") {
        return int(o, 8).map_or(Type::Str, Type::Int);
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_or(Type::Str, Type::Int);
    }
    if is_float(unsigned) {
        if let Ok(f) = s.parse() {
            return Type::Float(f);
        }
    }
    Type::Str
}

/// `[0-9]+(.[0-9]*)?` or `.[0-9]+`, then an optional exponent.
fn is_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let m_ok = match mantissa.split_once('.') {
        Some((a, b)) => digits(a) && digits(b) && !(a.is_empty() && b.is_empty()),
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let e_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    m_ok && e_ok && (mantissa.contains('.') || exp.is_some())
}
