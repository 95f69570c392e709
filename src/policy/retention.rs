//! Retention rules: which snapshots of one group `drtool forget` keeps.
//!
//! The semantics are restic's `forget --keep-*` policy
//! (<https://restic.readthedocs.io/en/stable/060_forget.html>), so a policy
//! migrated from restic keeps the same snapshots, with these points fixed:
//!
//! - Snapshots are ordered newest first; equal times are ordered by id so the
//!   result does not depend on the order the repository listed them in.
//! - `keep_last n` keeps the `n` newest. The bucketed rules (hourly: date and
//!   hour; daily: date; weekly: ISO week-year and ISO week, Monday to Sunday;
//!   monthly; yearly) keep the newest snapshot of each of their `n` most recent
//!   buckets that hold a snapshot. `-1` means unlimited, `0` means the rule is
//!   off (restic's default for an unset flag).
//! - A bucketed rule that still has count left when it reaches the oldest
//!   snapshot keeps that one too, reason "oldest ...": restic does this since
//!   0.16 (issue #3624, documented in the note "If there are not enough
//!   snapshots to keep one for each duration related --keep-{within-,}*
//!   option, the oldest snapshot is kept additionally"). It keeps the longest
//!   history while the policy is not yet saturated.
//! - `keep_within d` keeps every snapshot strictly after `newest - d`: restic
//!   compares with `After`, so a snapshot exactly `d` older than the newest is
//!   not kept. Years, months and days are subtracted like Go's `AddDate`
//!   (see [`KeepWithin::cutoff`]), hours as exact hours.
//! - A snapshot is kept if any rule keeps it and lists every such rule.
//!
//! Deliberate differences from restic: buckets are computed in UTC, not the
//! machine's local time, so the result is the same on every host and a DST
//! change never merges or splits a day. The reference for `keep_within` is the
//! newest snapshot of the group, with no clock involved; restic skips
//! snapshots dated in the future when it picks that reference, which callers
//! can do before calling [`apply`] if they want it.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};

/// The `[retention]` table of a policy. Counts: `-1` unlimited, `0` or absent
/// off. At least one rule must be set (see [`Retention::validate`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub keep_last: Option<i64>,
    pub keep_hourly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub keep_yearly: Option<i64>,
    /// restic-style duration string, e.g. "2y5m7d3h"
    pub keep_within: Option<String>,
    /// What the rules apply to separately (see [`crate::policy::group`]);
    /// absent: host and name. Not a rule: it alone keeps nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<crate::policy::group::GroupKey>>,
}

/// What is wrong with a `keep_within` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithinProblem {
    Empty,
    Negative,
    Fraction,
    ExpectedNumber { found: char },
    MissingUnit { number: String },
    UnknownUnit { unit: char },
    RepeatedUnit { unit: char },
    TooLarge { number: String },
}

impl fmt::Display for WithinProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "it is empty"),
            Self::Negative => write!(f, "negative durations are not allowed"),
            Self::Fraction => write!(f, "fractions are not allowed; use a smaller unit (36h, not 1.5d)"),
            Self::ExpectedNumber { found } => write!(f, "expected a number, found {found:?}"),
            Self::MissingUnit { number } => write!(f, "the number {number} has no unit"),
            Self::UnknownUnit { unit } => write!(f, "unknown unit {unit:?} (weeks are written as days, e.g. 7d)"),
            Self::RepeatedUnit { unit } => write!(f, "the unit {unit:?} appears twice"),
            Self::TooLarge { number } => write!(f, "{number} is too large (at most {})", i32::MAX),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RetentionError {
    #[error(
        "retention has no rule, which would forget every snapshot: set at least one of keep_last, \
         keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly (a count, -1 for unlimited) \
         or keep_within (a duration like \"30d\")"
    )]
    NoRules,
    #[error("{rule} = {value} is invalid: expected a count of 0 or more, or -1 for unlimited")]
    InvalidCount { rule: &'static str, value: i64 },
    #[error(
        "keep_within {input:?} is invalid: {problem}; expected a duration in years, months, days \
         and hours, like \"2y5m7d3h\" or \"30d\""
    )]
    InvalidWithin { input: String, problem: WithinProblem },
    #[error("keep_within {input:?} is zero, which keeps nothing: give a longer duration, or remove keep_within")]
    ZeroWithin { input: String },
    #[error("group_by: {0}")]
    GroupBy(#[from] crate::policy::group::GroupByError),
}

impl Retention {
    fn counts(&self) -> [(&'static str, Option<i64>); 6] {
        [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        ]
    }

    /// Errors: no rule at all (refuse to forget everything, like restic),
    /// counts < -1 (-1 = unlimited, like restic), bad or zero keep_within.
    pub fn validate(&self) -> Result<(), RetentionError> {
        for (rule, value) in self.counts() {
            if let Some(value) = value.filter(|v| *v < -1) {
                return Err(RetentionError::InvalidCount { rule, value });
            }
        }
        if let Some(input) = &self.keep_within
            && parse_within(input)?.is_zero()
        {
            return Err(RetentionError::ZeroWithin { input: input.clone() });
        }
        if self.is_empty() {
            return Err(RetentionError::NoRules);
        }
        self.grouping()?;
        Ok(())
    }

    /// How snapshots are grouped before the rules apply.
    pub fn grouping(&self) -> Result<crate::policy::group::GroupBy, RetentionError> {
        Ok(crate::policy::group::GroupBy::from_keys(self.group_by.as_deref())?)
    }

    /// True when no rule is set: every count absent or 0, and no keep_within.
    pub fn is_empty(&self) -> bool {
        self.keep_within.is_none() && self.counts().iter().all(|(_, v)| v.unwrap_or(0) == 0)
    }
}

/// A parsed restic-style duration: years, months, days, hours.
/// [`parse_within`] only produces non-negative fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepWithin {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl KeepWithin {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The instant `self` before `newest`; `None` when it falls before the
    /// earliest representable date (then every snapshot is within).
    ///
    /// Matches Go's `t.AddDate(-y, -m, -d).Add(-h hours)` as restic uses it:
    /// the month is shifted first, and a day past the end of the shifted month
    /// overflows into the next one instead of being clamped, so "1m" before
    /// March 31 is March 3 (or 2 in leap years), not February 28.
    pub fn cutoff(&self, newest: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let date = newest.date_naive();
        let months = i64::from(date.year()) * 12 + i64::from(date.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(months.div_euclid(12)).ok()?;
        let month = u32::try_from(months.rem_euclid(12)).ok()? + 1;
        // Counting days from the first of the month is what makes overflow roll
        // into the following month, as in Go's time.Date normalisation.
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let day = first.checked_add_signed(TimeDelta::try_days(i64::from(date.day0()) - i64::from(self.days))?)?;
        let at = day.and_time(newest.time()).and_utc();
        at.checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)
    }
}

impl fmt::Display for KeepWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return write!(f, "0h");
        }
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Parses "2y5m7d3h": whole non-negative numbers, each followed by one of
/// y, m, d, h, in any order, each unit at most once. Surrounding whitespace
/// is ignored, as restic does. Unlike restic, a repeated unit is an error
/// (restic silently keeps the last one).
pub fn parse_within(s: &str) -> Result<KeepWithin, RetentionError> {
    let fail = |problem| RetentionError::InvalidWithin { input: s.to_string(), problem };
    let mut chars = s.trim().chars().peekable();
    if chars.peek().is_none() {
        return Err(fail(WithinProblem::Empty));
    }
    let mut out = KeepWithin::default();
    let mut seen = [false; 4];
    while let Some(&first) = chars.peek() {
        let mut number = String::new();
        while let Some(c) = chars.next_if(char::is_ascii_digit) {
            number.push(c);
        }
        if number.is_empty() {
            return Err(fail(match first {
                '-' => WithinProblem::Negative,
                found => WithinProblem::ExpectedNumber { found },
            }));
        }
        let unit = match chars.next() {
            None => return Err(fail(WithinProblem::MissingUnit { number })),
            Some('.' | ',') => return Err(fail(WithinProblem::Fraction)),
            Some(unit) => unit,
        };
        let (slot, index) = match unit {
            'y' => (&mut out.years, 0),
            'm' => (&mut out.months, 1),
            'd' => (&mut out.days, 2),
            'h' => (&mut out.hours, 3),
            unit => return Err(fail(WithinProblem::UnknownUnit { unit })),
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err(fail(WithinProblem::RepeatedUnit { unit }));
        }
        // Only digits were collected, so parsing fails only by overflow.
        *slot = number.parse().map_err(|_| fail(WithinProblem::TooLarge { number: number.clone() }))?;
    }
    Ok(out)
}

/// One snapshot offered to [`apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub time: DateTime<Utc>,
}

/// A snapshot to keep, with every rule that keeps it, e.g. "last snapshot",
/// "daily snapshot (2026-11-20)", "weekly snapshot (2026-W47)",
/// "oldest yearly snapshot (2023)", "within 30d of the newest".
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<String>,
}

/// The outcome for one group; both lists are newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    pub keep: Vec<Kept>,
    pub remove: Vec<String>,
}

#[derive(Clone, Copy)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
        }
    }

    /// The bucket a snapshot falls in, as a sortable key and a label. For
    /// `Last` every snapshot is its own bucket, keyed by its position.
    fn bucket(self, time: DateTime<Utc>, position: usize) -> ((i64, u32, u32, u32), String) {
        let (y, m, d, h) = (i64::from(time.year()), time.month(), time.day(), time.hour());
        match self {
            Self::Last => ((position as i64, 0, 0, 0), String::new()),
            Self::Hourly => ((y, m, d, h), time.format("%Y-%m-%d %H:00").to_string()),
            Self::Daily => ((y, m, d, 0), time.format("%Y-%m-%d").to_string()),
            Self::Weekly => {
                // ISO week-year, not the calendar year: 2025-12-29 is in 2026-W01.
                let week = time.iso_week();
                ((i64::from(week.year()), week.week(), 0, 0), format!("{}-W{:02}", week.year(), week.week()))
            }
            Self::Monthly => ((y, m, 0, 0), time.format("%Y-%m").to_string()),
            Self::Yearly => ((y, 0, 0, 0), time.format("%Y").to_string()),
        }
    }
}

/// The running state of one count rule while walking newest to oldest.
struct Counter {
    period: Period,
    left: i64,
    last_bucket: Option<(i64, u32, u32, u32)>,
}

impl Counter {
    /// The reason this rule keeps the snapshot, if it does.
    fn offer(&mut self, time: DateTime<Utc>, position: usize, oldest: bool) -> Option<String> {
        if self.left == 0 {
            return None;
        }
        let (key, label) = self.period.bucket(time, position);
        let same_bucket = self.last_bucket == Some(key);
        if same_bucket && !oldest {
            return None;
        }
        self.last_bucket = Some(key);
        if self.left > 0 {
            self.left -= 1;
        }
        let prefix = if same_bucket { "oldest " } else { "" };
        Some(match self.period {
            Period::Last => format!("{prefix}last snapshot"),
            p => format!("{prefix}{} snapshot ({label})", p.name()),
        })
    }
}

/// Apply to one group of snapshots (the caller groups by snapshot name).
/// Validates `rules` first, so an empty policy never removes anything.
pub fn apply(rules: &Retention, snapshots: &[Candidate]) -> Result<Decision, RetentionError> {
    rules.validate()?;
    let within = rules.keep_within.as_deref().map(parse_within).transpose()?;
    let mut order: Vec<&Candidate> = snapshots.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(b.id)));
    let mut decision = Decision { keep: Vec::new(), remove: Vec::new() };
    let Some(newest) = order.first().map(|c| c.time) else {
        return Ok(decision);
    };
    // Outer None: no within rule. Inner None: the cutoff predates every
    // representable time, so everything is within.
    let cutoff = within.map(|w| (w, w.cutoff(newest)));
    let mut counters: Vec<Counter> = [
        (Period::Last, rules.keep_last),
        (Period::Hourly, rules.keep_hourly),
        (Period::Daily, rules.keep_daily),
        (Period::Weekly, rules.keep_weekly),
        (Period::Monthly, rules.keep_monthly),
        (Period::Yearly, rules.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(period, n)| n.filter(|n| *n != 0).map(|left| Counter { period, left, last_bucket: None }))
    .collect();
    let oldest_position = order.len() - 1;
    for (position, snapshot) in order.iter().enumerate() {
        let mut reasons = Vec::new();
        if let Some((w, limit)) = &cutoff
            && limit.is_none_or(|t| snapshot.time > t)
        {
            reasons.push(format!("within {w} of the newest"));
        }
        for counter in &mut counters {
            reasons.extend(counter.offer(snapshot.time, position, position == oldest_position));
        }
        if reasons.is_empty() {
            decision.remove.push(snapshot.id.to_string());
        } else {
            decision.keep.push(Kept { id: snapshot.id.to_string(), reasons });
        }
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    // Snapshot ids are their times, "%Y-%m-%dT%H:%M" in UTC, so expectations
    // read as timestamps and sort chronologically as strings.
    fn t(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap().and_utc()
    }

    fn id(time: DateTime<Utc>) -> String {
        time.format("%Y-%m-%dT%H:%M").to_string()
    }

    fn ids(list: &str) -> Vec<String> {
        list.split_whitespace().map(String::from).collect()
    }

    /// Rules written as TOML lines separated by ';', as in a policy file.
    fn rules(spec: &str) -> Retention {
        toml::from_str(&spec.replace(';', "\n")).unwrap()
    }

    /// The hourly :30 snapshot ids from `from` to `to`, both included.
    fn hours(from: &str, to: &str) -> Vec<String> {
        let (mut time, mut out) = (t(from), Vec::new());
        while time <= t(to) {
            out.push(id(time));
            time += TimeDelta::hours(1);
        }
        out
    }

    /// Hourly at :30 from 2023-06-15T00:30 (a partial first year) to Sunday
    /// 2026-03-15T23:30, except: ISO week 2026-W09 (Feb 23 to Mar 1) missing,
    /// 2026-03-10 missing, 2026-03-14 only until 11:30, and a second snapshot
    /// at 2026-03-15T22:50 in the 22h hour.
    fn history() -> Vec<String> {
        let mut out = hours("2023-06-15T00:30", "2026-03-15T23:30");
        out.retain(|i| {
            let day = &i[..10];
            !(day == "2026-03-10"
                || ("2026-02-23"..="2026-03-01").contains(&day)
                || (day == "2026-03-14" && i.as_str() > "2026-03-14T12"))
        });
        out.push("2026-03-15T22:50".into());
        // Scrambled, so that apply's own ordering is what is tested.
        out.reverse();
        out.rotate_left(5000);
        out
    }

    fn run(rules: &Retention, ids: &[String]) -> Decision {
        let candidates: Vec<Candidate> = ids.iter().map(|i| Candidate { id: i, time: t(i) }).collect();
        apply(rules, &candidates).unwrap()
    }

    fn kept(d: &Decision) -> Vec<String> {
        d.keep.iter().map(|k| k.id.clone()).collect()
    }

    fn reasons<'a>(d: &'a Decision, id: &str) -> Vec<&'a str> {
        let k = d.keep.iter().find(|k| k.id == id).unwrap_or_else(|| panic!("{id} not kept"));
        k.reasons.iter().map(String::as_str).collect()
    }

    #[test]
    fn table_over_synthetic_history() {
        let mar15 = [hours("2026-03-15T00:30", "2026-03-15T23:30"), ids("2026-03-15T22:50")].concat();
        let mut hourly48 = [hours("2026-03-13T12:30", "2026-03-14T11:30"), mar15.clone()].concat();
        hourly48.retain(|i| i != "2026-03-15T22:30");
        let daily7 = ids("2026-03-15T23:30 2026-03-14T11:30 2026-03-13T23:30 2026-03-12T23:30 2026-03-11T23:30
                          2026-03-09T23:30 2026-03-08T23:30");
        let weekly4 = ids("2026-03-15T23:30 2026-03-08T23:30 2026-02-22T23:30 2026-02-15T23:30");
        // 2026-W01 runs from Monday 2025-12-29 to Sunday 2026-01-04.
        let weekly12 = [
            weekly4.clone(),
            ids("2026-02-08T23:30 2026-02-01T23:30 2026-01-25T23:30 2026-01-18T23:30 2026-01-11T23:30
                 2026-01-04T23:30 2025-12-28T23:30 2025-12-21T23:30"),
        ]
        .concat();
        let monthly12 = ids("2026-03-15T23:30 2026-02-22T23:30 2026-01-31T23:30 2025-12-31T23:30 2025-11-30T23:30
                             2025-10-31T23:30 2025-09-30T23:30 2025-08-31T23:30 2025-07-31T23:30 2025-06-30T23:30
                             2025-05-31T23:30 2025-04-30T23:30");
        let yearly3 = ids("2026-03-15T23:30 2025-12-31T23:30 2024-12-31T23:30");
        let yearly4 = [yearly3.clone(), ids("2023-12-31T23:30")].concat();
        // Count left at the oldest snapshot: restic keeps it too.
        let yearly_all = [yearly4.clone(), ids("2023-06-15T00:30")].concat();
        let mut daily_all = ids("2023-06-15T00:30 2026-03-14T11:30");
        daily_all.extend(hours("2023-06-15T23:30", "2026-03-15T23:30").into_iter().step_by(24).filter(|i| {
            let day = &i[..10];
            !(day == "2026-03-10" || day == "2026-03-14" || ("2026-02-23"..="2026-03-01").contains(&day))
        }));
        let within_2d = [hours("2026-03-14T00:30", "2026-03-14T11:30"), mar15.clone()].concat();
        let since_feb = |from: &str| {
            let mut v = [hours(from, "2026-02-22T23:30"), hours("2026-03-02T00:30", "2026-03-09T23:30")].concat();
            v.extend([hours("2026-03-11T00:30", "2026-03-14T11:30"), mar15.clone()].concat());
            v
        };
        let mut combo = [daily7.clone(), weekly4.clone(), monthly12.clone(), yearly_all.clone()].concat();
        combo.sort();
        combo.dedup();
        let history = history();
        let cases: Vec<(&str, &str, Vec<String>, usize)> = vec![
            ("last 3", "keep_last = 3", ids("2026-03-15T23:30 2026-03-15T22:50 2026-03-15T22:30"), 3),
            ("last unlimited", "keep_last = -1", history.clone(), 23917),
            ("hourly 48 across the half-day gap", "keep_hourly = 48", hourly48, 48),
            ("daily 7 across a missing day", "keep_daily = 7", daily7, 7),
            ("daily unlimited keeps the oldest too", "keep_daily = -1", daily_all, 998),
            ("weekly 4 across a missing week", "keep_weekly = 4", weekly4, 4),
            ("weekly 12 across New Year", "keep_weekly = 12", weekly12, 12),
            ("monthly 12", "keep_monthly = 12", monthly12, 12),
            ("yearly 3", "keep_yearly = 3", yearly3, 3),
            ("yearly 4 (partial first year)", "keep_yearly = 4", yearly4, 4),
            ("yearly 5 keeps the oldest", "keep_yearly = 5", yearly_all.clone(), 5),
            ("yearly unlimited", "keep_yearly = -1", yearly_all, 5),
            ("within 2d excludes 03-13T23:30", "keep_within = '2d'", within_2d, 37),
            ("within 1d12h excludes 03-14T11:30", "keep_within = '1d12h'", mar15.clone(), 25),
            ("within 1m excludes 02-15T23:30", "keep_within = '1m'", since_feb("2026-02-16T00:30"), 469),
            ("within 1y2m excludes 2025-01-15T23:30", "keep_within = '1y2m'", since_feb("2025-01-16T00:30"), 9973),
            ("d7 w4 m12 y-1", "keep_daily = 7; keep_weekly = 4; keep_monthly = 12; keep_yearly = -1", combo, 22),
        ];
        for (name, spec, mut expected, len) in cases {
            let decision = run(&rules(spec), &history);
            expected.sort_by(|a, b| b.cmp(a));
            assert_eq!(expected.len(), len, "{name}: hand count");
            assert_eq!(kept(&decision), expected, "{name}");
            assert_eq!(decision.keep.len() + decision.remove.len(), history.len(), "{name}");
            assert!(decision.remove.windows(2).all(|w| w[0] > w[1]), "{name}: remove is newest first");
        }
    }

    #[test]
    fn reasons_of_combination() {
        let d = run(&rules("keep_daily = 7; keep_weekly = 4; keep_monthly = 12; keep_yearly = -1"), &history());
        let newest =
            "daily snapshot (2026-03-15)|weekly snapshot (2026-W11)|monthly snapshot (2026-03)|yearly snapshot (2026)";
        assert_eq!(reasons(&d, "2026-03-15T23:30"), newest.split('|').collect::<Vec<_>>());
        assert_eq!(reasons(&d, "2026-03-14T11:30"), ["daily snapshot (2026-03-14)"]);
        assert_eq!(reasons(&d, "2026-03-08T23:30"), ["daily snapshot (2026-03-08)", "weekly snapshot (2026-W10)"]);
        assert_eq!(reasons(&d, "2026-02-22T23:30"), ["weekly snapshot (2026-W08)", "monthly snapshot (2026-02)"]);
        assert_eq!(reasons(&d, "2026-02-15T23:30"), ["weekly snapshot (2026-W07)"]);
        assert_eq!(reasons(&d, "2025-12-31T23:30"), ["monthly snapshot (2025-12)", "yearly snapshot (2025)"]);
        assert_eq!(reasons(&d, "2025-04-30T23:30"), ["monthly snapshot (2025-04)"]);
        assert_eq!(reasons(&d, "2023-12-31T23:30"), ["yearly snapshot (2023)"]);
        assert_eq!(reasons(&d, "2023-06-15T00:30"), ["oldest yearly snapshot (2023)"]);
    }

    #[test]
    fn reasons_of_last_hourly_within_and_iso_year() {
        let d = run(&rules("keep_last = 2; keep_hourly = 3; keep_within = '2d'"), &history());
        assert_eq!(d.keep.len(), 37);
        let w = "within 2d of the newest";
        assert_eq!(reasons(&d, "2026-03-15T23:30"), [w, "last snapshot", "hourly snapshot (2026-03-15 23:00)"]);
        assert_eq!(reasons(&d, "2026-03-15T22:50"), [w, "last snapshot", "hourly snapshot (2026-03-15 22:00)"]);
        assert_eq!(reasons(&d, "2026-03-15T22:30"), [w]);
        assert_eq!(reasons(&d, "2026-03-15T21:30"), [w, "hourly snapshot (2026-03-15 21:00)"]);

        let d = run(&rules("keep_weekly = 12"), &history());
        assert_eq!(reasons(&d, "2026-01-04T23:30"), ["weekly snapshot (2026-W01)"]);
        assert_eq!(reasons(&d, "2025-12-28T23:30"), ["weekly snapshot (2025-W52)"]);
        assert!(d.remove.contains(&"2025-12-31T23:30".to_string()), "Dec 31 2025 is in 2026-W01");
    }

    #[test]
    fn weekly_uses_iso_week_year_at_new_year() {
        // Monday 2024-12-30 and Thursday 2025-01-02 are both in 2025-W01.
        let d = run(&rules("keep_weekly = 2"), &ids("2024-12-28T12:00 2024-12-30T12:00 2025-01-02T12:00"));
        assert_eq!(kept(&d), ["2025-01-02T12:00", "2024-12-28T12:00"]);
        assert_eq!(reasons(&d, "2025-01-02T12:00"), ["weekly snapshot (2025-W01)"]);
        assert_eq!(reasons(&d, "2024-12-28T12:00"), ["weekly snapshot (2024-W52)"]);
        assert_eq!(d.remove, ["2024-12-30T12:00"]);
    }

    #[test]
    fn within_months_overflow_like_go_add_date() {
        // 2025-03-31 minus 1m is "2025-02-31", which Go normalises to 03-03.
        let daily: Vec<String> = hours("2025-02-25T12:30", "2025-03-31T12:30").into_iter().step_by(24).collect();
        let d = run(&rules("keep_within = '1m'"), &daily);
        assert_eq!(d.keep.len(), 28);
        assert_eq!(d.keep.last().map(|k| k.id.as_str()), Some("2025-03-04T12:30"));
        assert_eq!(d.remove[0], "2025-03-03T12:30");

        let cutoff = |w: &str, newest: &str| parse_within(w).unwrap().cutoff(t(newest)).map(id);
        assert_eq!(cutoff("1m", "2024-03-31T12:00").as_deref(), Some("2024-03-02T12:00"));
        assert_eq!(cutoff("1y", "2024-02-29T12:00").as_deref(), Some("2023-03-01T12:00"));
        assert_eq!(cutoff("10d", "2026-03-05T10:00").as_deref(), Some("2026-02-23T10:00"));
        assert_eq!(cutoff("1y2m7d3h", "2026-03-15T23:30").as_deref(), Some("2025-01-08T20:30"));
        assert_eq!(cutoff("13m", "2026-01-15T00:00").as_deref(), Some("2024-12-15T00:00"));
        assert_eq!(cutoff("2147483647y", "2026-01-15T00:00"), None);
    }

    #[test]
    fn huge_within_keeps_everything() {
        let history = ids("2026-01-01T00:00 1970-01-01T00:00");
        assert_eq!(run(&rules("keep_within = '2147483647y'"), &history).keep.len(), 2);
        assert_eq!(run(&rules("keep_within = '2147483647h'"), &history).keep.len(), 2);
    }

    #[test]
    fn equal_times_are_ordered_by_id() {
        let time = t("2026-01-01T00:00");
        let snaps = [Candidate { id: "b", time }, Candidate { id: "c", time }, Candidate { id: "a", time }];
        let d = apply(&rules("keep_last = 1"), &snaps).unwrap();
        assert_eq!(kept(&d), ["a"]);
        assert_eq!(d.remove, ["b", "c"]);
        // "c" sorts last, so it is the oldest, kept while the daily count lasts.
        let d = apply(&rules("keep_daily = -1"), &snaps).unwrap();
        assert_eq!(kept(&d), ["a", "c"]);
        assert_eq!(reasons(&d, "c"), ["oldest daily snapshot (2026-01-01)"]);
    }

    #[test]
    fn no_snapshots_is_an_empty_decision() {
        assert_eq!(apply(&rules("keep_within = '1d'"), &[]), Ok(Decision { keep: vec![], remove: vec![] }));
    }

    #[test]
    fn validation_errors() {
        assert_eq!(Retention::default().validate(), Err(RetentionError::NoRules));
        assert!(Retention::default().is_empty());
        let zeros = rules("keep_last = 0; keep_daily = 0");
        assert!(zeros.is_empty());
        assert_eq!(zeros.validate(), Err(RetentionError::NoRules));
        assert_eq!(apply(&zeros, &[Candidate { id: "a", time: t("2026-01-01T00:00") }]), Err(RetentionError::NoRules));
        assert_eq!(rules("keep_last = -1").validate(), Ok(()));
        let bad = rules("keep_daily = 7; keep_weekly = -2");
        assert_eq!(bad.validate(), Err(RetentionError::InvalidCount { rule: "keep_weekly", value: -2 }));
        assert_eq!(rules("keep_within = '0d'").validate(), Err(RetentionError::ZeroWithin { input: "0d".into() }));
        assert!(matches!(rules("keep_within = '5x'").validate(), Err(RetentionError::InvalidWithin { .. })));
        assert!(!rules("keep_within = '5x'").is_empty());
        let msg = RetentionError::InvalidCount { rule: "keep_weekly", value: -2 }.to_string();
        assert_eq!(msg, "keep_weekly = -2 is invalid: expected a count of 0 or more, or -1 for unlimited");
        assert!(RetentionError::NoRules.to_string().contains("forget every snapshot"));
        let typo = toml::from_str::<Retention>("keep_dayly = 7").unwrap_err().to_string();
        assert!(typo.contains("keep_dayly"), "{typo}");
    }

    #[test]
    fn parse_within_accepts_restic_durations() {
        let w = |years, months, days, hours| KeepWithin { years, months, days, hours };
        assert_eq!(parse_within("2y5m7d3h"), Ok(w(2, 5, 7, 3)));
        assert_eq!(parse_within("3h1d"), Ok(w(0, 0, 1, 3)));
        assert_eq!(parse_within(" 30d "), Ok(w(0, 0, 30, 0)));
        assert_eq!(parse_within("0d"), Ok(w(0, 0, 0, 0)));
        assert_eq!(w(1, 2, 0, 3).to_string(), "1y2m3h");
    }

    #[test]
    fn parse_within_errors() {
        use WithinProblem::*;
        let cases = [
            ("", Empty),
            ("  ", Empty),
            ("5x", UnknownUnit { unit: 'x' }),
            ("1w", UnknownUnit { unit: 'w' }),
            ("-1d", Negative),
            ("1.5d", Fraction),
            ("5", MissingUnit { number: "5".into() }),
            ("d", ExpectedNumber { found: 'd' }),
            ("1d+2h", ExpectedNumber { found: '+' }),
            ("1d2d", RepeatedUnit { unit: 'd' }),
            ("2147483648h", TooLarge { number: "2147483648".into() }),
            ("99999999999999999999999y", TooLarge { number: "99999999999999999999999".into() }),
        ];
        for (input, problem) in cases {
            let want = RetentionError::InvalidWithin { input: input.into(), problem };
            assert_eq!(parse_within(input), Err(want), "{input:?}");
        }
        assert_eq!(
            parse_within("1.5d").unwrap_err().to_string(),
            "keep_within \"1.5d\" is invalid: fractions are not allowed; use a smaller unit (36h, not 1.5d); \
             expected a duration in years, months, days and hours, like \"2y5m7d3h\" or \"30d\""
        );
    }
}
