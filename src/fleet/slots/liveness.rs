//! The etcd liveness side of the slot task: our liveness key kept alive
//! on a lease, and the semaphore's holders looked at for stale ones
//! (reported, and removed under `stale_after`).

use std::collections::HashSet;

use tokio::time::Instant;

use super::{Backend, Run};
use crate::fleet::{semaphore, LISTED};
use crate::text::shown;

impl Run {
    fn alive_key(&self) -> String {
        format!("{}{}", semaphore::alive_prefix(&self.group), self.id)
    }

    /// Our liveness key on a lease: granted anew when the lease is gone.
    pub(super) async fn keep_alive(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let key = self.alive_key();
        let ttl = self.settings.lease_ttl.as_secs().max(2);
        let Backend::Etcd(e) = &mut self.backend else {
            return;
        };
        if let Some(id) = self.lease {
            match e.lease_keepalive(id).await {
                Ok(left) if left > 0 => return,
                Ok(_) => {
                    tracing::warn!("our etcd lease expired; taking a new one");
                    self.lease = None;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "etcd lease keepalive failed: {err}");
                    return;
                }
            }
        }
        let value = serde_json::json!({"holdfast": env!("CARGO_PKG_VERSION")}).to_string();
        let r = async {
            let lease = e.lease_grant(ttl).await?;
            e.put(&key, value.as_bytes(), lease).await?;
            Ok::<_, String>(lease)
        }
        .await;
        match r {
            Ok(lease) => {
                tracing::info!(key = %key, lease, ttl_s = ttl, "liveness key written");
                self.lease = Some(lease);
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot write our etcd liveness key: {err}");
                self.failed(&err);
            }
        }
    }

    /// Reads the semaphore and the liveness keys: holders and stale
    /// holders for the status; stale ones removed under `stale_after`.
    pub(super) async fn look(&mut self) {
        let group = self.group.clone();
        let Backend::Etcd(e) = &mut self.backend else {
            return;
        };
        let r = async {
            let (sem, _) = e.semaphore(&group).await?;
            let alive = e.names_under(&semaphore::alive_prefix(&group)).await?;
            Ok::<_, String>((sem, alive))
        }
        .await;
        let (sem, alive) = match r {
            Ok(x) => x,
            Err(err) => {
                self.failed(&err);
                return;
            }
        };
        let stale: Vec<String> = semaphore::stale(&sem, &alive)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let now = Instant::now();
        let set: HashSet<&str> = stale.iter().map(String::as_str).collect();
        self.stale_since.retain(|h, _| set.contains(h.as_str()));
        // Each new one named in the log, up to a few; the rest counted.
        let mut new = 0usize;
        for h in &stale {
            self.stale_since.entry(h.clone()).or_insert_with(|| {
                new += 1;
                if new <= LISTED {
                    let h = shown(h);
                    tracing::warn!(holder = %h, group = %group,
                        "fleet slot holder {h} has no live liveness key: stale (crashed or powered off while holding a slot)");
                }
                now
            });
        }
        if new > LISTED {
            tracing::warn!(group = %group, "{} more fleet slot holders have no live liveness key", new - LISTED);
        }
        self.show(&sem);
        self.set(|l| l.set_stale(&stale));
        let Some(after) = self.settings.stale_after else {
            return;
        };
        let expired: Vec<String> = self
            .stale_since
            .iter()
            .filter(|(h, t)| now.duration_since(**t) >= after && **h != self.id)
            .map(|(h, _)| h.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let ids: Vec<&str> = expired.iter().map(String::as_str).collect();
        let Backend::Etcd(e) = &mut self.backend else {
            return;
        };
        match e.release(&group, &ids).await {
            Ok(_) => {
                let mut named: Vec<String> =
                    expired.iter().take(LISTED).map(|h| shown(h)).collect();
                if expired.len() > LISTED {
                    named.push(format!("and {} more", expired.len() - LISTED));
                }
                tracing::warn!(group = %group,
                    "removed stale fleet slot holders {} (stale for {} or more)",
                    named.join(", "), humantime::format_duration(after));
                for h in &expired {
                    self.stale_since.remove(h);
                }
                if let Ok((sem, _)) = e.semaphore(&group).await {
                    self.show(&sem);
                }
                let gone: HashSet<&str> = expired.iter().map(String::as_str).collect();
                let left: Vec<String> = stale
                    .iter()
                    .filter(|h| !gone.contains(h.as_str()))
                    .cloned()
                    .collect();
                self.set(|l| l.set_stale(&left));
            }
            Err(err) => self.failed(&err),
        }
    }
}
