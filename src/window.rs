//! Maintenance windows, `[update.periodic]` in Zincati's shape: weekly
//! windows on a time zone's wall clock. Outside every window no app is
//! updated and holdfast does not reboot (unless forced, or a pending
//! reboot's deadline comes). Pure: a schedule and a time in, whether a
//! window is open and when that changes out; `crate::daemon::window`
//! publishes it.

use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::Serialize;

/// Minutes in a week: windows are minutes of the week, Monday 00:00 = 0.
pub const WEEK: u32 = 7 * 24 * 60;

/// One window as configured: `days`, each at `start_time` for
/// `length_minutes` (running past midnight, or past Sunday, as written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowSpec {
    pub days: Vec<String>,
    pub start_time: String,
    pub length_minutes: u32,
}

/// `[update.periodic]`: its time zone (`"localtime"`, the device's, or a
/// tz database name like `"Europe/Berlin"`) and its windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Periodic {
    pub time_zone: String,
    #[serde(rename = "window")]
    pub windows: Vec<WindowSpec>,
    /// `(start minute of the week, length)` of every window and day.
    #[serde(skip)]
    spans: Vec<(u32, u32)>,
    #[serde(skip)]
    zone: TimeZone,
}

/// Open now, or closed; and when that changes (`None`: never, the
/// windows cover the whole week).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    pub changes_at: Option<Zoned>,
}

impl WindowState {
    /// `closed until Mon 22:30 CET`, for `blocked_by`; `None` when open.
    pub fn blocker(&self) -> Option<String> {
        match (&self.open, &self.changes_at) {
            (true, _) => None,
            (false, Some(at)) => Some(format!("closed until {}", at.strftime("%a %H:%M %Z"))),
            (false, None) => Some("closed".into()),
        }
    }
}

/// Which value of a window is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowField {
    Days,
    StartTime,
    LengthMinutes,
}

impl WindowSpec {
    /// `(start minute of the week, length)` for each day, or which value
    /// is wrong and why.
    pub fn spans(&self) -> Result<Vec<(u32, u32)>, (WindowField, String)> {
        let start = start_minute(&self.start_time).map_err(|e| (WindowField::StartTime, e))?;
        if self.length_minutes == 0 {
            return Err((
                WindowField::LengthMinutes,
                "length_minutes is 0: the window would never be open".into(),
            ));
        }
        if self.days.is_empty() {
            return Err((
                WindowField::Days,
                "days is empty: the window would never be open".into(),
            ));
        }
        self.days
            .iter()
            .map(|d| {
                let day = weekday(d).map_err(|e| (WindowField::Days, e))?;
                let offset = u32::try_from(day.to_monday_zero_offset()).unwrap_or(0) * 24 * 60;
                Ok((offset + start, self.length_minutes.min(WEEK)))
            })
            .collect()
    }
}

impl Periodic {
    /// The zone's tz database name as it is used (`localtime` resolved).
    pub fn zone_name(&self) -> String {
        self.zone.iana_name().unwrap_or("UTC").to_owned()
    }

    /// Checks every value; the error says which one and why.
    pub fn new(time_zone: &str, windows: Vec<WindowSpec>) -> Result<Self, String> {
        let zone = zone(time_zone)?;
        if windows.is_empty() {
            return Err(
                "has no [[update.periodic.window]]: nothing would ever be updated; \
                 remove [update.periodic] to update at any time"
                    .into(),
            );
        }
        let mut spans = Vec::new();
        for w in &windows {
            spans.extend(w.spans().map_err(|(_, why)| why)?);
        }
        Ok(Self {
            time_zone: time_zone.to_owned(),
            windows,
            spans,
            zone,
        })
    }

    /// Whether a window is open at `now`, and when that changes.
    pub fn at(&self, now: Timestamp) -> WindowState {
        let local = now.to_zoned(self.zone.clone()).datetime();
        let minute = minute_of_week(local);
        let open = self.open_at(minute);
        let changes_at = self.minutes_to_change(minute, open).and_then(|d| {
            // On the wall clock: a window at 03:30 opens at 03:30 local
            // time on a day the clocks go forward, too.
            let whole_minute = local.with().second(0).subsec_nanosecond(0).build().ok()?;
            let at = whole_minute
                .checked_add(jiff::Span::new().minutes(d))
                .ok()?;
            at.to_zoned(self.zone.clone()).ok()
        });
        WindowState { open, changes_at }
    }

    fn open_at(&self, minute: u32) -> bool {
        self.spans
            .iter()
            .any(|&(start, len)| (minute + WEEK - start) % WEEK < len)
    }

    /// Minutes from `minute` to the next one whose state is not `open`.
    /// A change can only happen where a window starts or ends.
    fn minutes_to_change(&self, minute: u32, open: bool) -> Option<i64> {
        let mut ahead: Vec<u32> = self
            .spans
            .iter()
            .flat_map(|&(start, len)| [start, (start + len) % WEEK])
            .map(|edge| match (edge + WEEK - minute) % WEEK {
                0 => WEEK,
                d => d,
            })
            .collect();
        ahead.sort_unstable();
        ahead
            .into_iter()
            .find(|d| self.open_at((minute + d) % WEEK) != open)
            .map(i64::from)
    }
}

fn zone(name: &str) -> Result<TimeZone, String> {
    match name {
        // No /etc/localtime (many small images): UTC, as glibc and
        // Zincati take it; the log names the zone in use.
        "localtime" => Ok(TimeZone::try_system().unwrap_or(TimeZone::UTC)),
        "UTC" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|_| {
            format!("{name:?} is not a time zone of the tz database (like \"Europe/Berlin\", \"UTC\" or \"localtime\")")
        }),
    }
}

fn start_minute(s: &str) -> Result<u32, String> {
    let bad = || format!("start_time {s:?} is not a time like \"22:30\" (00:00 to 23:59)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let two_digits =
        |t: &str| (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit())).then_some(());
    two_digits(h).and(two_digits(m)).ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `Mon` or `Monday`, in any case, as Zincati takes them.
fn weekday(s: &str) -> Result<Weekday, String> {
    const DAYS: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
        ("sun", "sunday", Weekday::Sunday),
    ];
    let lower = s.to_ascii_lowercase();
    DAYS.iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, d)| *d)
        .ok_or_else(|| format!("{s:?} is not a day of the week (Mon, Tue, … Sun)"))
}

fn minute_of_week(dt: DateTime) -> u32 {
    let day = u32::try_from(dt.weekday().to_monday_zero_offset()).unwrap_or(0);
    let hour = u32::try_from(dt.hour()).unwrap_or(0);
    let minute = u32::try_from(dt.minute()).unwrap_or(0);
    day * 24 * 60 + hour * 60 + minute
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
