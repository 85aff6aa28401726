//! Taking an app's locks: every listed service (or every service
//! directory), all-or-nothing, recorded before any file exists.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use super::files::{create_own_lock, remove_held};
use super::{Held, HeldApp, OwnLockError, OwnLocks, Purpose, RecordEntry};
use crate::fsutil::random_token;
use crate::locks::fs::{list_subdirs, open_or_create_subdir, open_root, FsError};
use crate::locks::state::LOCK_FILE_NAMES;
use crate::names::{AppName, ServiceId, ServiceName};

impl OwnLocks {
    /// Takes the lock of every listed service of `app` (every service
    /// directory of the app when `services` is empty); missing service
    /// directories are created. On the first contended lock every lock
    /// taken so far is released again. `through`: a lock an app holds is
    /// passed over instead (override, forced update). `announce` gets the
    /// tokens about to be used before any file is created.
    pub fn take(
        &mut self,
        app: &AppName,
        services: &[ServiceName],
        through: bool,
        purpose: Purpose,
        announce: impl FnOnce(BTreeSet<String>),
    ) -> Result<Vec<ServiceId>, OwnLockError> {
        self.settle(app)?;
        let root = open_root(&self.root_path)?;
        let plan = self.plan_app(root.as_fd(), app, services)?;
        let mut ids: Vec<ServiceId> = plan.iter().map(|(id, _)| id.clone()).collect();
        ids.dedup();
        self.take_planned(
            root.as_fd(),
            vec![(app.clone(), plan)],
            through,
            purpose,
            announce,
        )?;
        Ok(ids)
    }

    /// Takes the locks of every service directory of each app at once, with
    /// one durable record write (a reboot may lock thousands of apps).
    /// Apps holdfast already holds are left as they are (an update under way
    /// refuses the whole take unless `through`); apps with no service
    /// directory are skipped. All-or-nothing across the apps.
    pub fn take_many(
        &mut self,
        apps: &[AppName],
        through: bool,
        purpose: Purpose,
        announce: impl FnOnce(BTreeSet<String>),
    ) -> Result<Vec<AppName>, OwnLockError> {
        // An update under way holds its app's locks and is changing its
        // containers: a reboot now would cut it in half (unless forced).
        let updating = self
            .held
            .iter()
            .find(|(_, h)| h.purpose == Purpose::Update && !h.releasing);
        if let (Some((app, _)), false) = (updating, through) {
            return Err(OwnLockError::Updating(app.clone()));
        }
        let root = open_root(&self.root_path)?;
        let mut plans = Vec::new();
        for app in apps.iter().filter(|a| !self.held.contains_key(*a)) {
            match self.plan_app(root.as_fd(), app, &[]) {
                Ok(plan) => plans.push((app.clone(), plan)),
                Err(OwnLockError::NoServices(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let taken = plans.iter().map(|(a, _)| a.clone()).collect();
        self.take_planned(root.as_fd(), plans, through, purpose, announce)?;
        Ok(taken)
    }

    /// A stranded release of `app` is retried before anything else.
    fn settle(&mut self, app: &AppName) -> Result<(), OwnLockError> {
        match self.held.get(app) {
            None => Ok(()),
            Some(h) if h.releasing => self.release(app).map(drop),
            Some(h) => Err(OwnLockError::AlreadyHeld {
                app: app.clone(),
                purpose: h.purpose,
            }),
        }
    }

    fn plan_app(
        &self,
        root: BorrowedFd<'_>,
        app: &AppName,
        services: &[ServiceName],
    ) -> Result<Vec<(ServiceId, String)>, OwnLockError> {
        let app_path = self.root_path.join(app.as_str());
        let services = if services.is_empty() {
            let app_dir = match crate::locks::fs::open_subdir(root, app.as_str(), &app_path) {
                Ok(d) => d,
                Err(e) if e.vanished() => return Err(OwnLockError::NoServices(app.clone())),
                Err(e) => return Err(e.into()),
            };
            let (names, _) = list_subdirs(app_dir.as_fd(), &app_path)?;
            names
                .into_iter()
                .filter_map(|n| ServiceName::new(n).ok())
                .collect()
        } else {
            services.to_vec()
        };
        if services.is_empty() {
            return Err(OwnLockError::NoServices(app.clone()));
        }
        Ok(services
            .into_iter()
            .flat_map(|s| {
                let id = ServiceId::new(app.clone(), s);
                LOCK_FILE_NAMES.map(|f| (id.clone(), f.to_owned()))
            })
            .collect())
    }

    fn take_planned(
        &mut self,
        root: BorrowedFd<'_>,
        plans: Vec<(AppName, Vec<(ServiceId, String)>)>,
        through: bool,
        purpose: Purpose,
        announce: impl FnOnce(BTreeSet<String>),
    ) -> Result<(), OwnLockError> {
        if plans.is_empty() {
            return Ok(());
        }
        let token = random_token().map_err(|source| OwnLockError::Record {
            path: self.record_path.clone(),
            source,
        })?;
        let intents: Vec<RecordEntry> = plans
            .iter()
            .flat_map(|(_, p)| p.iter())
            .map(|(id, file)| RecordEntry {
                service: id.clone(),
                file: file.clone(),
                token: token.clone(),
            })
            .collect();
        // Durable intent first: a crash between here and the creates leaves
        // a record whose files, if any, carry our token.
        self.write_record(&intents)?;
        let mut tokens = self.tokens();
        tokens.insert(token.clone());
        announce(tokens);

        let mut taken: Vec<(AppName, Vec<Held>)> = Vec::new();
        let mut failure = None;
        'apps: for (app, plan) in plans {
            let app_path = self.root_path.join(app.as_str());
            let app_dir = match open_or_create_subdir(root, app.as_str(), &app_path) {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(OwnLockError::Fs(e));
                    break;
                }
            };
            let mut files = Vec::new();
            let mut dirs: BTreeMap<ServiceName, OwnedFd> = BTreeMap::new();
            for entry in intents.iter().filter(|e| e.service.app == app) {
                let service = &entry.service.service;
                let shown = app_path.join(service.as_str());
                if !dirs.contains_key(service) {
                    match open_or_create_subdir(app_dir.as_fd(), service.as_str(), &shown) {
                        Ok(d) => dirs.insert(service.clone(), d),
                        Err(e) => {
                            failure = Some(OwnLockError::Fs(e));
                            taken.push((app, files));
                            break 'apps;
                        }
                    };
                }
                let dir = dirs[service].as_fd();
                match create_own_lock(dir, &entry.file, &token, &shown) {
                    Ok(held) => files.push(Held {
                        entry: entry.clone(),
                        dev: held.0,
                        ino: held.1,
                        flock: Some(held.2),
                    }),
                    Err(Errno::EEXIST) if through => {}
                    Err(Errno::EEXIST | Errno::EWOULDBLOCK) => {
                        failure = Some(OwnLockError::Contended {
                            id: entry.service.clone(),
                            file: entry.file.clone(),
                        });
                        taken.push((app, files));
                        break 'apps;
                    }
                    Err(e) => {
                        failure = Some(OwnLockError::Fs(FsError::Io {
                            path: shown.join(&entry.file),
                            source: e,
                        }));
                        taken.push((app, files));
                        break 'apps;
                    }
                }
            }
            drop(plan);
            taken.push((app, files));
        }
        if let Some(err) = failure {
            // Give back what we took; what cannot be removed stays held.
            for (app, files) in taken {
                let mut kept: Vec<Held> = Vec::new();
                for mut h in files {
                    match remove_held(root, &self.root_path, &mut h) {
                        Ok(true) => self.gone.push((h.entry.service.clone(), (h.dev, h.ino))),
                        Ok(false) => {}
                        Err(_) => kept.push(h),
                    }
                }
                if !kept.is_empty() {
                    self.held.insert(
                        app,
                        HeldApp {
                            purpose,
                            files: kept,
                            releasing: true,
                        },
                    );
                }
            }
            // The take's own error is the one to answer; a record that still
            // lists the intents only costs a look at the next start.
            if let Err(e) = self.write_record(&[]) {
                tracing::error!(error = %e, "cannot rewrite the own-lock record after a failed take");
            }
            return Err(err);
        }
        for (app, files) in taken {
            self.held.insert(
                app,
                HeldApp {
                    purpose,
                    files,
                    releasing: false,
                },
            );
        }
        // The record now lists exactly what we hold.
        self.write_record(&[])
    }
}
