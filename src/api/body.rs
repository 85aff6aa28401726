//! Request bodies as balena's supervisor reads them: an optional JSON
//! object whose `force` takes balena's truthy words.

use serde_json::{Map, Value};

#[derive(Debug, Default)]
pub(super) struct Body(Map<String, Value>);

impl Body {
    /// An empty body is `{}`; anything else must be a JSON object. The
    /// error is the reason, for a 400.
    pub fn parse(bytes: &[u8]) -> Result<Body, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::default());
        }
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(_) => Err("invalid JSON body: expected an object".into()),
            Err(e) => Err(format!("invalid JSON body: {e}")),
        }
    }

    /// `force` as balena reads it: any other value, or none, is false.
    pub fn force(&self) -> bool {
        self.0.get("force").is_some_and(truthy)
    }

    /// A non-empty string field; a number stands for its decimal text
    /// (clients written for balena send numeric ids).
    pub fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// balena's truthy values: `true`, `1`, and the strings `"true"`, `"1"`,
/// `"on"` in any case. Everything else (`false`, `0`, `"false"`, `"0"`,
/// `"off"`, ...) is false.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => ["true", "1", "on"].contains(&s.to_ascii_lowercase().as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn force(json: &str) -> bool {
        Body::parse(json.as_bytes()).unwrap().force()
    }

    #[test]
    fn force_takes_balenas_truthy_values() {
        for yes in [
            r#"{"force": true}"#,
            r#"{"force": "true"}"#,
            r#"{"force": "TRUE"}"#,
            r#"{"force": "1"}"#,
            r#"{"force": 1}"#,
            r#"{"force": 1.0}"#,
            r#"{"force": "on"}"#,
            r#"{"force": "On"}"#,
        ] {
            assert!(force(yes), "{yes}");
        }
        for no in [
            "",
            " \n",
            "{}",
            r#"{"force": false}"#,
            r#"{"force": "false"}"#,
            r#"{"force": "0"}"#,
            r#"{"force": 0}"#,
            r#"{"force": "off"}"#,
            r#"{"force": null}"#,
            r#"{"force": "yes"}"#,
            r#"{"force": 2}"#,
            r#"{"force": [true]}"#,
        ] {
            assert!(!force(no), "{no}");
        }
    }

    #[test]
    fn malformed_bodies_say_why() {
        let e = Body::parse(b"{nope").unwrap_err();
        assert!(
            e.starts_with("invalid JSON body: key must be a string"),
            "{e}"
        );
        assert_eq!(
            Body::parse(b"[1]").unwrap_err(),
            "invalid JSON body: expected an object"
        );
        assert_eq!(
            Body::parse(b"true").unwrap_err(),
            "invalid JSON body: expected an object"
        );
    }

    #[test]
    fn text_fields_take_strings_and_numbers() {
        let b = Body::parse(br#"{"appId": "app1", "n": 42, "e": "", "o": {}}"#).unwrap();
        assert_eq!(b.text("appId").as_deref(), Some("app1"));
        assert_eq!(b.text("n").as_deref(), Some("42"));
        assert_eq!(b.text("e"), None);
        assert_eq!(b.text("o"), None);
        assert_eq!(b.text("missing"), None);
    }
}
