//! holdfast: command-line client of holdfastd.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use holdfast::cli::apply::{self, ApplyArgs};
use holdfast::cli::args::{ApiKeyCmd, Cli, Cmd, ConfigCmd, VolumesCmd};
use holdfast::cli::{self, deadline, lock, render, BusFailure};
use holdfast::config;
use holdfast::fleet::FleetStatus;
use holdfast::model::now_usec;
use holdfast::model::AppStatus;
use holdfast::names::{AppName, ServiceId};
use nix::sys::signal::{signal, SigHandler, Signal};

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("holdfast: {msg}");
    ExitCode::FAILURE
}

fn bus_error(f: BusFailure) -> ExitCode {
    let e = match f {
        BusFailure::Unreachable(reason) => {
            for line in cli::unreachable_message(&reason).lines() {
                eprintln!("holdfast: {line}");
            }
            return ExitCode::from(cli::EXIT_UNAVAILABLE);
        }
        BusFailure::Call(e) => e,
    };
    match &e {
        zbus::Error::MethodError(name, msg, _) => {
            let text = msg.clone().unwrap_or_default();
            if name.as_str() == "org.holdfast.Supervisor1.Error.Locked" {
                eprintln!("holdfast: {text}");
                return ExitCode::from(lock::EXIT_LOCKED);
            }
            fail(format!("{text} ({name})"))
        }
        _ => fail(e),
    }
}

/// The shutdown may stop holdfastd before it answers: that is success.
fn power_answer(r: zbus::Result<()>, doing: &str) -> zbus::Result<()> {
    match r {
        Ok(()) => {}
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.NoReply" => {}
        Err(e) => return Err(e),
    }
    println!("{doing}");
    Ok(())
}

/// The settings holdfastd runs with (ConfigInForce), or why they are unknown.
async fn settings_in_force() -> Result<serde_json::Value, String> {
    let p = match cli::connect().await {
        Ok(p) => p,
        Err(BusFailure::Unreachable(why)) => {
            return Err(format!("holdfastd is not reachable: {why}"))
        }
        Err(BusFailure::Call(e)) => return Err(e.to_string()),
    };
    let text = p
        .config_in_force()
        .await
        .map_err(|e| format!("cannot read holdfastd's ConfigInForce: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("holdfastd's ConfigInForce is not JSON: {e}"))
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Why each lock of kind `unknown` binds (a directory that cannot be read,
/// a container that mounts another directory, and what to do).
async fn print_unreadable(p: &holdfast::dbus::Supervisor1Proxy<'_>) -> Result<(), BusFailure> {
    let why: BTreeMap<String, String> = p.unreadable_locks().await?.into_iter().collect();
    for (what, reason) in why {
        println!("{what}: {reason}");
    }
    Ok(())
}

async fn run(args: Cli) -> Result<ExitCode, BusFailure> {
    match args.cmd {
        Cmd::Status { json } => {
            let p = cli::connect().await?;
            let (status, held, why, locks, root, version) = (
                p.status().await?,
                p.inhibitor_held().await?,
                p.inhibitor_why().await?,
                p.locks().await?,
                p.lock_root().await?,
                p.version().await?,
            );
            let apps: BTreeMap<String, AppStatus> =
                serde_json::from_str(&p.apps().await?).unwrap_or_default();
            let engine = p.engine().await?;
            let fleet: Option<FleetStatus> = serde_json::from_str(&p.fleet().await?).ok();
            let orphaned: BTreeMap<String, Vec<String>> =
                p.orphaned_volumes().await?.into_iter().collect();
            let (ovr, ovr_source, pending, window) = (
                p.lock_override().await?,
                p.lock_override_source().await?,
                p.pending_reboot().await?,
                p.maintenance_window().await?,
            );
            if json {
                print_json(&serde_json::json!({
                    "version": version, "status": status, "lock_root": root,
                    "inhibitor": {"held": held, "why": why}, "locks": locks,
                    "engine": engine, "apps": apps, "orphaned_volumes": orphaned,
                    "lock_override": {"enabled": ovr, "source": ovr_source},
                    "pending_reboot": pending, "fleet": fleet,
                    "maintenance_window": window,
                }));
            } else {
                println!("holdfastd {version}: {status}");
                println!("lock root: {root}");
                println!("engine: {engine}");
                let source = if ovr_source.is_empty() {
                    "not set".to_owned()
                } else {
                    ovr_source
                };
                println!(
                    "lock override: {} ({source})",
                    if ovr { "on" } else { "off" }
                );
                if !pending.is_empty() {
                    println!("pending: {pending}");
                }
                if !window.is_empty() {
                    println!("maintenance window: {window}");
                }
                if held {
                    println!("inhibitor: held ({why})");
                }
                for line in fleet.iter().flat_map(FleetStatus::lines) {
                    println!("{line}");
                }
                for (name, app) in &apps {
                    println!("app {}", app.line(name));
                }
                for (app, volumes) in &orphaned {
                    println!(
                        "orphaned volumes of {app}: {} (holdfast volumes prune {app})",
                        volumes.join(", ")
                    );
                }
                print!("{}", render::lock_table(&locks, true));
                print_unreadable(&p).await?;
            }
        }
        Cmd::Locks { json } => {
            let p = cli::connect().await?;
            // Non-root callers may not call methods: fall back to the property.
            let (locks, fresh) = match p.list_locks().await {
                Ok(l) => (l, true),
                Err(zbus::Error::MethodError(n, _, _)) if n.as_str().ends_with("AccessDenied") => {
                    (p.locks().await?, true)
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                print_json(&locks);
            } else {
                print!("{}", render::lock_table(&locks, fresh));
                print_unreadable(&p).await?;
            }
        }
        Cmd::Take { app, services } => {
            let p = cli::connect().await?;
            let refs: Vec<&str> = services.iter().map(String::as_str).collect();
            let taken = p.take_locks(&app, &refs).await?;
            println!("locked: {}", taken.join(", "));
        }
        Cmd::Volumes {
            cmd: VolumesCmd::Prune { app, force },
        } => {
            let removed = cli::connect().await?.prune_volumes(&app, force).await?;
            if removed.is_empty() {
                println!("app {app} has no volumes");
            } else {
                println!("removed the volumes of {app}: {}", removed.join(", "));
            }
        }
        Cmd::ApiKey {
            cmd: ApiKeyCmd::Rotate { app },
        } => {
            cli::connect()
                .await?
                .rotate_api_key(app.as_deref().unwrap_or(""))
                .await?;
            match app {
                Some(app) => println!(
                    "new API key for app {app}; its containers labelled for the API are made again with it (under its locks)"
                ),
                None => println!("new device API key"),
            }
        }
        Cmd::Release { app } => {
            let n = cli::connect().await?.release_locks(&app).await?;
            println!("released {n} lock files of {app}");
        }
        Cmd::Apply {
            file,
            format,
            app,
            release,
        } => {
            let args = ApplyArgs {
                file,
                format,
                app,
                release,
            };
            return apply::apply(args).await;
        }
        Cmd::Convert { file, app, release } => {
            return Ok(apply::convert(&file, &app, release.as_deref()));
        }
        Cmd::Reboot { cancel: true, .. } => {
            let had = cli::connect().await?.cancel_reboot().await?;
            println!(
                "{}",
                if had {
                    "pending reboot cancelled"
                } else {
                    "no reboot was pending"
                }
            );
        }
        Cmd::Reboot {
            when_unlocked: true,
            deadline,
            ..
        } => {
            let not_after = match deadline.as_deref().map(|d| deadline::parse(d, now_usec())) {
                None => 0,
                Some(Ok(t)) => t,
                Some(Err(e)) => return Ok(fail(e)),
            };
            println!("{}", cli::connect().await?.request_reboot(not_after).await?);
        }
        Cmd::Reboot { force, .. } => {
            power_answer(cli::connect().await?.reboot(force).await, "rebooting")?;
        }
        Cmd::Update { force } => {
            cli::connect().await?.update(force).await?;
            println!(
                "{}",
                if force {
                    "forced update triggered"
                } else {
                    "update check triggered"
                }
            );
        }
        Cmd::Shutdown { force } => {
            power_answer(cli::connect().await?.shutdown(force).await, "shutting down")?;
        }
        Cmd::Lock {
            service,
            lock_root,
            command,
        } => {
            let id = match ServiceId::parse(&service) {
                Ok(id) => id,
                Err(e) => return Ok(fail(e)),
            };
            let root = match lock_root {
                Some(r) => r,
                None => {
                    let (path, required) = config::main_path(args.config);
                    match config::load(&path, required) {
                        Ok(s) => s.settings.lock_root,
                        Err(e) => return Ok(fail(e)),
                    }
                }
            };
            return Ok(match lock::run(&root, &id, &command).await {
                Ok(code) => code,
                Err(e @ lock::LockCmdError::Held(..)) => {
                    eprintln!("holdfast: {e}");
                    ExitCode::from(lock::EXIT_LOCKED)
                }
                Err(e) => fail(e),
            });
        }
        Cmd::Config {
            cmd: ConfigCmd::Show { json },
        } => {
            let (path, required) = config::main_path(args.config);
            let sourced = match config::load(&path, required) {
                Ok(s) => s,
                Err(e) => return Ok(fail(e)),
            };
            let pending = settings_in_force().await.map(|f| {
                let p = render::pending_keys(&sourced.settings.to_json(), &f);
                (f, p)
            });
            if json {
                let mut v = sourced.to_json();
                match pending {
                    Ok((f, p)) => {
                        v["in_force"] = f;
                        v["pending"] = serde_json::json!(p);
                    }
                    Err(why) => {
                        v["in_force"] = serde_json::Value::Null;
                        v["pending"] = serde_json::Value::Null;
                        v["in_force_error"] = serde_json::json!(why);
                    }
                }
                print_json(&v);
            } else {
                match pending {
                    Ok((_, p)) => print!("{}", render::mark_pending(&sourced.render(), &p)),
                    Err(why) => {
                        print!("{}", sourced.render());
                        println!("# not compared with the settings in force: {why}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // As Unix tools do: a reader that goes away (`holdfast status | head -1`)
    // ends us quietly by SIGPIPE instead of a panic in println!. zbus sends
    // with MSG_NOSIGNAL, so a dropped bus is still an error, not a signal.
    // SAFETY: no other thread runs yet, and SIG_DFL installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let args = Cli::parse();
    if let Cmd::Take { app, .. }
    | Cmd::Release { app }
    | Cmd::Volumes {
        cmd: VolumesCmd::Prune { app, .. },
    }
    | Cmd::ApiKey {
        cmd: ApiKeyCmd::Rotate { app: Some(app) },
    } = &args.cmd
    {
        if let Err(e) = AppName::new(app.as_str()) {
            return fail(e);
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => bus_error(e),
    }
}
