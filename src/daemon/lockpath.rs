//! The lock path's own thread: the lock watcher, the holder scan feed, the
//! core and the system layer (logind's inhibitor) run on a current-thread
//! runtime of their own, so nothing the rest of the daemon does (parsing a
//! target, planning an app, serialising a status for D-Bus, writing a log
//! line) can delay a new lock on its way to logind. The tasks still belong
//! to the one supervised set (`JoinSet::spawn_on`); they talk to the rest
//! through channels, which work across runtimes.
//!
//! What is registered with a runtime's reactor (the inotify fd, the
//! system layer's bus socket, its timers) belongs to the runtime it was
//! made on: each is made from inside a task of this runtime, never handed
//! over from the main one.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// How long stopping waits for the lock path's blocking work (a holder
/// scan) before leaving it to the process's exit.
const STOP_WAIT: Duration = Duration::from_secs(1);

pub(super) struct LockPath {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl LockPath {
    /// Starts the thread; its runtime turns until [`LockPath`] is dropped.
    pub(super) fn start() -> std::io::Result<Self> {
        let rt = Builder::new_current_thread()
            .enable_all()
            .thread_name("holdfast-lockpath-blocking")
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("holdfast-lockpath".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Its tasks are cancelled; a holder scan under way may
                // still run: the process is ending, it need not finish.
                rt.shutdown_timeout(STOP_WAIT);
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `f` on the lock path's thread and answers its result: for
    /// what must be made there (the watcher's inotify instance).
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> T {
        match self.handle.spawn(f).await {
            Ok(v) => v,
            // A panic on the lock path is fatal, as anywhere else.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime stops only when `self` is dropped.
            Err(e) => unreachable!("the lock path's runtime stopped: {e}"),
        }
    }
}

impl Drop for LockPath {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
