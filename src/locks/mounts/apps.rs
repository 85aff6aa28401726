//! Which apps holdfast takes its locks in other directories for, and
//! which it gives them back for: pure, from the apps' update states.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::old::OldLocks;
use super::Finding;
use crate::gate::Blocker;
use crate::model::{AppState, AppStatus, UpdateStatus};
use crate::names::{AppName, ServiceId};

pub(super) fn by_app(
    findings: &BTreeMap<ServiceId, Finding>,
) -> BTreeMap<AppName, Vec<(&ServiceId, &Finding)>> {
    let mut out: BTreeMap<AppName, Vec<(&ServiceId, &Finding)>> = BTreeMap::new();
    for (id, f) in findings {
        out.entry(id.app.clone()).or_default().push((id, f));
    }
    out
}

/// Every directory those containers see, when holdfast can lock them all.
pub(super) fn takeable(services: &[(&ServiceId, &Finding)]) -> Option<BTreeSet<PathBuf>> {
    let mut all = BTreeSet::new();
    for (_, f) in services {
        all.extend(f.dirs.clone()?);
    }
    Some(all)
}

/// The app waits, and on nothing but these services' unknown locks.
pub(super) fn waits_only_on(app: Option<&AppStatus>, services: &[(&ServiceId, &Finding)]) -> bool {
    let Some(a) = app else { return false };
    let unknown: BTreeSet<String> = services
        .iter()
        .map(|(id, _)| Blocker::Unknown((*id).clone()).to_string())
        .collect();
    a.state == AppState::Waiting
        && !a.blocked_by.is_empty()
        && a.blocked_by.iter().all(|b| unknown.contains(b))
}

/// The app is being made again under holdfast's locks (or still waits
/// only on these): keep them.
pub(super) fn busy(app: Option<&AppStatus>, services: &[(&ServiceId, &Finding)]) -> bool {
    matches!(
        app.map(|a| a.state),
        Some(AppState::Applying | AppState::Downloading)
    ) || waits_only_on(app, services)
}

/// The states of the apps with misplaced services or held locks: a change
/// of one of them is a reason to look again.
pub(super) fn relevant(
    status: &UpdateStatus,
    findings: &BTreeMap<ServiceId, Finding>,
    old: &OldLocks,
) -> BTreeMap<String, (AppState, Vec<String>)> {
    let apps: BTreeSet<String> = findings
        .keys()
        .map(|id| id.app.to_string())
        .chain(old.held_apps().into_iter().map(|a| a.to_string()))
        .collect();
    apps.into_iter()
        .filter_map(|a| {
            let s = status.apps.get(&a)?;
            Some((a, (s.state, s.blocked_by.clone())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(dirs: Option<&[&str]>) -> Finding {
        Finding {
            reason: "r".into(),
            dirs: dirs.map(|d| d.iter().map(PathBuf::from).collect()),
        }
    }

    fn status(state: AppState, blocked_by: &[&str]) -> AppStatus {
        let mut s = AppStatus::new(state, "r2");
        s.blocked_by = blocked_by.iter().map(|b| b.to_string()).collect();
        s
    }

    #[test]
    fn taken_only_for_an_app_that_waits_on_nothing_else() {
        let id = ServiceId::parse("app1/main").unwrap();
        let f = finding(Some(&["/L1/app1/main"]));
        let services = [(&id, &f)];
        let w = |state, b: &[&str]| waits_only_on(Some(&status(state, b)), &services);
        assert!(w(AppState::Waiting, &["unknown:app1/main"]));
        assert!(!w(
            AppState::Waiting,
            &["unknown:app1/main", "lock:app1/other"]
        ));
        assert!(!w(
            AppState::Waiting,
            &["unknown:app1/main", "window:closed until Mon"]
        ));
        assert!(!w(AppState::Waiting, &[]));
        assert!(!w(AppState::Applied, &[]));
        assert!(!w(AppState::Failed, &["unknown:app1/main"]));
        assert!(
            !waits_only_on(None, &services),
            "no task: nothing to make again"
        );
        // Kept while it is being made again; given back otherwise.
        assert!(busy(Some(&status(AppState::Applying, &[])), &services));
        assert!(busy(Some(&status(AppState::Downloading, &[])), &services));
        assert!(!busy(Some(&status(AppState::Applied, &[])), &services));
        assert!(!busy(Some(&status(AppState::Failed, &[])), &services));
        assert!(!busy(
            Some(&status(AppState::Waiting, &["lock:app1/x"])),
            &services
        ));
    }

    #[test]
    fn every_directory_or_none() {
        let (a, b) = (
            ServiceId::parse("app1/a").unwrap(),
            ServiceId::parse("app1/b").unwrap(),
        );
        let (fa, fb) = (
            finding(Some(&["/L1/app1/a"])),
            finding(Some(&["/L1/app1/b"])),
        );
        let all = takeable(&[(&a, &fa), (&b, &fb)]).unwrap();
        assert_eq!(all.len(), 2);
        let none = finding(None);
        assert_eq!(takeable(&[(&a, &fa), (&b, &none)]), None);
    }
}
