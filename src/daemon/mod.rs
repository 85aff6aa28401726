//! `holdfastd`: wires the subsystems together, talks to systemd (sd_notify,
//! watchdog, signals) and supervises the long-lived tasks.

mod core;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api;
use crate::arbiter::{Arbiter, PendingReboot};
use crate::bootcfg::BootConfig;
use crate::command::{request, Command};
use crate::config::{self, ConfigError, Settings};
use crate::dbus;
use crate::devconfig::Override;
use crate::engine::SupervisorApi;
use crate::inhibit::InhibitorStatus;
use crate::inotify::NamesWatch;
use crate::locks::fs::FsError;
use crate::locks::own::{OwnLockError, OwnLocks};
use crate::locks::state::LockEvent;
use crate::locks::watch::Watcher;
use crate::locks::LockTable;
use crate::logging::msgid;
use crate::power::Power;
use crate::status::full_summary;
use crate::update::runner::Updater;
use crate::update::status::UpdateStatus;
use crate::update::store::TargetStore;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("lock root: {0}")]
    LockRoot(#[from] FsError),
    #[error("own locks: {0}")]
    OwnLocks(#[from] OwnLockError),
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    #[error("a core task stopped unexpectedly")]
    TaskDied,
}

pub struct Options {
    /// `--config`; else `HOLDFAST_CONFIG`; else the default path.
    pub config: Option<PathBuf>,
}

fn notify(states: &[NotifyState]) {
    // No NOTIFY_SOCKET (not under systemd) is fine: nothing to tell.
    let _ = sd_notify::notify(false, states);
}

pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let (config_path, required) = config::main_path(opts.config);
    let sourced = config::load(&config_path, required)?;
    let mut settings = sourced.settings;
    tracing::info!(config = %config_path.display(), lock_root = %settings.lock_root.display(),
        "holdfastd {} starting", env!("CARGO_PKG_VERSION"));

    let mut own = OwnLocks::new(&settings.lock_root, &settings.state_dir);
    let cleanup = own.cleanup_leftovers()?;
    for path in &cleanup.removed {
        tracing::info!(message_id = msgid::OWN_LEFTOVER_REMOVED, path = %path,
            "removed holdfast's own lock left over from a previous run: {path}");
    }
    for path in &cleanup.kept {
        tracing::warn!(path = %path, "recorded own lock {path} now belongs to someone else; left alone");
    }

    let (target_store, target_rx) = TargetStore::load(&settings.target_file, &settings.state_dir);
    let scan_started = std::time::Instant::now();
    let (watcher, scan) = Watcher::start(&settings.lock_root)?;
    let (table_tx, table_rx) = watch::channel(Arc::new(LockTable::default()));
    let (power_tx, power_rx) = watch::channel(false);
    let (override_tx, override_rx) = watch::channel(Override::default());
    let (update_req_tx, update_req_rx) = mpsc::channel(8);
    let (pending_tx, pending_rx) = watch::channel(None);
    let mut core = core::Core {
        table: LockTable::default(),
        own,
        table_tx,
        proc_root: PathBuf::from("/proc"),
        power_tx,
        power_locks: Vec::new(),
        target: target_store,
        lock_root: settings.lock_root.clone(),
        config_json: settings.config_json.clone(),
        lock_override: override_tx,
        updates: update_req_tx,
        pending_reboot: pending_tx.clone(),
        boot: BootConfig::new(&settings.boot_config_txt, &settings.state_dir),
    };
    let initial: Vec<_> = scan
        .services
        .iter()
        .filter(|(_, e)| !e.is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    core.apply(LockEvent::Resync(scan.services));
    core.load_device_config(true);
    if let Some(t) = target_rx.borrow().clone() {
        core.take_device_config(&t);
    }
    tracing::info!(
        services = core.table.service_count(),
        locks = core.table.lock_count(),
        scan_us = scan_started.elapsed().as_micros() as u64,
        "initial scan done"
    );

    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (what_tx, what_rx) = watch::channel(settings.inhibit_what_arg());
    let (inh_tx, inh_rx) = watch::channel(InhibitorStatus::default());

    let (updates_tx, updates_rx) = watch::channel(UpdateStatus {
        engine: "unknown".into(),
        ..Default::default()
    });
    let mut watcher_task = tokio::spawn(watcher.run(ev_tx, initial));
    tokio::spawn(watch_file(
        settings.target_file.clone(),
        cmd_tx.clone(),
        || Command::ReloadTarget,
    ));
    tokio::spawn(watch_file(
        settings.config_json.clone(),
        cmd_tx.clone(),
        || Command::ReloadDeviceConfig,
    ));
    let api_key = api::load_or_create_key(&settings.state_dir)
        .map_err(|e| tracing::error!(error = %e, "no HTTP API: cannot read or create its key"))
        .ok();
    let updater = Updater {
        socket: settings.engine_socket(),
        engine: None,
        lock_root: settings.lock_root.clone(),
        state_dir: settings.state_dir.clone(),
        commands: cmd_tx.clone(),
        table: table_rx.clone(),
        target: target_rx,
        status: updates_tx,
        lock_override: override_rx.clone(),
        requests: update_req_rx,
        forced: None,
        supervisor_api: settings
            .api_tcp
            .zip(api_key.as_deref())
            .map(|(addr, key)| SupervisorApi::from_bind(addr, key)),
        saved: Vec::new(),
    };
    let updater_task = tokio::spawn(updater.run());
    let power = Power {
        commands: cmd_tx.clone(),
        inhibitor: inh_rx.clone(),
    };
    let arbiter = Arbiter {
        power: power.clone(),
        table: table_rx.clone(),
        lock_override: override_rx.clone(),
        pending: pending_tx,
    };
    tokio::spawn(arbiter.run());
    if let Some(key) = api_key {
        let api = api::Api {
            commands: cmd_tx.clone(),
            power,
            updates: updates_rx.clone(),
            key: Arc::new(key),
        };
        tokio::spawn(api::serve(
            api,
            settings.api_socket.clone(),
            settings.api_tcp,
        ));
    }
    let mut core_task = tokio::spawn(core.run(ev_rx, cmd_rx));
    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings.clone()));
    let shared = dbus::Shared {
        commands: cmd_tx.clone(),
        table: table_rx.clone(),
        inhibitor: inh_rx.clone(),
        what: what_rx,
        powering: power_rx,
        inhibitor_tx: Arc::new(inh_tx),
        lock_root: settings.lock_root.display().to_string(),
        updates: updates_rx.clone(),
        engine_socket: settings.engine_socket(),
        lock_override: override_rx.clone(),
        pending_reboot: pending_rx.clone(),
        settings: settings_rx,
    };
    let (ready_tx, mut ready_rx) = oneshot::channel();
    let bus_task = tokio::spawn(dbus::run(shared, ready_tx));
    tokio::spawn(status_lines(StatusInputs {
        table: table_rx,
        inh: inh_rx,
        updates: updates_rx,
        lock_override: override_rx,
        pending: pending_rx,
    }));
    let mut watchdog_usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut watchdog_usec) {
        tokio::spawn(watchdog(
            cmd_tx.clone(),
            Duration::from_micros(watchdog_usec),
        ));
    }

    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut ready = false;
    let result = loop {
        tokio::select! {
            r = &mut ready_rx, if !ready => {
                ready = true;
                if r.is_ok() {
                    notify(&[NotifyState::Ready]);
                    tracing::info!("ready: serving {} on the system bus", dbus::BUS_NAME);
                }
            }
            _ = hup.recv() => {
                let mono = NotifyState::monotonic_usec_now().ok();
                let mut states = vec![NotifyState::Reloading];
                states.extend(mono);
                notify(&states);
                reload(&config_path, required, &mut settings, &what_tx);
                settings_tx.send_replace(Arc::new(settings.clone()));
                notify(&[NotifyState::Ready]);
            }
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = &mut watcher_task => break Err(DaemonError::TaskDied),
            _ = &mut core_task => break Err(DaemonError::TaskDied),
        }
    };
    notify(&[NotifyState::Stopping]);
    tracing::info!("stopping");
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        request(&cmd_tx, |reply| Command::Shutdown { reply }),
    )
    .await;
    bus_task.abort();
    updater_task.abort();
    result
}

/// Re-reads the config. A bad config is logged and the running one stays.
fn reload(
    path: &std::path::Path,
    required: bool,
    settings: &mut Settings,
    what_tx: &watch::Sender<String>,
) {
    match config::load(path, required) {
        Ok(new) => {
            let new = new.settings;
            for (key, old, now) in [
                ("lock_root", &settings.lock_root, &new.lock_root),
                ("state_dir", &settings.state_dir, &new.state_dir),
            ] {
                if old != now {
                    tracing::warn!(
                        key,
                        "{key} changed to {}; it takes effect at the next restart",
                        now.display()
                    );
                }
            }
            what_tx.send_if_modified(|w| {
                let arg = new.inhibit_what_arg();
                let changed = *w != arg;
                *w = arg;
                changed
            });
            let keep = (settings.lock_root.clone(), settings.state_dir.clone());
            *settings = new;
            (settings.lock_root, settings.state_dir) = keep;
            tracing::info!(config = %path.display(), "configuration reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration rejected; keeping the running configuration");
            notify(&[NotifyState::Status(&format!("config rejected: {e}"))]);
        }
    }
}

struct StatusInputs {
    table: watch::Receiver<Arc<LockTable>>,
    inh: watch::Receiver<InhibitorStatus>,
    updates: watch::Receiver<UpdateStatus>,
    lock_override: watch::Receiver<Override>,
    pending: watch::Receiver<Option<PendingReboot>>,
}

/// Keeps systemd's STATUS= line in step with the published state.
async fn status_lines(mut i: StatusInputs) {
    let mut last = String::new();
    loop {
        let line = full_summary(
            &i.table.borrow_and_update(),
            &i.inh.borrow_and_update(),
            &i.updates.borrow_and_update(),
            &i.lock_override.borrow_and_update(),
            i.pending.borrow_and_update().is_some(),
        );
        if line != last {
            notify(&[NotifyState::Status(&line)]);
            last = line;
        }
        tokio::select! {
            r = i.table.changed() => if r.is_err() { return },
            r = i.inh.changed() => if r.is_err() { return },
            r = i.updates.changed() => if r.is_err() { return },
            r = i.lock_override.changed() => if r.is_err() { return },
            r = i.pending.changed() => if r.is_err() { return },
        }
    }
}

/// Tells the core to re-read `file` whenever it is written, renamed over or
/// removed (the core keeps what is in force when it is bad or gone).
async fn watch_file(file: PathBuf, commands: mpsc::Sender<Command>, make: fn() -> Command) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        tracing::error!(file = %file.display(), "path has no directory or name; not watching it");
        return;
    };
    let watch = std::fs::create_dir_all(dir).and_then(|_| NamesWatch::new(dir, &[name]));
    let mut watch = match watch {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot watch {}; changes to it need a restart", file.display());
            return;
        }
    };
    while watch.changed().await.is_ok() {
        if commands.send(make()).await.is_err() {
            return;
        }
    }
}

/// WATCHDOG=1 only when the core loop answered a ping: a hung core stops
/// the pings and systemd restarts us.
async fn watchdog(commands: mpsc::Sender<Command>, interval: Duration) {
    let period = interval / 2;
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let ping = request(&commands, |reply| Command::Ping { reply });
        match tokio::time::timeout(period, ping).await {
            Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
            _ => tracing::warn!("core loop did not answer the watchdog ping"),
        }
    }
}
