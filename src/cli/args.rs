//! The `holdfast` command line as clap sees it: every subcommand, its
//! arguments and help texts. `pub` because the binary matches on them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::apply::Format;

/// Control and inspect holdfastd, the update-lock aware supervisor.
#[derive(Parser)]
#[command(name = "holdfast", version)]
pub struct Cli {
    /// Main config file (for `config show` and `lock`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// One-line summary, inhibitor and locks.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The lock table: service, since, owner, holders, stale.
    Locks {
        #[arg(long)]
        json: bool,
    },
    /// Run a command while holding <app>/<service>'s update lock
    /// (exit 75 if it is already held).
    Lock {
        /// `app/service`
        #[arg(allow_hyphen_values = true)]
        service: String,
        /// Lock root (default: lock_root from the config).
        #[arg(long, value_name = "DIR")]
        lock_root: Option<PathBuf>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Have holdfastd take every lock of an app (all-or-nothing).
    Take {
        // Names may start with '-' (AppName allows it): never an option.
        #[arg(allow_hyphen_values = true)]
        app: String,
        /// Services to lock (default: every service directory of the app).
        #[arg(allow_hyphen_values = true)]
        services: Vec<String>,
    },
    /// Have holdfastd release its own locks of an app.
    Release {
        #[arg(allow_hyphen_values = true)]
        app: String,
    },
    /// Reboot through logind once no app holds a lock (exit 75 if one does).
    Reboot {
        /// Go through app locks.
        #[arg(long, conflicts_with_all = ["when_unlocked", "cancel"])]
        force: bool,
        /// Do not refuse: reboot the moment no app holds a lock.
        #[arg(long)]
        when_unlocked: bool,
        /// With --when-unlocked: reboot at this time at the latest, forced
        /// (90s, 30m, 2h, 1d, "1h 30m", 2026-11-22T18:00:00Z or @epoch-seconds).
        #[arg(long, requires = "when_unlocked", value_name = "WHEN")]
        deadline: Option<String>,
        /// Drop a pending --when-unlocked reboot.
        #[arg(long, conflicts_with = "when_unlocked")]
        cancel: bool,
    },
    /// Check for updates now; --force applies the pending ones through app
    /// locks once (the lock override is not set).
    Update {
        #[arg(long)]
        force: bool,
    },
    /// Power off through logind once no app holds a lock (exit 75 if one does).
    Shutdown {
        /// Go through app locks.
        #[arg(long)]
        force: bool,
    },
    /// Validate a target and put it in force (exit 65 when invalid; the
    /// previous target then stays). FILE is a target state (JSON), or a
    /// compose file (named *.yml or *.yaml, or --format compose) for the
    /// app --app names: that app is set, the other apps stay as they are.
    Apply {
        /// Target state JSON (docs/target-state.md) or compose file
        /// (docs/compose.md); `-` reads stdin.
        file: PathBuf,
        /// What FILE holds [default: compose for *.yml and *.yaml, else json].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The app a compose file is for (required for one). With a JSON
        /// file: set only this app of it, the other apps in force stay.
        #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
        app: Option<String>,
        /// A compose file's release id [default: the first 12 hex digits
        /// of the SHA-256 of the file, followed by .env and the env_files
        /// it reads].
        #[arg(long, value_name = "ID")]
        release: Option<String>,
    },
    /// Print the target state (JSON) a compose file becomes, for app
    /// --app; no daemon needed. `holdfast apply` of the output (with
    /// --app NAME to keep the other apps) gives the same containers.
    Convert {
        /// The compose file (docs/compose.md); `-` reads stdin.
        file: PathBuf,
        /// The app the compose file is for.
        #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
        app: String,
        /// The release id [default: the first 12 hex digits of the SHA-256
        /// of the file, followed by .env and the env_files it reads].
        #[arg(long, value_name = "ID")]
        release: Option<String>,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// App volumes.
    Volumes {
        #[command(subcommand)]
        cmd: VolumesCmd,
    },
    /// HTTP API keys.
    ApiKey {
        #[command(subcommand)]
        cmd: ApiKeyCmd,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCmd {
    /// Replace an app's key (its containers labelled
    /// io.balena.features.supervisor-api are made again with the new one,
    /// under the app's locks), or without APP the device key (in
    /// <state_dir>/api-key). The old key stops working at once.
    Rotate {
        #[arg(allow_hyphen_values = true)]
        app: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum VolumesCmd {
    /// Remove the volumes of an app no longer in the target (its data is
    /// lost). Refused while the app holds a lock (exit 75) unless --force.
    Prune {
        #[arg(allow_hyphen_values = true)]
        app: String,
        /// Go through the app's locks.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Effective settings and where each came from; with holdfastd
    /// reachable, the ones it does not run with yet are marked.
    Show {
        #[arg(long)]
        json: bool,
    },
}
