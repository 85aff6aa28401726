//! `holdfast apply` and `holdfast convert`: a target state (JSON) or a
//! compose file to holdfastd. A compose file is converted here, so its
//! errors name the file, line and column, and set as one app's target
//! (SetAppTarget): the other apps in force stay as they are.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::compose::{self, ComposeError, OsHost, Source};
use crate::names::AppName;
use crate::target::AppTarget;

use super::{connect, BusFailure};

/// sysexits.h EX_DATAERR: the input was bad.
pub const EXIT_DATAERR: u8 = 65;
/// sysexits.h EX_USAGE: the command line was wrong.
pub const EXIT_USAGE: u8 = 64;

/// What FILE holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A target state (docs/target-state.md).
    Json,
    /// A compose file (docs/compose.md).
    Compose,
}

impl Format {
    /// Compose for `.yml` and `.yaml`, else JSON.
    pub fn of(file: &Path) -> Format {
        match file.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => Format::Compose,
            _ => Format::Json,
        }
    }
}

pub struct ApplyArgs {
    pub file: PathBuf,
    pub format: Option<Format>,
    pub app: Option<String>,
    pub release: Option<String>,
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("holdfast: {msg}");
    ExitCode::from(code)
}

fn rejected(msg: impl std::fmt::Display) -> ExitCode {
    fail(EXIT_DATAERR, format!("target rejected: {msg}"))
}

/// FILE's bytes (`-`: stdin), at most what a compose file may be; a
/// file that cannot be read exits 1, one too large is bad input (65).
fn read(file: &Path) -> Result<Vec<u8>, ExitCode> {
    let limit = compose::MAX_COMPOSE_BYTES;
    let mut bytes = Vec::new();
    let r = if file.as_os_str() == "-" {
        std::io::stdin().take(limit + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
    };
    r.map_err(|e| fail(1, format!("{}: {e}", file.display())))?;
    if bytes.len() as u64 > limit {
        return Err(rejected(format!(
            "{}: larger than {limit} bytes",
            file.display()
        )));
    }
    Ok(bytes)
}

/// A NUL byte: no JSON or YAML text has one, and a D-Bus string cannot
/// carry it (the call would fail as if holdfastd were unreachable).
fn no_nul(file: &str, bytes: &[u8]) -> Result<(), String> {
    let Some(at) = bytes.iter().position(|b| *b == 0) else {
        return Ok(());
    };
    let before = &bytes[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    Err(format!(
        "{file}: line {line} column {column} (byte {at}): a NUL byte; the file must be text without NUL"
    ))
}

fn app_name(app: &str) -> Result<AppName, ExitCode> {
    AppName::new(app).map_err(|e| fail(EXIT_USAGE, format!("--app: {e}")))
}

/// A compose file as the app's target: the file's directory (the working
/// directory for stdin) is where `.env`, `env_file`s and relative binds are.
fn convert_file(file: &Path, app: &AppName, release: Option<&str>) -> Result<AppTarget, ExitCode> {
    let bytes = read(file)?;
    let stdin = file.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    };
    no_nul(&crate::text::no_controls(&name), &bytes).map_err(rejected)?;
    let dir = if stdin {
        PathBuf::from(".")
    } else {
        file.parent().map(Path::to_owned).unwrap_or_default()
    };
    let dir = std::path::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &dir
    })
    .map_err(|e| fail(1, format!("{}: {e}", dir.display())))?;
    let src = Source {
        name: &name,
        bytes: &bytes,
        dir: &dir,
    };
    compose::load(&src, app, release, &OsHost).map_err(|e: ComposeError| rejected(e))
}

/// `holdfast convert`: the whole target a compose file becomes, pretty.
pub fn convert(file: &Path, app: &str, release: Option<&str>) -> ExitCode {
    let app = match app_name(app) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match convert_file(file, &app, release) {
        Ok(t) => {
            let whole = compose::one_app(&app, t);
            println!(
                "{}",
                serde_json::to_string_pretty(&whole).expect("target serializes")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `holdfast apply`.
pub async fn apply(args: ApplyArgs) -> Result<ExitCode, BusFailure> {
    let format = args.format.unwrap_or_else(|| Format::of(&args.file));
    let file = crate::text::no_controls(&args.file.display().to_string());
    let app = match args.app.as_deref().map(app_name).transpose() {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let (source, answer) = match (format, app) {
        (Format::Compose, None) => {
            return Ok(fail(
                EXIT_USAGE,
                "a compose file is one app's: give --app NAME",
            ));
        }
        (Format::Json, _) if args.release.is_some() => {
            return Ok(fail(
                EXIT_USAGE,
                "--release is for compose files; a target state names its releases",
            ));
        }
        (Format::Compose, Some(app)) => {
            let t = match convert_file(&args.file, &app, args.release.as_deref()) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let json = serde_json::to_string(&t).expect("app target serializes");
            let p = connect().await?;
            (
                "D-Bus SetAppTarget",
                p.set_app_target(app.as_str(), &json).await,
            )
        }
        (Format::Json, app) => {
            let bytes = match read(&args.file) {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            if let Err(e) = no_nul(&file, &bytes) {
                return Ok(rejected(e));
            }
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => return Ok(rejected(format!("{file}: not UTF-8: {e}"))),
            };
            match app {
                None => ("D-Bus SetTarget", connect().await?.set_target(&text).await),
                // One app of the document; the others in force stay.
                Some(app) => {
                    let t = match crate::target::parse(&text, &file) {
                        Ok(t) => t,
                        Err(e) => return Ok(rejected(e)),
                    };
                    let Some(a) = t.apps.get(&app) else {
                        return Ok(rejected(format!(
                            "{file}: apps.{app}: no such app in the file"
                        )));
                    };
                    let json = serde_json::to_string(a).expect("app target serializes");
                    let p = connect().await?;
                    (
                        "D-Bus SetAppTarget",
                        p.set_app_target(app.as_str(), &json).await,
                    )
                }
            }
        }
    };
    match answer {
        Ok(summary) => println!("target accepted: {summary}"),
        Err(zbus::Error::MethodError(name, msg, _))
            if name.as_str() == "org.holdfast.Supervisor1.Error.InvalidTarget" =>
        {
            // The daemon names its input generically; name the file.
            let msg = msg.unwrap_or_default().replacen(source, &file, 1);
            return Ok(rejected(msg));
        }
        // An app a fleet server owns: refused, the target in force stays.
        Err(zbus::Error::MethodError(name, msg, _))
            if name.as_str() == "org.holdfast.Supervisor1.Error.Conflict" =>
        {
            return Ok(rejected(msg.unwrap_or_default()));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nul_byte_is_found_with_its_line_column_and_offset() {
        assert_eq!(super::no_nul("f", b"{}\n"), Ok(()));
        let e = super::no_nul("t.json", b"{\n  \"a\": \"x\0\"}").unwrap_err();
        assert_eq!(
            e,
            "t.json: line 2 column 10 (byte 11): a NUL byte; the file must be text without NUL"
        );
        let e = super::no_nul("t.json", b"\0").unwrap_err();
        assert!(e.starts_with("t.json: line 1 column 1 (byte 0)"), "{e}");
    }
}
