//! The systemd timers drtool writes must fire when drtool's own scheduler would: every
//! `OnCalendar=` value is checked with `systemd-analyze calendar`, which must accept it and
//! report the same next five elapse times as `CronSchedule::upcoming`.
//!
//! Outside CI a missing systemd-analyze skips the test with a message; with CI=true it fails.

use std::process::Command;

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta, Utc};
use drtool::policy::schedule::CronSchedule;

const ITERATIONS: usize = 5;

type Runs = Vec<DateTime<Utc>>;

/// Every syntax drtool accepts, including both day rules (OR and AND).
const CORPUS: &[&str] = &[
    "* * * * *",
    "30 2 * * *",
    "*/15 * * * *",
    "*/7 */5 * * *",
    "1-30/5 * * * *",
    "5/15 * * * *",
    "0,30 9-17 * * MON-FRI",
    "0 9-17/2 * * 1-5",
    "0 0 1 jan,Jul *",
    "0 0 1 Mar-May *",
    "0 12 * */3 *",
    "0 0 * * sun",
    "0 0 * * 0",
    "0 0 * * 7",
    "0 0 * * 5-7",
    "0 0 * * Sat,SUN",
    "0 0 * * */2",
    "0 0 * * 0-7",
    "0 0 * * MON/2",
    "30 4 1,15 * 5",
    "0 0 13 * FRI",
    "0 6 1 * 0,6",
    "0 0 */2 * MON",
    "0 0 1-31 * MON",
    "0 0 29 2 *",
    "0 0 31 * *",
    "59 23 31 12 *",
    "0 0 1,10-12,20 * TUE-THU",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether systemd-analyze can be run; with CI=true its absence is a test failure.
fn systemd_analyze_available() -> bool {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !in_ci(),
            "systemd-analyze is not installed but CI=true: install the systemd package \
             (scripts/setup.sh must provide it)"
        );
        eprintln!("skipping: systemd-analyze is not installed (the systemd package; see scripts/setup.sh)");
    }
    found
}

/// The next elapse times `systemd-analyze calendar` reports for `value`, in UTC.
fn systemd_elapses(value: &str) -> Vec<DateTime<Utc>> {
    let out = Command::new("systemd-analyze")
        .args(["calendar", &format!("--iterations={ITERATIONS}"), value])
        .env("TZ", "UTC")
        .output()
        .expect("run systemd-analyze");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze rejected OnCalendar={value}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Next elapse: Mon 2026-11-23 02:30:00 UTC", then "Iter. #2: ..."; each may be
    // followed by an "(in UTC): ..." line when local time is not UTC, which then wins.
    let mut times: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        let Some((label, time)) = line.trim().split_once(": ") else { continue };
        let words: Vec<&str> = time.split_whitespace().collect();
        if words.len() != 4 {
            continue;
        }
        let stamp = (format!("{} {}", words[1], words[2]), words[3].to_string());
        if label == "Next elapse" || label.starts_with("Iter. #") {
            times.push(stamp);
        } else if label == "(in UTC)" {
            *times.last_mut().expect("(in UTC) follows an elapse line") = stamp;
        }
    }
    times
        .into_iter()
        .map(|(stamp, zone)| {
            assert_eq!(zone, "UTC", "systemd-analyze output for {value}:\n{stdout}");
            NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("bad time {stamp:?} from systemd-analyze: {e}"))
                .and_utc()
        })
        .collect()
}

/// systemd's next elapse times for all of `schedule`'s `OnCalendar=` values (a union), and
/// drtool's, both computed from "now"; `None` when a minute boundary passed in between.
fn both_from_now(schedule: &CronSchedule) -> Option<(Runs, Runs)> {
    let minute = TimeDelta::minutes(1);
    let before = Utc::now();
    let mut systemd: Runs = schedule.on_calendar().iter().flat_map(|v| systemd_elapses(v)).collect();
    let after = Utc::now();
    if before.duration_trunc(minute).ok()? != after.duration_trunc(minute).ok()? {
        return None;
    }
    systemd.sort();
    systemd.dedup();
    systemd.truncate(ITERATIONS);
    // All runs fall on whole minutes, so any start within the minute systemd saw as "now"
    // gives the same next runs.
    Some((systemd, schedule.upcoming(&before, ITERATIONS)))
}

#[test]
fn systemd_timers_fire_when_drtool_would() {
    if !systemd_analyze_available() {
        return;
    }
    for expr in CORPUS {
        let schedule = CronSchedule::parse(expr).unwrap_or_else(|e| panic!("{e}"));
        let calendar = schedule.on_calendar();
        let (systemd, drtool) = both_from_now(&schedule)
            .or_else(|| both_from_now(&schedule))
            .expect("two minute boundaries in a row while asking systemd-analyze");
        assert_eq!(drtool.len(), ITERATIONS, "{expr}");
        assert_eq!(systemd, drtool, "{expr} as OnCalendar={calendar:?}");
    }
}
