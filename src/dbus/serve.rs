//! Holding the bus name: serving the interface, emitting its change
//! signals as the views move, reconnecting when the bus goes away.

use std::time::Duration;

use zbus::Connection;

use super::{Supervisor, BUS_NAME, OBJECT_PATH};
use crate::command::{Handle, LockInfo};

async fn connect(handle: &Handle, lock_root: &str) -> zbus::Result<Connection> {
    zbus::connection::Builder::system()?
        .serve_at(
            OBJECT_PATH,
            Supervisor {
                handle: handle.clone(),
                lock_root: lock_root.to_owned(),
            },
        )?
        .name(BUS_NAME)?
        .build()
        .await
}

/// Emits property-change and LocksChanged signals as the views move.
async fn emit_changes(conn: &Connection, handle: &Handle) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Supervisor>(OBJECT_PATH)
        .await?;
    let mut snapshot = handle.views.snapshot.clone();
    let mut inh = handle.views.inhibitor.clone();
    let mut apps = handle.views.apps.clone();
    let mut settings = handle.views.settings.clone();
    let mut fleet = handle.views.fleet.clone();
    fleet.mark_unchanged();
    let mut last = snapshot.borrow_and_update().clone();
    inh.mark_unchanged();
    apps.mark_unchanged();
    settings.mark_unchanged();
    loop {
        let emitter = iface.signal_emitter();
        tokio::select! {
            r = snapshot.changed() => {
                if r.is_err() { return Ok(()) }
                let now = snapshot.borrow_and_update().clone();
                let s = iface.get().await;
                if now.table != last.table {
                    let locks = LockInfo::from_table(&now.table);
                    s.locked_changed(emitter).await?;
                    s.locks_changed(emitter).await?;
                    s.unreadable_locks_changed(emitter).await?;
                    Supervisor::lock_table_changed(emitter, locks).await?;
                }
                if now.lock_override != last.lock_override {
                    s.lock_override_changed(emitter).await?;
                    s.lock_override_source_changed(emitter).await?;
                }
                if now.pending_reboot != last.pending_reboot {
                    s.pending_reboot_changed(emitter).await?;
                }
                if now.window_closed != last.window_closed {
                    s.maintenance_window_changed(emitter).await?;
                }
                s.status_changed(emitter).await?;
                last = now;
            }
            r = inh.changed() => {
                if r.is_err() { return Ok(()) }
                inh.borrow_and_update();
                let s = iface.get().await;
                s.inhibitor_held_changed(emitter).await?;
                s.inhibitor_why_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
            r = fleet.changed() => {
                if r.is_err() { return Ok(()) }
                fleet.borrow_and_update();
                iface.get().await.fleet_changed(emitter).await?;
            }
            r = settings.changed() => {
                if r.is_err() { return Ok(()) }
                settings.borrow_and_update();
                let s = iface.get().await;
                s.config_in_force_changed(emitter).await?;
                s.maintenance_window_changed(emitter).await?;
            }
            r = apps.changed() => {
                if r.is_err() { return Ok(()) }
                let json = serde_json::to_string(&apps.borrow_and_update().apps).unwrap_or_default();
                let s = iface.get().await;
                s.apps_changed(emitter).await?;
                Supervisor::app_states_changed(emitter, json).await?;
                s.engine_changed(emitter).await?;
                s.orphaned_volumes_changed(emitter).await?;
                s.status_changed(emitter).await?;
            }
        }
    }
}

/// Owns holdfast's bus name for the daemon's lifetime: serves the
/// interface and reconnects with a bounded back-off when the bus goes
/// away. `ready` fires once the name is first owned.
pub async fn run(handle: Handle, lock_root: String, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = match connect(&handle, &lock_root).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot serve {BUS_NAME} on the system bus");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if let Some(r) = ready.take() {
            let _ = r.send(());
        } else {
            tracing::info!("reconnected to the system bus");
        }
        let disconnected = tokio::select! {
            r = emit_changes(&conn, &handle) => r.is_err(),
            _ = bus_gone(&conn) => true,
        };
        if !disconnected {
            return;
        }
        tracing::warn!("lost the system bus; reconnecting");
    }
}

/// Resolves when the connection to the bus is gone: a stream of a rare
/// signal (our own name changing hands) ends with the connection.
async fn bus_gone(conn: &Connection) {
    use futures_util::StreamExt;
    let Some(mut stream) = crate::system::name_owner_changes(conn, BUS_NAME).await else {
        return;
    };
    while let Some(m) = stream.next().await {
        if m.is_err() {
            break;
        }
    }
}
