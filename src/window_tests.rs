use super::*;

fn spec(days: &[&str], start: &str, len: u32) -> WindowSpec {
    WindowSpec {
        days: days.iter().map(|d| d.to_string()).collect(),
        start_time: start.into(),
        length_minutes: len,
    }
}

fn at(p: &Periodic, rfc3339: &str) -> (bool, Option<String>) {
    let s = p.at(rfc3339.parse().unwrap());
    let shown = s
        .changes_at
        .map(|z| z.strftime("%Y-%m-%d %a %H:%M %Z").to_string());
    (s.open, shown)
}

#[test]
fn a_window_opens_and_closes_on_its_days_only() {
    // 2026-11-30 is a Monday.
    let p = Periodic::new("UTC", vec![spec(&["Mon", "wednesday"], "22:30", 120)]).unwrap();
    assert_eq!(
        at(&p, "2026-11-30T12:00:00Z"),
        (false, Some("2026-11-30 Mon 22:30 UTC".into()))
    );
    assert_eq!(
        at(&p, "2026-11-30T22:30:00Z"),
        (true, Some("2026-12-01 Tue 00:30 UTC".into())),
        "open from its first minute, across midnight"
    );
    assert_eq!(
        at(&p, "2026-12-01T00:29:59Z"),
        (true, Some("2026-12-01 Tue 00:30 UTC".into()))
    );
    assert_eq!(
        at(&p, "2026-12-01T00:30:00Z"),
        (false, Some("2026-12-02 Wed 22:30 UTC".into())),
        "closed from its end, until the next day named"
    );
    assert_eq!(
        at(&p, "2026-12-03T01:00:00Z"),
        (false, Some("2026-12-07 Mon 22:30 UTC".into())),
        "past Wednesday's window: next Monday's"
    );
}

#[test]
fn windows_wrap_past_sunday_and_touching_windows_are_one() {
    let p = Periodic::new(
        "UTC",
        vec![spec(&["Sun"], "23:00", 120), spec(&["Mon"], "01:00", 60)],
    )
    .unwrap();
    // Sunday 2026-12-06 23:30: open until Monday 02:00, not 01:00.
    assert_eq!(
        at(&p, "2026-12-06T23:30:00Z"),
        (true, Some("2026-12-07 Mon 02:00 UTC".into()))
    );
    let always = Periodic::new("UTC", vec![spec(&["Mon"], "00:00", 20_000)]).unwrap();
    assert_eq!(at(&always, "2026-12-02T10:00:00Z"), (true, None));
    assert_eq!(
        always.at("2026-12-02T10:00:00Z".parse().unwrap()).blocker(),
        None
    );
}

#[test]
fn the_wall_clock_of_the_zone_counts_also_when_the_clocks_change() {
    let p = Periodic::new("Europe/Berlin", vec![spec(&["Sun"], "03:30", 60)]).unwrap();
    // 2027-03-28 01:00 UTC is 03:00 CEST (the clocks went forward at 02:00).
    assert_eq!(
        at(&p, "2027-03-28T01:00:00Z"),
        (false, Some("2027-03-28 Sun 03:30 CEST".into()))
    );
    assert_eq!(
        at(&p, "2027-03-28T00:59:00Z"),
        (false, Some("2027-03-28 Sun 03:30 CEST".into())),
        "01:59 CET: the window still opens at 03:30 on the wall clock"
    );
    assert!(at(&p, "2027-03-28T01:30:00Z").0, "03:30 CEST");
    let s = p.at("2026-11-30T12:00:00Z".parse().unwrap());
    assert_eq!(s.blocker().unwrap(), "closed until Sun 03:30 CET");
}

#[test]
fn bad_values_are_named() {
    let err = |tz: &str, w: WindowSpec| Periodic::new(tz, vec![w]).unwrap_err();
    let ok = spec(&["Mon"], "22:30", 60);
    assert!(err("Mars/Olympus", ok.clone()).contains("\"Mars/Olympus\" is not a time zone"));
    assert!(err("UTC", spec(&["Mon"], "24:00", 60)).contains("start_time \"24:00\""));
    assert!(err("UTC", spec(&["Mon"], "7:30", 60)).contains("start_time \"7:30\""));
    assert!(err("UTC", spec(&["Mon"], "07:3x", 60)).contains("start_time"));
    assert!(err("UTC", spec(&["Mo"], "22:30", 60)).contains("\"Mo\" is not a day"));
    assert!(err("UTC", spec(&["Mon"], "22:30", 0)).contains("length_minutes is 0"));
    assert!(err("UTC", spec(&[], "22:30", 60)).contains("days is empty"));
    assert!(Periodic::new("UTC", vec![])
        .unwrap_err()
        .contains("no [[update.periodic.window]]"));
    assert!(Periodic::new("localtime", vec![ok.clone()]).is_ok());
    assert!(Periodic::new("MONDAY", vec![ok]).is_err());
    assert!(weekday("MONDAY").is_ok() && weekday("sun").is_ok());
}
