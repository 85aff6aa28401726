//! Structured logs: journald when running under systemd (or asked for),
//! stderr otherwise, and stderr whenever journald is absent.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// journald MESSAGE_IDs (catalog: systemd/holdfast.catalog).
pub mod msgid {
    pub const LOCK_TAKEN: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a51";
    pub const LOCK_RELEASED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a52";
    pub const LOCK_STALE: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a53";
    pub const INHIBITOR_TAKEN: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a54";
    pub const INHIBITOR_RELEASED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a55";
    pub const OWN_LEFTOVER_REMOVED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a56";
    pub const ENGINE_UNAVAILABLE: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a57";
    pub const UPDATE_FAILED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a58";
    pub const UPDATE_WAITING: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a59";
    pub const UPDATE_APPLIED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a5a";
    pub const CONTAINERS_STOPPED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a5b";
    pub const UPDATE_FORCED: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a5c";
    pub const OVERRIDE_ON: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a5d";
    pub const OVERRIDE_OFF: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a5e";
    pub const LOCK_UNKNOWN: &str = "6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a5f";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Journald,
    Stderr,
}

/// `HOLDFAST_LOG_TARGET=journald|stderr` decides; otherwise journald when
/// systemd started us (it sets `JOURNAL_STREAM`/`INVOCATION_ID`).
pub fn wanted_target() -> Target {
    match std::env::var("HOLDFAST_LOG_TARGET").as_deref() {
        Ok("journald") => Target::Journald,
        Ok("stderr") => Target::Stderr,
        _ if std::env::var_os("JOURNAL_STREAM").is_some()
            || std::env::var_os("INVOCATION_ID").is_some() =>
        {
            Target::Journald
        }
        _ => Target::Stderr,
    }
}

/// Installs the global subscriber and returns where logs go.
pub fn init() -> Target {
    // `HOLDFAST_LOG=debug` or `info,holdfast::locks=trace`: levels per
    // target, without a regex engine in the binary.
    let filter = std::env::var("HOLDFAST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    #[cfg(feature = "journald")]
    if wanted_target() == Target::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                // No field prefix: `message_id` becomes MESSAGE_ID.
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("holdfastd".into());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .init();
                return Target::Journald;
            }
            Err(e) => eprintln!("holdfastd: journald unavailable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .init();
    Target::Stderr
}
