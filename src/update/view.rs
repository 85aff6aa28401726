//! What the HTTP state routes show of the engine, asked of the executor
//! when a client asks: the managed containers and which of the target's
//! images the engine has.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::exec::Executor;
use crate::command::{CommandError, EngineView};
use crate::target::Target;

pub(super) async fn engine_view(
    exec: Executor,
    target: Option<Arc<Target>>,
) -> Result<EngineView, CommandError> {
    // No target: holdfast touches no container and asks the engine nothing.
    if target.is_none() {
        return Ok(EngineView::default());
    }
    let failed = |e: crate::engine::EngineError| CommandError::Failed(e.to_string());
    let containers = exec.containers(None).await.map_err(failed)?;
    let mut present = BTreeSet::new();
    for app in target.iter().flat_map(|t| t.apps.values()) {
        present.extend(exec.present(Some(app)).await.map_err(failed)?);
    }
    Ok(EngineView {
        containers,
        present,
        target,
    })
}
