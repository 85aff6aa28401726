//! `[update.periodic]`: maintenance windows. As with `[fleet.lock]`, a file
//! with the section replaces it whole (Zincati adds the windows of every
//! fragment instead; here a drop-in in /etc can replace a vendor's).

use super::super::fragment::PeriodicFragment;
use super::{ConfigError, Parsed};
use crate::window::{Periodic, WindowField, WindowSpec};

pub(super) fn periodic(p: &Parsed, f: &PeriodicFragment) -> Result<Periodic, ConfigError> {
    let (zone, zone_span) = match &f.time_zone {
        Some(z) => (z.get_ref().as_str(), Some(z.span())),
        None => ("localtime", None),
    };
    let mut windows = Vec::new();
    for w in &f.window {
        let spec = WindowSpec {
            days: w.days.get_ref().clone(),
            start_time: w.start_time.get_ref().clone(),
            length_minutes: *w.length_minutes.get_ref(),
        };
        // Each window checked on its own, so an error names its line.
        spec.spans().map_err(|(field, why)| {
            let (key, span) = match field {
                WindowField::Days => ("days", w.days.span()),
                WindowField::StartTime => ("start_time", w.start_time.span()),
                WindowField::LengthMinutes => ("length_minutes", w.length_minutes.span()),
            };
            p.error(Some(span), &format!("update.periodic.window.{key}"), why)
        })?;
        windows.push(spec);
    }
    Periodic::new(zone, windows).map_err(|r| {
        let key = match f.window.is_empty() {
            true => "update.periodic",
            false => "update.periodic.time_zone",
        };
        p.error(zone_span, key, r)
    })
}

#[cfg(test)]
mod tests {
    use super::super::load;

    fn main_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let main = t.path().join("holdfast.toml");
        std::fs::write(&main, format!("config_dirs = []\n{text}")).unwrap();
        (t, main)
    }

    #[test]
    fn windows_as_zincati_writes_them() {
        let (_t, main) = main_file(
            "[update.periodic]\ntime_zone = \"Europe/Berlin\"\n\
             [[update.periodic.window]]\ndays = [\"Sat\", \"Sun\"]\nstart_time = \"23:30\"\nlength_minutes = 60\n\
             [[update.periodic.window]]\ndays = [\"Wed\"]\nstart_time = \"01:00\"\nlength_minutes = 30\n",
        );
        let s = load(&main, true).unwrap();
        let p = s.settings.periodic.as_ref().unwrap();
        assert_eq!(
            (p.time_zone.as_str(), p.windows.len()),
            ("Europe/Berlin", 2)
        );
        assert!(s.render().contains("update.periodic = { time_zone = \"Europe/Berlin\", window = [{ days = [\"Sat\", \"Sun\"], start_time = \"23:30\""), "{}", s.render());
        let (_t, main) = main_file(
            "[[update.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"22:30\"\nlength_minutes = 120\n",
        );
        let p = load(&main, true).unwrap().settings.periodic.unwrap();
        assert_eq!(p.time_zone, "localtime", "the device's zone by default");
        let (_t, main) = main_file("");
        assert_eq!(load(&main, true).unwrap().settings.periodic, None);
    }

    #[test]
    fn a_bad_window_or_zone_names_its_line() {
        for (text, want) in [
            (
                "[update.periodic]\ntime_zone = \"UTC\"\n\n[[update.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"25:00\"\nlength_minutes = 1\n",
                ":7: update.periodic.window.start_time: start_time \"25:00\" is not a time",
            ),
            (
                "[update.periodic]\ntime_zone = \"Nowhere/City\"\n[[update.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"01:00\"\nlength_minutes = 1\n",
                ":3: update.periodic.time_zone: \"Nowhere/City\" is not a time zone",
            ),
            (
                "[update.periodic]\ntime_zone = \"UTC\"\n",
                ":3: update.periodic: has no [[update.periodic.window]]",
            ),
            (
                "[[update.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"01:00\"\n",
                "missing field `length_minutes`",
            ),
            (
                "[[update.periodic.window]]\ndays = [\"Mon\"]\nstart_time = \"01:00\"\nlength_minutes = 1\nlength = 2\n",
                "unknown field `length`",
            ),
        ] {
            let (_t, main) = main_file(text);
            let e = load(&main, true).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
