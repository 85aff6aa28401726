//! Proof of progress for systemd's watchdog: every critical loop answers a
//! ping from inside its own `select!`, so `WATCHDOG=1` goes out only while
//! all of them still turn. A loop stuck anywhere stops answering; systemd
//! then restarts holdfast.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Held by one critical loop.
pub struct Beat {
    asked: watch::Receiver<u64>,
    answered: Arc<AtomicU64>,
    notify: Arc<Notify>,
}

impl Beat {
    /// Resolves when the watchdog asks; pending forever when it never will.
    pub async fn asked(&mut self) -> u64 {
        if self.asked.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.asked.borrow_and_update()
    }

    pub fn answer(&self, generation: u64) {
        self.answered.store(generation, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Held by the watchdog task.
pub struct Liveness {
    ask: watch::Sender<u64>,
    loops: Vec<(&'static str, Arc<AtomicU64>)>,
    notify: Arc<Notify>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    pub fn new() -> Self {
        Self {
            ask: watch::channel(0).0,
            loops: Vec::new(),
            notify: Arc::new(Notify::new()),
        }
    }

    pub fn beat(&mut self, name: &'static str) -> Beat {
        let answered = Arc::new(AtomicU64::new(0));
        self.loops.push((name, answered.clone()));
        Beat {
            asked: self.ask.subscribe(),
            answered,
            notify: self.notify.clone(),
        }
    }

    /// Asks every loop and waits up to `within` for all answers; on
    /// failure, the names of the loops that did not answer.
    pub async fn check(&self, within: Duration) -> Result<(), Vec<&'static str>> {
        let generation = *self.ask.borrow() + 1;
        self.ask.send_replace(generation);
        let all = || {
            self.loops
                .iter()
                .all(|(_, a)| a.load(Ordering::Acquire) >= generation)
        };
        let waited = tokio::time::timeout(within, async {
            loop {
                let notified = self.notify.notified();
                if all() {
                    return;
                }
                notified.await;
            }
        })
        .await;
        match waited {
            Ok(()) => Ok(()),
            Err(_) => Err(self
                .loops
                .iter()
                .filter(|(_, a)| a.load(Ordering::Acquire) < generation)
                .map(|(n, _)| *n)
                .collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_that_stops_answering_is_named() {
        let mut l = Liveness::new();
        let mut a = l.beat("a");
        let _b = l.beat("b");
        let answering = tokio::spawn(async move {
            loop {
                let g = a.asked().await;
                a.answer(g);
            }
        });
        let r = l.check(Duration::from_millis(200)).await;
        assert_eq!(r, Err(vec!["b"]));
        answering.abort();
    }

    #[tokio::test]
    async fn all_answering_passes() {
        let mut l = Liveness::new();
        for name in ["a", "b"] {
            let mut beat = l.beat(name);
            tokio::spawn(async move {
                loop {
                    let g = beat.asked().await;
                    beat.answer(g);
                }
            });
        }
        for _ in 0..3 {
            assert_eq!(l.check(Duration::from_secs(5)).await, Ok(()));
        }
    }
}
