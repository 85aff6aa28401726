//! Target documents that come in over D-Bus (SetTarget, SetAppTarget).
//! One bigger than the target file may be is refused before anything
//! reads it; one within the bound is parsed and checked on the blocking
//! pool, never on the thread that serves the bus. Once a big one is
//! handled or refused, the memory it took is given back.

use super::error::REASON_MAX;
use crate::command::CommandError;
use crate::memory;
use crate::names::AppName;
use crate::target::store::MAX_TARGET_BYTES;
use crate::target::{self, AppTarget};
use crate::text;

/// Refuses, at once, a document the target file could not hold.
pub(super) fn within_bound(json: &str, source: &str) -> Result<(), CommandError> {
    if json.len() as u64 <= MAX_TARGET_BYTES {
        return Ok(());
    }
    Err(CommandError::InvalidTarget(format!(
        "{source}: the document is {} bytes; a target is at most {MAX_TARGET_BYTES} bytes (4 MiB), as the target file is",
        json.len()
    )))
}

/// `InvalidTarget` with a reason of bounded length.
pub(super) fn invalid(reason: impl std::fmt::Display) -> CommandError {
    CommandError::InvalidTarget(text::clip(&reason.to_string(), REASON_MAX))
}

/// One app's target, parsed on the blocking pool.
pub(super) async fn parse_app(
    json: String,
    app: AppName,
    source: &'static str,
) -> Result<AppTarget, CommandError> {
    let big = json.len() >= memory::BIG_INPUT;
    let r = match within_bound(&json, source) {
        Err(e) => Err(e),
        Ok(()) => tokio::task::spawn_blocking(move || target::parse_app(&json, &app, source))
            .await
            .map_err(|e| CommandError::Failed(format!("parsing the target failed: {e}")))
            .and_then(|r| r.map_err(invalid)),
    };
    if big {
        memory::give_back_soon();
    }
    r
}

/// After a big document was handled or refused.
pub(super) fn handled(len: usize) {
    if len >= memory::BIG_INPUT {
        memory::give_back_soon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_over_the_bound_is_refused_with_its_size() {
        let big = " ".repeat(MAX_TARGET_BYTES as usize + 1);
        let e = within_bound(&big, "D-Bus SetTarget").unwrap_err();
        assert!(
            e.to_string().contains(
                "D-Bus SetTarget: the document is 4194305 bytes; a target is at most 4194304 bytes"
            ),
            "{e}"
        );
        assert!(within_bound(&big[1..], "x").is_ok());
    }

    #[test]
    fn a_refusal_quoting_a_long_value_stays_short() {
        let e = invalid(format!("unknown variant `{}`", "x".repeat(100_000)));
        let shown = e.to_string();
        assert!(shown.len() < REASON_MAX + 100, "{} bytes", shown.len());
        assert!(shown.contains("bytes in all"), "{shown}");
    }

    #[tokio::test]
    async fn an_app_is_parsed_off_the_runtime_thread() {
        let app = AppName::new("web").unwrap();
        let t = parse_app(
            r#"{"release": "1", "services": {"w": {"image": "w:1"}}}"#.into(),
            app.clone(),
            "test",
        )
        .await
        .unwrap();
        assert_eq!(t.release, "1");
        let e = parse_app("{".into(), app, "test").await.unwrap_err();
        assert!(matches!(e, CommandError::InvalidTarget(_)), "{e}");
    }
}
