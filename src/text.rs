//! Text from outside holdfast (archive entry names, sw-description values,
//! server answers, target fields, file contents) as it is shown to a
//! person: in a log line, a status, an error, `--json`. Raw control
//! characters forge log lines and drive terminals (`\n`, `\x1b[31m`), and
//! a 100 KB name makes every message that quotes it 100 KB. Every such
//! text goes through [`shown`] (or [`no_controls`] where its length is
//! already bounded).

/// How many characters of one outside string a message quotes.
pub const SHOWN_MAX: usize = 200;

/// `s` with control and invisible formatting characters escaped and cut
/// to [`SHOWN_MAX`] characters, saying how long it was.
pub fn shown(s: &str) -> String {
    no_controls(&clip(s, SHOWN_MAX))
}

/// `s` cut to `max` characters (on a character boundary), with the
/// length of the whole when it was cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}… ({} bytes in all)", &s[..at], s.len()),
    }
}

/// Characters a terminal or journald line must not get raw: control
/// characters and the invisible ones that reorder or hide text (bidi
/// overrides, zero-width characters, a byte order mark).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Escapes control and invisible characters (Rust style, `\n`,
/// `\u{1b}`) in text of bounded length; text without any is unchanged.
pub fn no_controls(s: &str) -> String {
    if !s.chars().any(hidden) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.extend(c.escape_unicode());
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A key as it goes into a path: control and other invisible characters
/// and `\` escaped Rust-style (`a\0b`), quotes left alone. Raw control
/// characters in an error break journald lines and D-Bus replies (NUL).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\'') {
            out.push(c);
        } else if hidden(c) && !c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_log_line_and_a_colour_are_escaped() {
        let name = "a\nERROR holdfastd: FORGED LOG LINE\x1b[31mred";
        let s = shown(name);
        assert!(!s.contains('\n') && !s.contains('\x1b'), "{s}");
        assert_eq!(s, "a\\nERROR holdfastd: FORGED LOG LINE\\u{1b}[31mred");
    }

    #[test]
    fn bidi_and_zero_width_characters_are_shown_as_escapes() {
        assert_eq!(no_controls("a\u{202E}b\u{200B}c"), "a\\u{202e}b\\u{200b}c");
        assert_eq!(escape("k\u{FEFF}"), "k\\u{feff}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_its_length() {
        let long = "é".repeat(100_000);
        let s = shown(&long);
        assert!(s.chars().count() < SHOWN_MAX + 40, "{}", s.len());
        assert!(s.ends_with("… (200000 bytes in all)"), "{s}");
        assert_eq!(shown("short"), "short");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc… (4 bytes in all)");
    }
}
