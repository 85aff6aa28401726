//! `holdfast config show`: the settings in force as TOML-like lines, each
//! with the file it came from.

use std::path::Path;

use super::settings::{LockBackend, Sourced};

impl Sourced {
    pub fn render(&self) -> String {
        let s = &self.settings;
        let path = |p: &Path| toml_str(&p.display().to_string());
        let list = |v: Vec<String>| format!("[{}]", v.join(", "));
        let rows: Vec<(&str, String)> = vec![
            ("lock_root", path(&s.lock_root)),
            ("state_dir", path(&s.state_dir)),
            ("config_json", path(&s.config_json)),
            ("os_release", path(&s.os_release)),
            (
                "config_dirs",
                list(s.config_dirs.iter().map(|p| path(p)).collect()),
            ),
            (
                "inhibit.what",
                list(
                    s.inhibit_what
                        .iter()
                        .map(|w| toml_str(w.as_str()))
                        .collect(),
                ),
            ),
            ("engine.socket", path(&s.engine_socket())),
            ("engine.registry_auth", path(&s.registry_auth)),
            ("target.file", path(&s.target_file)),
            ("boot.config_txt", path(&s.boot_config_txt)),
            ("api.socket", path(&s.api_socket)),
            (
                "api.tcp",
                s.api_tcp
                    .map(|a| toml_str(&a.to_string()))
                    .unwrap_or_else(|| "(off)".into()),
            ),
            (
                "update.healthy_timeout",
                toml_str(&humantime::format_duration(s.healthy_timeout).to_string()),
            ),
            ("update.rollback", s.rollback.to_string()),
            (
                "update.remove_volumes_with_app",
                s.remove_volumes_with_app.to_string(),
            ),
            (
                "update.periodic",
                match &s.periodic {
                    None => "(off: at any time)".into(),
                    Some(p) => {
                        let windows: Vec<String> = p
                            .windows
                            .iter()
                            .map(|w| {
                                format!(
                                    "{{ days = {}, start_time = {}, length_minutes = {} }}",
                                    list(w.days.iter().map(|d| toml_str(d)).collect()),
                                    toml_str(&w.start_time),
                                    w.length_minutes
                                )
                            })
                            .collect();
                        format!(
                            "{{ time_zone = {}, window = {} }}",
                            toml_str(&p.time_zone),
                            list(windows)
                        )
                    }
                },
            ),
            (
                "fleet.id",
                s.fleet
                    .id
                    .as_deref()
                    .map(toml_str)
                    .unwrap_or_else(|| "(config.json uuid, else from /etc/machine-id)".into()),
            ),
            ("fleet.group", toml_str(&s.fleet.group)),
            (
                "fleet.lock",
                match &s.fleet.lock {
                    None => "(off)".into(),
                    Some(l) => {
                        let mut v = format!("{{ backend = {}", toml_str(l.backend.name()));
                        match &l.backend {
                            LockBackend::Etcd { endpoints, .. } => v.push_str(&format!(
                                ", endpoints = {}",
                                list(endpoints.iter().map(|e| toml_str(e)).collect())
                            )),
                            LockBackend::Fleetlock { url, .. } => {
                                v.push_str(&format!(", url = {}", toml_str(url)))
                            }
                        }
                        v.push_str(&format!(
                            ", reboots = {}, updates = {} }}",
                            l.reboots, l.updates
                        ));
                        v
                    }
                },
            ),
        ];
        let width = rows
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .max()
            .unwrap_or(0)
            + 3;
        let mut out = String::new();
        for (k, v) in rows {
            let mut src = self.source(k).to_string();
            if k == "engine.socket" && s.engine_socket.is_none() {
                src = "default (auto-detected)".into();
            }
            let pad = width - k.len() - v.len();
            out.push_str(&format!("{k} = {v}{:pad$}# {src}\n", ""));
        }
        out
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
