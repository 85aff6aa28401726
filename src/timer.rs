//! An optional deadline for `select!` loops: a branch that sleeps until
//! `at`, or never fires when there is none (no timer while idle).

use tokio::time::Instant;

pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
