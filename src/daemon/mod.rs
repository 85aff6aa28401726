//! `holdfastd`: wires the subsystems together, talks to systemd (sd_notify,
//! watchdog, signals) and supervises the long-lived tasks: they run in one
//! set, and any of them ending is fatal (logged, then systemd restarts us).

mod fleet;
mod lockpath;
mod reload;
mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::api;
use crate::command::{Command, Handle};
use crate::config::{self, ConfigError, Settings};
use crate::core::Core;
use crate::dbus;
use crate::device_config::DeviceConfig;
use crate::keeper::Keeper;
use crate::liveness::Liveness;
use crate::locks::holders;
use crate::locks::mounts::MountWatch;
use crate::locks::own::{OwnLockError, OwnLocks};
use crate::locks::watch::Watcher;
use crate::model::{InhibitorStatus, Snapshot, UpdateStatus, Views};
use crate::power::PowerTask;
use crate::status::full_summary;
use crate::system::System;
use crate::target::store::{TargetStore, TargetTask};
use crate::update::Updates;
use lockpath::LockPath;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("own locks: {0}")]
    OwnLocks(#[from] OwnLockError),
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the lock path's thread: {0}")]
    LockPath(std::io::Error),
    #[error("the {0} task stopped unexpectedly")]
    TaskDied(&'static str),
}

pub struct Options {
    /// `--config`; else `HOLDFAST_CONFIG`; else the default path.
    pub config: Option<PathBuf>,
}

fn notify(states: &[NotifyState]) {
    // No NOTIFY_SOCKET (not under systemd) is fine: nothing to tell.
    let _ = sd_notify::notify(false, states);
}

/// The supervised set: every task with the name it is logged under.
#[derive(Default)]
struct Tasks(JoinSet<&'static str>);

impl Tasks {
    fn spawn(
        &mut self,
        name: &'static str,
        f: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::AbortHandle {
        self.0.spawn(async move {
            f.await;
            name
        })
    }

    /// Spawns on another runtime (the lock path's), still in this set.
    fn spawn_on(
        &mut self,
        name: &'static str,
        f: impl std::future::Future<Output = ()> + Send + 'static,
        rt: &tokio::runtime::Handle,
    ) {
        self.0.spawn_on(
            async move {
                f.await;
                name
            },
            rt,
        );
    }
}

pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let (config_path, required) = config::main_path(opts.config);
    let settings = config::load(&config_path, required)?.settings;
    tracing::info!(config = %config_path.display(), lock_root = %settings.lock_root.display(),
        "holdfastd {} starting", env!("CARGO_PKG_VERSION"));
    let lock_root = settings.lock_root.clone();
    let state_dir = settings.state_dir.clone();

    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings.clone()));
    let (snapshot_tx, snapshot_rx) = watch::channel(Snapshot {
        window_closed: window::closed_now(&settings),
        ..Default::default()
    });
    let (apps_tx, apps_rx) = watch::channel(UpdateStatus {
        engine: "unknown".into(),
        ..Default::default()
    });
    let (inhibitor_tx, inhibitor_rx) = watch::channel(InhibitorStatus::default());
    let settled_rx = inhibitor_rx.clone();
    let fleet_status = fleet::fleet_identity(&settings);
    let (fleet_tx, fleet_rx) = watch::channel(fleet_status);
    let views = Views {
        snapshot: snapshot_rx.clone(),
        apps: apps_rx.clone(),
        inhibitor: inhibitor_rx,
        settings: settings_rx.clone(),
        fleet: fleet_rx,
    };
    let (handle, inboxes) = Handle::new(views.clone(), PathBuf::from("/proc"));
    let mut liveness = Liveness::new();
    let (events_tx, mut events_rx) = mpsc::channel(1024);
    let (holders_tx, holders_rx) = mpsc::channel(1024);

    // config::load accepted the lock root: from now on it is holdfast's.
    crate::locks::root::mark(&lock_root);
    let lock_path = LockPath::start().map_err(DaemonError::LockPath)?;
    // Own leftovers go before the scan, so the table never shows them.
    let keeper = Keeper::start(OwnLocks::new(&lock_root, &state_dir), events_tx.clone()).await?;
    let (target_store, target_rx) = TargetStore::load(&settings.target_file, &state_dir);
    target_store.report_to(apps_tx.clone());
    let scan_started = Instant::now();
    // Made on the lock path's thread: its inotify fd is that runtime's.
    let (watcher, core, events_rx) = {
        let (root, events) = (lock_root.clone(), events_tx.clone());
        let beats = (liveness.beat("lock watcher"), liveness.beat("core"));
        lock_path
            .run(async move {
                let watcher = Watcher::start(&root, events, holders_tx, beats.0).await;
                let mut core = Core::new(snapshot_tx, root, beats.1);
                core.prime(&mut events_rx);
                (watcher, core, events_rx)
            })
            .await
    };
    {
        let s = snapshot_rx.borrow();
        tracing::info!(
            services = s.table.service_count(),
            locks = s.table.lock_count(),
            scan_us = scan_started.elapsed().as_micros() as u64,
            "initial scan done"
        );
    }

    let api_key = match api::load_or_create_key(&state_dir) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::error!(error = %e, "no HTTP API: {e}");
            None
        }
    };
    let (keys_tx, keys_rx) = watch::channel(Arc::new(api::ApiKeys::new(api_key.clone())));
    let api = api_key
        .is_some()
        .then(|| api::Api::new(handle.clone(), keys_rx));
    let listeners = api::AppListeners::new(api.clone());
    let (device_tx, device_rx) = watch::channel(None);
    let (system_tx, system_rx) = mpsc::channel(4);
    let (ready_tx, mut ready_rx) = oneshot::channel();
    let mut tasks = Tasks::default();
    let lp = lock_path.handle();
    tasks.spawn_on("lock watcher", watcher.run(), lp);
    // On the main runtime: it talks to the engine, and only adds locks.
    tasks.spawn(
        "lock mounts",
        MountWatch {
            lock_root: lock_root.clone(),
            state_dir: state_dir.clone(),
            settings: settings_rx.clone(),
            apps: apps_rx.clone(),
            events: events_tx.clone(),
        }
        .run(),
    );
    let holders = holders::run(PathBuf::from("/proc"), holders_rx, events_tx);
    tasks.spawn_on("holder scan", holders, lp);
    tasks.spawn_on("core", core.run(events_rx, inboxes.core), lp);
    tasks.spawn("own locks", keeper.run(inboxes.keeper));
    tasks.spawn(
        "target",
        TargetTask {
            store: target_store.clone(),
            handle: handle.clone(),
            settings: settings_rx.clone(),
        }
        .run(inboxes.target),
    );
    tasks.spawn(
        "config.json",
        DeviceConfig {
            handle: handle.clone(),
            settings: settings_rx.clone(),
            device: device_tx,
        }
        .run(),
    );
    // Its bus connection is made inside, on the lock path's runtime.
    let system = System {
        snapshot: snapshot_rx.clone(),
        settings: settings_rx.clone(),
        target: target_rx.clone(),
        status: inhibitor_tx,
        requests: system_rx,
        handle: handle.clone(),
        beat: liveness.beat("system"),
    };
    tasks.spawn_on("system", system.run(), lp);
    // Kept for the daemon's life: the D-Bus side follows this channel.
    let _fleet_tx = fleet_tx.clone();
    fleet::start_hawkbit(
        &settings,
        &mut tasks,
        fleet::HawkbitParts {
            handle: handle.clone(),
            apps: apps_rx.clone(),
            device: device_rx.clone(),
            status: fleet_tx.clone(),
            store: target_store,
            inhibitor: settled_rx,
        },
    );
    let fleet = fleet::start_fleet(
        &settings,
        &mut tasks,
        fleet_tx,
        apps_rx.clone(),
        target_rx.clone(),
        snapshot_rx.clone(),
    );
    let power_task = tasks.spawn(
        "power",
        PowerTask {
            handle: handle.clone(),
            snapshot: snapshot_rx.clone(),
            settings: settings_rx.clone(),
            system: system_tx,
            fleet: fleet.clone(),
        }
        .run(inboxes.power),
    );
    let updates_task = tasks.spawn(
        "updates",
        Updates {
            handle: handle.clone(),
            snapshot: snapshot_rx.clone(),
            target: target_rx,
            settings: settings_rx.clone(),
            status: apps_tx,
            keys: keys_tx,
            device: device_rx,
            listeners,
            fleet,
        }
        .run(inboxes.updates),
    );
    if let Some(api) = api {
        tasks.spawn("http api", serve_api(api, settings_rx.clone()));
    }
    tasks.spawn(
        "d-bus",
        dbus::run(handle.clone(), lock_root.display().to_string(), ready_tx),
    );
    tasks.spawn("status line", status_lines(views));
    tasks.spawn(
        "maintenance window",
        window::publish(settings_rx.clone(), handle.clone()),
    );
    let mut watchdog_usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut watchdog_usec) {
        tasks.spawn(
            "watchdog",
            watchdog(liveness, Duration::from_micros(watchdog_usec)),
        );
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
                // Start-up parsed config, targets and the first scan.
                crate::memory::give_back();
            }
            _ = hup.recv() => {
                let mono = NotifyState::monotonic_usec_now().ok();
                let mut states = vec![NotifyState::Reloading];
                states.extend(mono);
                notify(&states);
                let current = settings_tx.borrow().clone();
                let path = config_path.clone();
                // Reading files: on the blocking pool, not the event loop.
                let loaded = tokio::task::spawn_blocking(move || reload::reload(&path, required, &current)).await;
                if let Ok(Some(new)) = loaded {
                    settings_tx.send_replace(Arc::new(new));
                }
                notify(&[NotifyState::Ready]);
            }
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            Some(done) = tasks.0.join_next() => {
                let name = match done {
                    Ok(name) => name,
                    Err(e) => {
                        tracing::error!(error = %e, "a task failed");
                        "unnamed"
                    }
                };
                tracing::error!(task = name, "the {name} task stopped unexpectedly; exiting so systemd restarts holdfast");
                break Err(DaemonError::TaskDied(name));
            }
        }
    };
    notify(&[NotifyState::Stopping]);
    tracing::info!("stopping");
    // Nothing may act on an app once its locks are being given back.
    updates_task.abort();
    power_task.abort();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        handle.request(|reply| Command::Shutdown { reply }),
    )
    .await;
    tasks.0.abort_all();
    result
}

/// The HTTP API, listening again where the settings say whenever
/// `api.socket` or `api.tcp` change (a reload).
async fn serve_api(api: api::Api, mut settings: watch::Receiver<Arc<Settings>>) {
    loop {
        let (socket, tcp) = {
            let s = settings.borrow_and_update();
            (s.api_socket.clone(), s.api_tcp)
        };
        let serving = api::serve(api.clone(), socket.clone(), tcp);
        tokio::pin!(serving);
        // Listening failed: wait for settings that may work.
        let mut failed = false;
        loop {
            tokio::select! {
                _ = &mut serving, if !failed => failed = true,
                r = settings.changed() => {
                    if r.is_err() { return }
                    let s = settings.borrow();
                    if s.api_socket != socket || s.api_tcp != tcp {
                        break;
                    }
                }
            }
        }
        tracing::info!("HTTP API settings changed; listening anew");
    }
}

/// Keeps systemd's STATUS= line in step with the published state.
async fn status_lines(mut v: Views) {
    let mut last = String::new();
    loop {
        // Copies first: the lock path's writers wait for a borrow.
        let snapshot = v.snapshot.borrow_and_update().clone();
        let inhibitor = v.inhibitor.borrow_and_update().clone();
        let line = full_summary(&snapshot, &inhibitor, &v.apps.borrow_and_update());
        if line != last {
            notify(&[NotifyState::Status(&line)]);
            last = line;
        }
        tokio::select! {
            r = v.snapshot.changed() => if r.is_err() { return },
            r = v.inhibitor.changed() => if r.is_err() { return },
            r = v.apps.changed() => if r.is_err() { return },
        }
    }
}

/// WATCHDOG=1 only when every critical loop answered: a hung loop stops
/// the pings and systemd restarts us.
async fn watchdog(liveness: Liveness, interval: Duration) {
    let period = interval / 2;
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        match liveness.check(period).await {
            Ok(()) => notify(&[NotifyState::Watchdog]),
            Err(stuck) => tracing::warn!(loops = ?stuck,
                "no watchdog ping: {} did not answer", stuck.join(", ")),
        }
    }
}
