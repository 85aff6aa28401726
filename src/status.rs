//! The one-line human summary used for systemd's STATUS= and `holdfast status`.

use crate::locks::LockTable;
use crate::model::{InhibitorStatus, Snapshot, UpdateStatus};

const MAX_NAMES: usize = 5;

pub fn summary(table: &LockTable, inhibitor: &InhibitorStatus) -> String {
    let ids = table.locked_ids();
    let mut locks = match ids.len() {
        0 => "no locks".to_owned(),
        n => {
            let mut names: Vec<String> =
                ids.iter().take(MAX_NAMES).map(|i| i.to_string()).collect();
            if n > MAX_NAMES {
                names.push(format!("+{} more", n - MAX_NAMES));
            }
            format!(
                "{n} lock{}: {}",
                if n == 1 { "" } else { "s" },
                names.join(", ")
            )
        }
    };
    let unknown = table.unknown().count();
    if unknown > 0 {
        locks.push_str(&format!(" ({unknown} unreadable)"));
    }
    if table.blind().is_some() {
        locks.push_str("; lock root unreadable");
    }
    let inh = match (&inhibitor.error, inhibitor.held) {
        (_, true) => "inhibitor held".to_owned(),
        (Some(e), false) => format!("inhibitor unavailable: {}", crate::text::shown(e)),
        (None, false) => "no inhibitor".to_owned(),
    };
    format!("{locks}; {inh}")
}

/// The summary plus the update state of the apps, when there are any.
pub fn full_summary(
    snapshot: &Snapshot,
    inhibitor: &InhibitorStatus,
    updates: &UpdateStatus,
) -> String {
    let mut line = summary(&snapshot.table, inhibitor);
    if snapshot.lock_override.enabled {
        line.push_str(&format!(
            "; lock override {}",
            snapshot.lock_override.describe()
        ));
    }
    if snapshot.powering {
        line.push_str("; powering off");
    } else if snapshot.pending_reboot.is_some() {
        line.push_str("; reboot pending");
    }
    if let Some(closed) = &snapshot.window_closed {
        line.push_str(&format!("; maintenance window {closed}"));
    }
    if let Some(apps) = updates.summary() {
        line.push_str("; ");
        line.push_str(&apps);
    }
    if let Some(why) = &updates.target_unreadable {
        line.push_str(&format!("; target unreadable: {why}"));
    }
    if updates.engine.starts_with("unavailable") {
        line.push_str("; engine unavailable");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locks::state::{LockEntry, LockEvent};
    use crate::names::ServiceId;

    #[test]
    fn reads_like_the_docs() {
        let mut t = LockTable::default();
        assert_eq!(
            summary(&t, &InhibitorStatus::default()),
            "no locks; no inhibitor"
        );
        for (i, s) in ["app1/main", "app1/worker"].iter().enumerate() {
            t.apply(LockEvent::ServiceObserved {
                id: ServiceId::parse(s).unwrap(),
                entries: vec![LockEntry::test_file(i as u64, None)],
            });
        }
        let held = InhibitorStatus {
            held: true,
            ..Default::default()
        };
        assert_eq!(
            summary(&t, &held),
            "2 locks: app1/main, app1/worker; inhibitor held"
        );
        let failed = InhibitorStatus {
            error: Some("no logind".into()),
            ..Default::default()
        };
        assert_eq!(
            summary(&t, &failed),
            "2 locks: app1/main, app1/worker; inhibitor unavailable: no logind"
        );
    }
}
