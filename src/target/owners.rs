//! Which apps a fleet server deployed. With `[fleet.hawkbit] local_target
//! = "refuse"` such an app is the server's: a local target (file, D-Bus,
//! CLI, HTTP) that changes or removes it is refused, and the server's next
//! deployment replaces exactly the apps it owns. With `"allow"` a local
//! change wins and the app is the device's until the server deploys it
//! again. Kept in `<state_dir>/owners.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::LocalTarget;
use crate::fsutil::{atomic_write, read_regular};
use crate::names::AppName;
use crate::target::Target;

pub const OWNERS_FILE: &str = "owners.json";

#[derive(Debug)]
pub struct Owners {
    file: PathBuf,
    apps: BTreeMap<AppName, String>,
    /// The file could not be read: which apps are a server's is unknown,
    /// so under `refuse` no local change goes through until it can be.
    unreadable: Option<String>,
}

impl Owners {
    pub fn load(state_dir: &Path) -> Owners {
        let file = state_dir.join(OWNERS_FILE);
        let (apps, unreadable) = match read_regular(&file, 1 << 20) {
            Ok(None) => (BTreeMap::new(), None),
            Ok(Some(b)) => match serde_json::from_slice(&b) {
                Ok(apps) => (apps, None),
                Err(e) => (BTreeMap::new(), Some(format!("{}: {e}", file.display()))),
            },
            Err(e) => (
                BTreeMap::new(),
                Some(format!("{}: {}", file.display(), e.reason())),
            ),
        };
        if let Some(why) = &unreadable {
            tracing::error!(error = %why, "cannot read which apps hawkBit deployed: {why}");
        }
        Owners {
            file,
            apps,
            unreadable,
        }
    }

    pub fn owner(&self, app: &AppName) -> Option<&str> {
        self.apps.get(app).map(String::as_str)
    }

    pub fn owned_by<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a AppName> + 'a {
        self.apps
            .iter()
            .filter(move |(_, o)| o.as_str() == owner)
            .map(|(a, _)| a)
    }

    /// Whether a local target `new` may replace `current`. `Ok`: the apps
    /// whose ownership a local change ends (under `allow`).
    pub fn check_local(
        &self,
        policy: Option<LocalTarget>,
        current: Option<&Target>,
        new: &Target,
    ) -> Result<Vec<AppName>, String> {
        let Some(policy) = policy else {
            return Ok(Vec::new());
        };
        let changed: Vec<&AppName> = match current {
            None => new.apps.keys().collect(),
            Some(cur) => cur
                .apps
                .keys()
                .chain(new.apps.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|a| cur.apps.get(*a) != new.apps.get(*a))
                .collect(),
        };
        if policy == LocalTarget::Refuse {
            if let (Some(why), Some(first)) = (&self.unreadable, changed.first()) {
                return Err(format!(
                    "app {first}: cannot tell whether hawkBit deployed it ({why}); \
                     no local change goes through until that file is readable"
                ));
            }
        }
        let owned: Vec<AppName> = changed
            .into_iter()
            .filter(|a| self.apps.contains_key(*a))
            .cloned()
            .collect();
        match (policy, owned.first()) {
            (LocalTarget::Refuse, Some(a)) => Err(format!(
                "app {a} was deployed by {} and only it changes the app \
                 ([fleet.hawkbit] local_target = \"refuse\"; \"allow\" lets a local target win)",
                self.apps[a]
            )),
            _ => Ok(owned),
        }
    }

    /// Forgets the apps a local change took over.
    pub fn release(&mut self, apps: &[AppName]) -> std::io::Result<()> {
        if apps.is_empty() {
            return Ok(());
        }
        for a in apps {
            self.apps.remove(a);
        }
        self.save()
    }

    /// `owner` now owns exactly `apps`.
    pub fn set(&mut self, owner: &str, apps: impl Iterator<Item = AppName>) -> std::io::Result<()> {
        self.apps.retain(|_, o| o != owner);
        for a in apps {
            self.apps.insert(a, owner.to_owned());
        }
        self.unreadable = None;
        self.save()
    }

    fn save(&self) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(&self.apps).expect("owners serialize");
        atomic_write(&self.file, &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(apps: &[(&str, &str)]) -> Target {
        let apps: Vec<String> = apps
            .iter()
            .map(|(a, r)| {
                format!(r#""{a}": {{"release": "{r}", "services": {{"s": {{"image": "i:{r}"}}}}}}"#)
            })
            .collect();
        crate::target::parse(
            &format!(r#"{{"version": 1, "apps": {{{}}}}}"#, apps.join(",")),
            "t",
        )
        .unwrap()
    }

    fn app(a: &str) -> AppName {
        AppName::new(a).unwrap()
    }

    #[test]
    fn refuse_keeps_a_servers_apps_and_allow_hands_them_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Owners::load(dir.path());
        o.set("hawkBit", [app("fleet")].into_iter()).unwrap();
        let cur = target(&[("fleet", "1"), ("local", "1")]);
        let refuse = Some(LocalTarget::Refuse);
        // The device's own app changes freely; the server's is unchanged.
        let ok = target(&[("fleet", "1"), ("local", "2")]);
        assert_eq!(o.check_local(refuse, Some(&cur), &ok), Ok(vec![]));
        for bad in [
            target(&[("fleet", "2"), ("local", "1")]),
            target(&[("local", "1")]),
        ] {
            let e = o.check_local(refuse, Some(&cur), &bad).unwrap_err();
            assert!(e.contains("app fleet was deployed by hawkBit"), "{e}");
        }
        let change = target(&[("fleet", "2")]);
        assert_eq!(
            o.check_local(Some(LocalTarget::Allow), Some(&cur), &change),
            Ok(vec![app("fleet")])
        );
        // No hawkBit configured: nothing is anyone's.
        assert_eq!(o.check_local(None, Some(&cur), &change), Ok(vec![]));
        o.release(&[app("fleet")]).unwrap();
        assert_eq!(Owners::load(dir.path()).owner(&app("fleet")), None);
    }

    #[test]
    fn an_unreadable_file_refuses_every_local_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OWNERS_FILE), "{ not json").unwrap();
        let o = Owners::load(dir.path());
        let e = o
            .check_local(Some(LocalTarget::Refuse), None, &target(&[("a", "1")]))
            .unwrap_err();
        assert!(e.contains("cannot tell whether hawkBit deployed it"), "{e}");
        // Under allow a local change wins anyway.
        assert!(o
            .check_local(Some(LocalTarget::Allow), None, &target(&[("a", "1")]))
            .is_ok());
    }
}
