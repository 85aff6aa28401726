//! Listening: the unix socket and optional TCP, serving the router.

use std::path::{Path, PathBuf};

use super::{router, Api};

/// Serves on the unix socket (0600, replacing a stale one) and on TCP when
/// configured. Errors are logged; holdfast keeps running without the API.
pub async fn serve(api: Api, socket: PathBuf, tcp: Option<std::net::SocketAddr>) {
    let app = router(api);
    if let Some(addr) = tcp {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "HTTP API listening on TCP {addr}");
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, app).await {
                        tracing::error!(error = %e, "HTTP API on TCP stopped");
                    }
                });
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for the HTTP API on TCP {addr}")
            }
        }
    }
    let listener = match bind_unix(&socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(socket = %socket.display(), error = %e, "cannot listen for the HTTP API");
            return;
        }
    };
    tracing::info!(socket = %socket.display(), "HTTP API listening on {}", socket.display());
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP API stopped");
    }
}

fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Only a socket is replaced: never a file someone put there.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}
