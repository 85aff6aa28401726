//! Private registry credentials (`engine.registry_auth`): docker's
//! `config.json` "auths" format, matched to an image by its registry host.
//!
//! ```json
//! {"auths": {"registry.example:5000": {"auth": "base64(user:password)"},
//!            "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
//! ```
//!
//! Per entry: `auth`, or `username` and `password`, or `identitytoken`
//! (with an optional `username`), or `registrytoken`; `auth` wins over
//! `username`/`password` as it does for docker. An empty entry (what
//! `docker login` leaves when a credential store keeps the secret) gives
//! no credentials. Keys may be written as URLs (`https://host:port/v1/`);
//! Docker Hub's names (`docker.io`, `index.docker.io`, ...) are one
//! registry, the one of `busybox` and `library/x`.
//!
//! The file is read before each pull whose file has changed since it was
//! last read (device, inode, size, times and mode compared): a changed
//! file counts for the next pull, with no watch task and no restart.
//!
//! A file that is accessible by group or others, that does not parse,
//! or that cannot be read gives **no** credentials at all, not the last
//! good ones: an exposed secret is not used, and what a pull sends is
//! always what the file says now. Pulls go on without credentials (public
//! images still come), and a failed pull names the file and what is wrong
//! with it. Secrets never reach a log line, an error or the status:
//! [`Secret`] shows as `<redacted>`, and messages about the file name
//! keys and fields, never values.

mod file;

pub use file::{AuthFile, Loaded};

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use crate::fsutil::ReadError;

/// A credentials file is small; anything bigger is not one.
pub const MAX_AUTH_FILE_BYTES: u64 = 1 << 20;

/// Docker Hub, as image references name it.
pub const DOCKER_HUB: &str = "docker.io";
/// What `docker login` writes for Docker Hub; also sent as its server address.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// A password or token: shown nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that sends it to the engine.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One registry's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The key as written in the file (e.g. `https://index.docker.io/v1/`).
    pub key: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub identity_token: Option<Secret>,
    pub registry_token: Option<Secret>,
}

impl Credential {
    /// What bollard sends in `X-Registry-Auth`.
    pub fn to_docker(&self, registry: &str) -> bollard::auth::DockerCredentials {
        let server = if registry == DOCKER_HUB {
            DOCKER_HUB_KEY.to_owned()
        } else {
            registry.to_owned()
        };
        bollard::auth::DockerCredentials {
            username: self.username.clone(),
            password: self.password.as_ref().map(|s| s.expose().to_owned()),
            serveraddress: Some(server),
            identitytoken: self.identity_token.as_ref().map(|s| s.expose().to_owned()),
            registrytoken: self.registry_token.as_ref().map(|s| s.expose().to_owned()),
            ..Default::default()
        }
    }
}

/// A parsed credentials file: registry host (normalized) -> credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auths {
    pub registries: BTreeMap<String, Credential>,
    /// Entries that give nothing (empty, or a key naming no host), and
    /// keys that name the same registry, for the log.
    pub notes: Vec<String>,
}

impl Auths {
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.registries.get(registry)
    }
}

/// Why a credentials file gives no credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error(
        "{path} is accessible by group or others (mode {mode:04o}), so holdfast uses no \
         credentials from it; make it private: chmod 600 {path}"
    )]
    Insecure { path: String, mode: u32 },
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{path}: line {line} column {column}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: {at}: {reason}")]
    Invalid {
        path: String,
        at: String,
        reason: String,
    },
}

/// Parses a credentials file's text; `path` names it in errors. No value
/// from the text ever goes into an error or a note: keys and field names
/// only.
pub fn parse(text: &str, path: &str) -> Result<Auths, AuthFileError> {
    crate::target::check_strict_json(text).map_err(|e| AuthFileError::Syntax {
        path: path.to_owned(),
        line: e.line,
        column: e.column,
        reason: e.located_reason(),
    })?;
    let invalid = |at: String, reason: &str| AuthFileError::Invalid {
        path: path.to_owned(),
        at,
        reason: reason.to_owned(),
    };
    let doc: Value = serde_json::from_str(text).map_err(|e| AuthFileError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        // The strict check above read it already; no value is echoed.
        reason: "not valid JSON".into(),
    })?;
    let Value::Object(top) = doc else {
        return Err(invalid("(top)".into(), "not a JSON object"));
    };
    let mut auths = Auths::default();
    let entries = match top.get("auths") {
        None => {
            auths
                .notes
                .push("no \"auths\" object: no credentials".into());
            return Ok(auths);
        }
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("auths".into(), "not an object")),
    };
    for (key, entry) in entries {
        let at = format!("auths.{key:?}");
        let registry = normalize_key(key);
        if registry.is_empty() {
            auths
                .notes
                .push(format!("{at}: names no registry; skipped"));
            continue;
        }
        let Value::Object(entry) = entry else {
            return Err(invalid(at, "not an object"));
        };
        let field = |name: &str| -> Result<Option<String>, AuthFileError> {
            match entry.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!("{at}.{name}"), "not a string")),
            }
        };
        let mut username = field("username")?;
        let mut password = field("password")?.map(Secret);
        if let Some(encoded) = field("auth")? {
            let (user, pass) =
                decode_auth(&encoded).map_err(|reason| invalid(format!("{at}.auth"), reason))?;
            username = Some(user);
            password = Some(pass);
        }
        let identity_token = field("identitytoken")?.map(Secret);
        let registry_token = field("registrytoken")?.map(Secret);
        if password.is_some() && username.is_none() {
            return Err(invalid(at, "a password without a username"));
        }
        if username.is_some() && password.is_none() && identity_token.is_none() {
            return Err(invalid(
                at,
                "a username without a password (or identitytoken)",
            ));
        }
        if username.is_none() && identity_token.is_none() && registry_token.is_none() {
            auths.notes.push(format!(
                "{at}: no credentials in it (a credential store's entry?); skipped"
            ));
            continue;
        }
        let cred = Credential {
            key: key.clone(),
            username,
            password,
            identity_token,
            registry_token,
        };
        match auths.registries.get(&registry) {
            // Two keys for one registry: the one written as the bare host
            // wins, else the first in the file's (sorted) order.
            Some(old) => {
                let keep_new = *key == registry && old.key != registry;
                let (used, unused) = if keep_new {
                    (key.as_str(), old.key.as_str())
                } else {
                    (old.key.as_str(), key.as_str())
                };
                auths.notes.push(format!(
                    "auths.{unused:?} and auths.{used:?} both name {registry}; {used:?} is used"
                ));
                if keep_new {
                    auths.registries.insert(registry, cred);
                }
            }
            None => {
                auths.registries.insert(registry, cred);
            }
        }
    }
    Ok(auths)
}

/// `auth`: base64 of `user:password` (the password may hold `:`).
fn decode_auth(encoded: &str) -> Result<(String, Secret), &'static str> {
    const B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = B64
        .decode(encoded.trim())
        .map_err(|_| "not base64 (of user:password)")?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 once decoded")?;
    let (user, pass) = text
        .split_once(':')
        .ok_or("not user:password once decoded (no ':')")?;
    if user.is_empty() {
        return Err("an empty user name once decoded");
    }
    // docker trims NULs some tools leave at the end.
    Ok((user.to_owned(), Secret(pass.trim_matches('\0').to_owned())))
}

/// A key of "auths" as a registry host: scheme and path dropped, lower
/// case, Docker Hub's names as `docker.io`.
pub fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let lower = k.to_ascii_lowercase();
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    let host = rest.split('/').next().unwrap_or("");
    hub_alias(host)
}

/// The registry an image is pulled from, as docker decides it: the first
/// path component when it looks like a host (has `.` or `:`, is
/// `localhost`, or has upper case), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            hub_alias(&first.to_ascii_lowercase())
        }
        _ => DOCKER_HUB.to_owned(),
    }
}

fn hub_alias(host: &str) -> String {
    if DOCKER_HUB_ALIASES.contains(&host) {
        DOCKER_HUB.to_owned()
    } else {
        host.to_owned()
    }
}

/// What one pull sends, and how its failure is explained.
#[derive(Debug)]
pub struct PullAuth {
    pub registry: String,
    pub credential: Option<Credential>,
    /// E.g. `no credentials for 127.0.0.1:5000 in /etc/holdfast/registry-auth.json`.
    pub hint: String,
}

impl PullAuth {
    pub fn docker(&self) -> Option<bollard::auth::DockerCredentials> {
        self.credential
            .as_ref()
            .map(|c| c.to_docker(&self.registry))
    }
}

#[cfg(test)]
mod tests;
