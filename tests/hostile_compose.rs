//! Hostile compose files through the real CLI (`holdfast convert`, and
//! `holdfast apply` against a daemon): each is refused with exit code 65
//! and a message of bounded length with nothing raw in it, under a memory
//! cap (1 GiB of address space) and within a generous time bound (only so
//! that a hang fails the test instead of the run). Before these bounds,
//! the same files overflowed the stack, asked for tens of gigabytes, ran
//! for minutes, or were taken with a limit silently dropped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Env;

/// Long enough for a debug build on a loaded machine to refuse any of
/// these in linear time; the quadratic and stack-hungry code took longer.
const BOUND: Duration = Duration::from_secs(60);
/// Address space a run may have, in KiB (`ulimit -v`).
const MEMORY_KIB: u64 = 1 << 20;

/// A directory holding `c.yml` (and `files`), removed at the end.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(yaml: &str, files: &[(&str, &str)]) -> Case {
        let dir = tempfile::Builder::new()
            .prefix("hf-hostile-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("c.yml"), yaml).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Case { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs the CLI in `dir` under the memory cap, killed past [`BOUND`].
fn run(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {MEMORY_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .current_dir(dir)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(BOUND) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("holdfast {args:?} in {} ran past {BOUND:?}", dir.display());
        }
    }
}

fn convert(case: &Case, vars: &[(&str, &str)]) -> Output {
    run(case.path(), vars, &["convert", "c.yml", "--app", "web"])
}

/// The run was refused (65) with one line of bounded length, nothing
/// raw in it; that line.
fn refused(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(err.len() < 1500, "{} bytes: {}", err.len(), &err[..300]);
    let line = err.strip_suffix('\n').expect("one line");
    assert!(!line.contains(|c: char| c.is_control()), "{line:?}");
    line.to_owned()
}

/// Files beside the compose file: name, text.
type Files<'a> = Vec<(&'a str, &'a str)>;

fn svc(lines: &str) -> String {
    format!("services:\n  s:\n    image: i\n{lines}")
}

fn nested(depth: usize) -> String {
    format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth))
}

#[test]
fn deep_interpolation_is_refused_at_once() {
    // 30,000 levels (180 KB): 12 s, 2.3 GB, then a stack overflow.
    let case = Case::new(
        &format!("services:\n  s:\n    image: \"{}\"\n", nested(30_000)),
        &[],
    );
    assert_eq!(
        refused(&convert(&case, &[])),
        "holdfast: target rejected: c.yml:3:12: services.s.image: interpolation: variables nested more than 32 deep"
    );
}

#[test]
fn alias_bombs_are_refused_by_what_they_weigh() {
    // 1 MB asking for 87 GB: 199,000 aliases of a 440 KB string.
    let big = "x".repeat(440_000);
    let case = Case::new(
        &format!(
            "x-big: &a \"{big}\"\n{}    labels: [{}]\n",
            svc(""),
            vec!["*a"; 199_000].join(", ")
        ),
        &[],
    );
    assert_eq!(
        refused(&convert(&case, &[])),
        "holdfast: target rejected: c.yml:5:158: services.s.labels[36]: the anchors and aliases expand the file to more than 16 MiB"
    );
    // 3,000 aliases of 1 MiB: 3.1 GB.
    let mib = "y".repeat(1 << 20);
    let case = Case::new(
        &format!(
            "x-big: &a \"{mib}\"\n{}    labels: [{}]\n",
            svc(""),
            vec!["*a"; 3_000].join(", ")
        ),
        &[],
    );
    assert!(refused(&convert(&case, &[])).ends_with(
        "services.s.labels[13]: the anchors and aliases expand the file to more than 16 MiB"
    ));
}

#[test]
fn many_keys_merges_and_env_lines_are_linear() {
    // 90,000 keys then a duplicate: a rescan per key.
    let mut labels = String::from("    labels:\n");
    for i in 0..90_000 {
        labels.push_str(&format!("      k{i}: v\n"));
    }
    labels.push_str("      k0: again\n");
    let case = Case::new(&svc(&labels), &[]);
    assert_eq!(
        refused(&convert(&case, &[])),
        "holdfast: target rejected: c.yml:90005:7: services.s.labels.k0: duplicate key \"k0\"; give each key once"
    );
    // 30,000 keys merged into 30,000 (a rescan per merged key), then a
    // key refused after the merge.
    let mut file = String::from("x-m: &m\n");
    for i in 0..30_000 {
        file.push_str(&format!("  m{i}: v\n"));
    }
    let mut own = String::from("    labels:\n      <<: *m\n");
    for i in 0..30_000 {
        own.push_str(&format!("      o{i}: v\n"));
    }
    own.push_str("    restrat: always\n");
    file.push_str(&svc(&own));
    let case = Case::new(&file, &[]);
    assert!(refused(&convert(&case, &[]))
        .ends_with("services.s.restrat: unknown key \"restrat\"; did you mean \"restart\"?"));
    // A .env of 35,000 keys each set twice from itself (a rescan per
    // line and per variable), then a key refused.
    let mut dotenv = String::new();
    for i in 0..35_000 {
        dotenv.push_str(&format!("K{i}=a\nK{i}=${{K{i}}}b\n"));
    }
    let case = Case::new(&svc("    restrat: always\n"), &[(".env", &dotenv)]);
    let e = refused(&convert(&case, &[]));
    assert!(e.contains("unknown key \"restrat\""), "{e}");
    // The same env_file in 40 services: one read too many.
    let mut env_file = String::new();
    for i in 0..20_000 {
        env_file.push_str(&format!("E{i}={}\n", "v".repeat(40)));
    }
    let mut services = String::from("services:\n");
    for i in 0..40 {
        services.push_str(&format!("  s{i}:\n    image: i\n    env_file: e.env\n"));
    }
    let case = Case::new(&services, &[("e.env", &env_file)]);
    let e = refused(&convert(&case, &[]));
    assert!(
        e.ends_with("/e.env: one file too many: the .env and env_files one compose file reads hold at most 16 MiB in all"),
        "{e}"
    );
}

#[test]
fn limits_that_are_not_finite_numbers_are_refused() {
    // They became null, "not given": exit 0, a container without the limit.
    for field in ["mem_limit", "memswap_limit", "shm_size", "cpus"] {
        for value in [".inf", ".nan", "1e400"] {
            let case = Case::new(&svc(&format!("    {field}: {value}\n")), &[]);
            assert_eq!(
                refused(&convert(&case, &[])),
                format!(
                    "holdfast: target rejected: c.yml:4:{}: services.s.{field}: \"{value}\" is not a finite number",
                    field.len() + 7
                )
            );
        }
    }
}

#[test]
fn messages_quote_little_and_env_files_nothing() {
    // 100 KB values and names came back whole in the message.
    let long = "p".repeat(100_000);
    for lines in [
        format!("    ports: [\"{long}\"]\n"),
        format!("    volumes: [\"{long}\"]\n"),
        format!("    stop_signal: \"{long}\\e[31m\"\n"),
        format!("    ? \"{}\\e]0;title\\a\"\n    : 1\n", "k".repeat(1000)),
    ] {
        let e = refused(&convert(&Case::new(&svc(&lines), &[]), &[]));
        assert!(e.contains("bytes in all)"), "{e}");
    }
    // An env file's lines are never quoted: /proc/self/environ is one.
    let secret = [("HF_TEST_TOKEN", "hunter2-s3cr3t")];
    let case = Case::new(&svc("    env_file: /proc/self/environ\n"), &[]);
    let e = refused(&convert(&case, &secret));
    assert!(!e.contains("hunter2"), "{e}");
    assert!(
        e.ends_with(": a NUL character: an env file holds lines of text, KEY=VALUE"),
        "{e}"
    );
    let case = Case::new(
        &svc("    env_file: s.env\n"),
        &[("s.env", "OK=1\nTOKEN hunter2-s3cr3t\n")],
    );
    let e = refused(&convert(&case, &[]));
    assert!(
        e.ends_with("/s.env:2:1: not KEY=VALUE, a comment (#) or a blank line"),
        "{e}"
    );
    let case = Case::new(&svc(""), &[(".env", "TOKEN='hunter2-s3cr3t\n")]);
    let e = refused(&convert(&case, &[]));
    assert!(e.ends_with("/.env:1:7: a ' without its closing '"), "{e}");
}

#[test]
fn what_else_an_attacker_tries_is_refused() {
    let nothing: &[(&str, &str)] = &[];
    let mb = "b".repeat(1_000_000);
    let dotenv_big = format!("BIG='{mb}'\n");
    let mut from_env = String::from("x-e: &e [BIG]\nservices:\n");
    for i in 0..100 {
        from_env.push_str(&format!("  s{i}:\n    image: i\n    environment: *e\n"));
    }
    let mut long_names = String::from("x-l: &l\n");
    for i in 0..4000 {
        long_names.push_str(&format!("  l{i}: v\n"));
    }
    long_names.push_str(&svc("networks:\n"));
    for j in 0..20 {
        long_names.push_str(&format!("  ? {}{j}\n  : labels: *l\n", "n".repeat(1000)));
    }
    let cases: Vec<(String, Files, &str)> = vec![
        // 4 billion port lines from one item: an allocation of 103 GB.
        (svc("    ports: [\"0-4294967295:0-4294967295\"]\n"), vec![],
         "is not a port or a range like 8000-8009"),
        // 6.5 million port lines: 60 s, 1.5 GB.
        (svc(&format!("    ports: [{}]\n", vec!["\"1-65535:1-65535\""; 100].join(", "))), vec![],
         "the ports of this file expand to more than 65536 mappings"),
        // An alias of a mapping as a key: unreachable!(), exit 101.
        ("x: &a {b: 1}\ny:\n  *a : 2\nservices: {}\n".into(), vec![],
         "c.yml:3:3: y: a mapping key must be a string, not a list or mapping"),
        // A 2 MB key over 200,000 values: its path spelled per value.
        (format!("? x-{}\n:\n{}{}", "k".repeat(2_000_000), "  - 1\n".repeat(200_000), svc("")), vec![],
         "c.yml:1:3: (top): a key of 2000002 characters; a key is at most 1024"),
        // A 1 MB variable pasted into 100 services' environment: 100 MB.
        (from_env, vec![(".env", dotenv_big.as_str())],
         "services.s16.environment.BIG: variables paste more than 16 MiB into this file in all"),
        // 500,000 lookups of a 1 MB variable, each a copy: 57 s.
        (svc(&format!("    labels: {{a: \"{}\"}}\n    restrat: x\n", "${BIG:+}".repeat(400_000))),
         vec![(".env", dotenv_big.as_str())], "unknown key \"restrat\""),
        // Long names above many values: 80 MB of paths.
        (long_names, vec![], "the paths of this file's values pass 16 MiB in all (long names with many values below them)"),
        // Nesting (already bounded): still refused.
        (svc(&format!("    labels: {}{}\n", "[".repeat(1_000_000), "]".repeat(1_000_000))), vec![],
         "YAML syntax: recursion limit exceeded"),
    ];
    for (yaml, files, want) in cases {
        let case = Case::new(&yaml, &files);
        let e = refused(&convert(&case, nothing));
        assert!(e.contains(want), "{want:?} not in {e}");
    }
}

#[test]
fn a_byte_order_mark_in_dotenv_is_not_part_of_the_key() {
    let case = Case::new(
        "services:\n  s:\n    image: ${TAG}\n",
        &[(".env", "\u{FEFF}TAG=busybox:1\r\n")],
    );
    let out = convert(&case, &[]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["apps"]["web"]["services"]["s"]["image"], "busybox:1");
}

/// The same files through `holdfast apply`: refused before the daemon
/// sees them, the target in force unchanged, the daemon still answering.
#[tokio::test]
async fn apply_refuses_them_and_changes_nothing() {
    let mut env = Env::new();
    env.start_daemon().await;
    let before: PathBuf = env.target_file();
    let before = std::fs::read(&before).ok();
    let big = "x".repeat(440_000);
    for yaml in [
        format!("services:\n  s:\n    image: \"{}\"\n", nested(30_000)),
        format!(
            "x-big: &a \"{big}\"\n{}    labels: [{}]\n",
            svc(""),
            vec!["*a"; 199_000].join(", ")
        ),
        svc("    mem_limit: .inf\n"),
    ] {
        let case = Case::new(&yaml, &[]);
        let config = env.config_path();
        let out = run(
            case.path(),
            &[("DBUS_SYSTEM_BUS_ADDRESS", &env.bus)],
            &[
                "--config",
                config.to_str().unwrap(),
                "apply",
                "c.yml",
                "--app",
                "web",
            ],
        );
        refused(&out);
        assert_eq!(std::fs::read(env.target_file()).ok(), before);
    }
    common::ok(&env.cli(&["status"]));
    assert!(!env.log().contains("panicked"));
}
