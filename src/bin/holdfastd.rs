//! holdfastd: the holdfast daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Device supervisor that honours application update locks.
#[derive(Parser)]
#[command(name = "holdfastd", version)]
struct Args {
    /// Main config file (default /etc/holdfast/holdfast.toml, or $HOLDFAST_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    holdfast::logging::init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("holdfastd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(holdfast::daemon::run(holdfast::daemon::Options {
        config: args.config,
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("holdfastd: {e}");
            ExitCode::FAILURE
        }
    }
}
