//! The holdfast CLI as a user runs it: closed pipes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use common::Env;
use nix::sys::signal::Signal;

fn holdfast(bus: &str, config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn closed_stdout_ends_quietly() {
    let mut env = Env::new();
    env.service_dir("app1/main");
    env.start_daemon().await;
    for args in [&["status"][..], &["locks"], &["status", "--json"]] {
        // The reader is gone before the first write: every write is EPIPE.
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = holdfast(&env.bus, &env.config_path(), args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(Signal::SIGPIPE as i32),
            "{args:?}: {:?}",
            out.status
        );
    }
}
