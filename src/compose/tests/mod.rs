//! Compose conversion, pure: a fake environment and file system.

mod bounds;
mod errors;
mod interpolation;
mod shapes;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{load, ComposeError, Host, Source};
use crate::names::AppName;
use crate::target::AppTarget;

#[derive(Default)]
pub struct FakeHost {
    pub env: BTreeMap<String, String>,
    pub files: BTreeMap<PathBuf, String>,
}

impl FakeHost {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(PathBuf::from(path), text.into());
        self
    }
}

impl Host for FakeHost {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        Ok(self.files.get(path).map(|t| t.as_bytes().to_vec()))
    }
}

pub const DIR: &str = "/srv/app";

pub fn convert_with(yaml: &str, host: &FakeHost) -> Result<AppTarget, ComposeError> {
    let src = Source {
        name: "compose.yml",
        bytes: yaml.as_bytes(),
        dir: Path::new(DIR),
    };
    load(&src, &AppName::new("web").unwrap(), Some("r1"), host)
}

pub fn convert(yaml: &str) -> Result<AppTarget, ComposeError> {
    convert_with(yaml, &FakeHost::default())
}

/// The app's target as JSON.
pub fn json(yaml: &str) -> serde_json::Value {
    let t = convert(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    serde_json::to_value(&t).unwrap()
}

/// Service `s` of a file whose only service is `s` with these lines.
pub fn service(lines: &str) -> serde_json::Value {
    service_with(lines, &FakeHost::default())
}

pub fn service_with(lines: &str, host: &FakeHost) -> serde_json::Value {
    let yaml = service_yaml(lines);
    let t = convert_with(&yaml, host).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    serde_json::to_value(&t).unwrap()["services"]["s"].clone()
}

/// `services: s: image: i:1` plus `lines` (indented under s).
pub fn service_yaml(lines: &str) -> String {
    let mut y = String::from("services:\n  s:\n    image: i:1\n");
    for l in lines.lines() {
        y.push_str("    ");
        y.push_str(l);
        y.push('\n');
    }
    y
}

/// The error text for a file.
pub fn err(yaml: &str) -> String {
    err_with(yaml, &FakeHost::default())
}

pub fn err_with(yaml: &str, host: &FakeHost) -> String {
    match convert_with(yaml, host) {
        Ok(t) => panic!("accepted: {t:?}\n{yaml}"),
        Err(e) => {
            let s = e.to_string();
            assert!(
                !s.contains(|c: char| c.is_control()),
                "raw control in {s:?}"
            );
            s
        }
    }
}
