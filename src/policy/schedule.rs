//! Policy schedules: standard 5-field crontab expressions with Vixie cron's semantics.
//!
//! drtool runs a schedule three ways: its own daemon (`next_after`), a crontab line
//! (Debian's cron is Vixie cron) and systemd timers (`OnCalendar=`). All three must fire at
//! the same minutes, so the expression is parsed once into value sets and every output is
//! generated from those sets rather than by passing the user's text through.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone};

/// Appended to every parse error so the user sees the accepted form next to the problem.
const EXPECTED: &str = "expected 5 fields: minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\"";

/// A parsed 5-field cron expression, e.g. `30 2 * * *`.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    text: String,
    fields: Fields,
    /// The `cron` crate ANDs day-of-month with day-of-week, so Vixie's OR rule is
    /// expressed as two crate schedules whose union is this schedule.
    computed: Vec<cron::Schedule>,
}

/// A schedule that cannot be parsed; the message says what is wrong and what is expected.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ScheduleError(pub String);

#[derive(Debug, Clone, PartialEq)]
struct Fields {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    /// Bit n is set when value n matches. Day-of-week: 0 = Sunday, 7 is folded into 0.
    bits: u64,
    /// `Some(step)` when the text starts with `*` (`*` alone is step 1). Vixie decides the
    /// day-of-month/day-of-week rule on that first character alone, so it must survive
    /// normalisation: `*/2` is "unrestricted" to Vixie although it matches only odd days.
    star_step: Option<u32>,
}

/// The syntax of one field: its name in messages, its range and its names (value = min + index).
struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Spec = Spec { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Spec = Spec { name: "hour", min: 0, max: 23, names: &[] };
const DOM: Spec = Spec { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
};
// Vixie accepts 0-7 with both 0 and 7 meaning Sunday.
const DOW: Spec =
    Spec { name: "day-of-week", min: 0, max: 7, names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] };

const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl Spec {
    fn is_dow(&self) -> bool {
        self.max == 7
    }

    fn fold(&self, bits: u64) -> u64 {
        if self.is_dow() && bits & (1 << 7) != 0 { (bits & !(1 << 7)) | 1 } else { bits }
    }

    fn range_bits(&self, lo: u32, hi: u32, step: u32) -> u64 {
        let bits = (lo..=hi).step_by(step as usize).fold(0u64, |b, v| b | 1 << v);
        self.fold(bits)
    }

    fn full(&self) -> u64 {
        self.range_bits(self.min, self.max, 1)
    }

    fn value(&self, text: &str) -> Result<u32, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<u32>() {
                Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
                _ => Err(format!("{} {text} is out of range {}-{}", self.name, self.min, self.max)),
            };
        }
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.min + i as u32);
        }
        let what = match self.names.first() {
            Some(first) => {
                format!("a number {}-{} or a name {first}-{}", self.min, self.max, self.names[self.names.len() - 1])
            }
            None => format!("a number {}-{}", self.min, self.max),
        };
        Err(format!("{} \"{text}\" is not {what}{}", self.name, quartz_hint(text)))
    }

    fn step(&self, text: &str) -> Result<u32, String> {
        // A step as large as the field's span can only ever hit its first value: a mistake.
        let limit = self.max - self.min;
        match text.parse::<u32>() {
            Ok(s) if text.bytes().all(|b| b.is_ascii_digit()) && (1..=limit).contains(&s) => Ok(s),
            _ => Err(format!("{} step \"{text}\" must be a number 1-{limit}{}", self.name, quartz_hint(text))),
        }
    }

    fn parse(&self, text: &str) -> Result<Field, String> {
        let mut bits = 0u64;
        let mut star_step = None;
        for (i, item) in text.split(',').enumerate() {
            if item.is_empty() {
                return Err(format!("{} \"{text}\" has an empty list item", self.name));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(self.step(step)?)),
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                if i == 0 {
                    star_step = Some(step.unwrap_or(1));
                }
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (lo, hi) = (self.value(a)?, self.value(b)?);
                if lo > hi {
                    return Err(self.reversed(range));
                }
                (lo, hi)
            } else {
                let v = self.value(range)?;
                // `5/15` means 5-59/15 (cronie); Debian's cron lacks it, so crontab() expands it.
                (v, if step.is_some() { self.max } else { v })
            };
            bits |= self.range_bits(lo, hi, step.unwrap_or(1));
        }
        Ok(Field { bits, star_step })
    }

    fn reversed(&self, range: &str) -> String {
        let hint = if self.is_dow() { "; Sunday is 0 or 7, e.g. FRI-7 or 5-7" } else { "" };
        format!("{} range {range} is reversed (the first value must not exceed the second{hint})", self.name)
    }
}

/// Hints for syntax from Quartz/Spring-style cron that Vixie cron does not have.
fn quartz_hint(text: &str) -> &'static str {
    if text.contains('?') {
        " (\"?\" is not cron syntax; use *)"
    } else if text.contains('#') {
        " (\"#\" nth-weekday is not supported by cron)"
    } else if text.eq_ignore_ascii_case("L")
        || (text.to_ascii_uppercase().ends_with(['L', 'W']) && text.starts_with(|c: char| c.is_ascii_digit()))
    {
        " (\"L\" and \"W\" are not supported by cron)"
    } else {
        ""
    }
}

fn expand_macro(text: &str) -> Result<&'static str, String> {
    match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        "@reboot" => Err("@reboot is not a schedule: drtool runs policies at times, not at boot".into()),
        _ => Err(format!(
            "unknown macro {text} (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
        )),
    }
}

fn parse_fields(text: &str) -> Result<Fields, String> {
    let body = if text.starts_with('@') { expand_macro(text)? } else { text };
    let parts: Vec<&str> = body.split_whitespace().collect();
    match parts.len() {
        0 => return Err("it is empty".into()),
        5 => {}
        6 | 7 => {
            return Err(format!("it has {} fields; seconds and years are not supported", parts.len()));
        }
        n => return Err(format!("it has {n} field{}", if n == 1 { "" } else { "s" })),
    }
    let fields = Fields {
        minute: MINUTE.parse(parts[0])?,
        hour: HOUR.parse(parts[1])?,
        dom: DOM.parse(parts[2])?,
        month: MONTH.parse(parts[3])?,
        dow: DOW.parse(parts[4])?,
    };
    Ok(fields)
}

impl Fields {
    /// (day-of-month, day-of-week) pairs, each ANDed, whose union is the schedule's days.
    /// Vixie ORs the two fields unless either one's text starts with `*`.
    fn day_pairs(&self) -> Vec<(&Field, &Field)> {
        if self.dom.star_step.is_some() || self.dow.star_step.is_some() {
            vec![(&self.dom, &self.dow)]
        } else if self.dom.bits == DOM.full() || self.dow.bits == DOW.full() {
            // A full set on either side of the OR matches every day, e.g. `1-31` with `MON`.
            vec![(&FULL_DOM, &FULL_DOW)]
        } else {
            vec![(&self.dom, &FULL_DOW), (&FULL_DOM, &self.dow)]
        }
    }
}

const FULL_DOM: Field = Field { bits: 0xFFFF_FFFE, star_step: Some(1) };
const FULL_DOW: Field = Field { bits: 0x7F, star_step: Some(1) };

fn values(bits: u64) -> Vec<u32> {
    (0..64).filter(|v| bits >> v & 1 == 1).collect()
}

/// `values` (sorted) as a list, runs of three or more written `first{sep}last`.
fn list(values: &[u32], sep: &str, show: impl Fn(u32) -> String) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}{sep}{}", show(values[i]), show(values[j])));
            i = j + 1;
        } else {
            parts.push(show(values[i]));
            i += 1;
        }
    }
    parts.join(",")
}

/// The field for the `cron` crate: numbers (day-of-week as names, since the crate counts
/// 1 = Sunday) or `*` for a full set, which the crate treats as unrestricted.
fn crate_field(field: &Field, spec: &Spec) -> String {
    if field.bits == spec.full() {
        "*".into()
    } else if spec.is_dow() {
        list(&values(field.bits), "-", |v| SYSTEMD_DAYS[v as usize].into())
    } else {
        list(&values(field.bits), "-", |v| v.to_string())
    }
}

/// The field for a crontab line, keeping a leading `*` (see `Field::star_step`).
fn crontab_field(field: &Field, spec: &Spec) -> String {
    let (head, covered) = match field.star_step {
        Some(1) => return "*".into(),
        Some(step) => (Some(format!("*/{step}")), spec.range_bits(spec.min, spec.max, step)),
        None => (None, 0),
    };
    let rest = list(&values(field.bits & !covered), "-", |v| v.to_string());
    match head {
        Some(head) if rest.is_empty() => head,
        Some(head) => format!("{head},{rest}"),
        None => rest,
    }
}

/// The component for `OnCalendar=`: two-digit numbers or `*` for a full set.
fn systemd_field(field: &Field, spec: &Spec) -> String {
    if field.bits == spec.full() { "*".into() } else { list(&values(field.bits), "..", |v| format!("{v:02}")) }
}

fn systemd_weekdays(dow: &Field) -> String {
    // systemd ranges run Mon..Sun, so Sunday sorts last (as 7).
    let mut days: Vec<u32> = values(dow.bits).into_iter().map(|d| if d == 0 { 7 } else { d }).collect();
    days.sort_unstable();
    list(&days, "..", |d| SYSTEMD_DAYS[(d % 7) as usize].into())
}

impl CronSchedule {
    /// Parses a 5-field expression or a macro (`@daily`, ...), rejecting anything
    /// Debian's cron would not run as written (seconds, `?`, `L`, `#`, `@reboot`, ...).
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let fail = |problem: String| ScheduleError(format!("invalid schedule \"{expr}\": {problem} ({EXPECTED})"));
        let text = expr.trim();
        let fields = parse_fields(text).map_err(fail)?;
        let computed = fields
            .day_pairs()
            .into_iter()
            .map(|(dom, dow)| {
                let source = format!(
                    "0 {} {} {} {} {}",
                    crate_field(&fields.minute, &MINUTE),
                    crate_field(&fields.hour, &HOUR),
                    crate_field(dom, &DOM),
                    crate_field(&fields.month, &MONTH),
                    crate_field(dow, &DOW),
                );
                cron::Schedule::from_str(&source)
                    .map_err(|e| fail(format!("internal translation \"{source}\" was rejected: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = CronSchedule { text: text.to_string(), fields, computed };
        // Vixie accepts e.g. `0 0 30 2 *`, which never runs; a policy like that is a typo.
        // Every possible month/day combination recurs within 28 years, far inside the
        // crate's range (to 2100).
        let epoch = chrono::Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if epoch.and_then(|t| schedule.next_after(&t)).is_none() {
            return Err(fail("it never runs: none of the selected months has any of the selected days".into()));
        }
        Ok(schedule)
    }

    /// The next run strictly after `after`, in `after`'s time zone (the daemon uses
    /// `chrono::Local`). `None` beyond the year 2100, the `cron` crate's limit.
    ///
    /// Across DST changes this differs from Vixie cron: times in a spring-forward gap are
    /// skipped (Vixie runs them right after the jump), and a fall-back's repeated hour runs
    /// once even for `*` minutes/hours (Vixie repeats wildcard jobs).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.computed
            .iter()
            // The crate steps in local wall-clock time: after the second of two ambiguous
            // instants (DST fall-back) it can yield the first, which is earlier; skip those.
            .filter_map(|s| s.after(after).take(4).find(|t| t > after))
            .min()
    }

    /// The next `n` runs after `after`.
    pub fn upcoming<Tz: TimeZone>(&self, after: &DateTime<Tz>, n: usize) -> Vec<DateTime<Tz>> {
        let mut runs: Vec<DateTime<Tz>> = Vec::with_capacity(n);
        while runs.len() < n {
            match self.next_after(runs.last().unwrap_or(after)) {
                Some(t) => runs.push(t),
                None => break,
            }
        }
        runs
    }

    /// systemd `OnCalendar=` values (one or two; several `OnCalendar=` lines in a timer are
    /// a union, which is how Vixie's day-of-month OR day-of-week rule is expressed).
    pub fn on_calendar(&self) -> Vec<String> {
        let f = &self.fields;
        let time = format!("{}:{}:00", systemd_field(&f.hour, &HOUR), systemd_field(&f.minute, &MINUTE));
        let month = systemd_field(&f.month, &MONTH);
        f.day_pairs()
            .into_iter()
            .map(|(dom, dow)| {
                let weekdays = if dow.bits == DOW.full() { String::new() } else { systemd_weekdays(dow) + " " };
                format!("{weekdays}*-{month}-{} {time}", systemd_field(dom, &DOM))
            })
            .collect()
    }

    /// The expression for a crontab line: five fields of numbers that Debian's (Vixie) cron
    /// reads with the same meaning, e.g. `5/15` becomes `5,20,35,50` and `MON-FRI` `1-5`.
    pub fn crontab(&self) -> String {
        let f = &self.fields;
        [
            crontab_field(&f.minute, &MINUTE),
            crontab_field(&f.hour, &HOUR),
            crontab_field(&f.dom, &DOM),
            crontab_field(&f.month, &MONTH),
            crontab_field(&f.dow, &DOW),
        ]
        .join(" ")
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for CronSchedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Duration, FixedOffset, NaiveDateTime, Timelike, Utc};

    fn utc(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc()
    }

    fn runs(expr: &str, after: &str, n: usize) -> Vec<String> {
        let schedule = CronSchedule::parse(expr).unwrap();
        let runs = schedule.upcoming(&utc(after), n);
        runs.iter().map(|t| t.format("%Y-%m-%d %H:%M").to_string()).collect()
    }

    #[test]
    fn normalised_forms() {
        let odd_days = "01,03,05,07,09,11,13,15,17,19,21,23,25,27,29,31";
        let alternate = format!("Mon *-*-{odd_days} 00:00:00");
        // (expression, crontab(), on_calendar() joined by " | ")
        let table: &[(&str, &str, &str)] = &[
            ("30 2 * * *", "30 2 * * *", "*-*-* 02:30:00"),
            (" 30  2 * * *\n", "30 2 * * *", "*-*-* 02:30:00"),
            ("0,30 9-17 * * MON-FRI", "0,30 9-17 * * 1-5", "Mon..Fri *-*-* 09..17:00,30:00"),
            ("*/15 * * * *", "*/15 * * * *", "*-*-* *:00,15,30,45:00"),
            ("1-30/5 * * * *", "1,6,11,16,21,26 * * * *", "*-*-* *:01,06,11,16,21,26:00"),
            ("5/15 * * * *", "5,20,35,50 * * * *", "*-*-* *:05,20,35,50:00"),
            ("*/20,7 * * * *", "*/20,7 * * * *", "*-*-* *:00,07,20,40:00"),
            ("0 12 * */3 *", "0 12 * */3 *", "*-01,04,07,10-* 12:00:00"),
            ("0 0 1 jan,Jul *", "0 0 1 1,7 *", "*-01,07-01 00:00:00"),
            ("0 0 1 Mar-may *", "0 0 1 3-5 *", "*-03..05-01 00:00:00"),
            ("0 0 * * sun", "0 0 * * 0", "Sun *-*-* 00:00:00"),
            ("0 0 * * 7", "0 0 * * 0", "Sun *-*-* 00:00:00"),
            ("0 0 * * 0,7", "0 0 * * 0", "Sun *-*-* 00:00:00"),
            ("0 0 * * 5-7", "0 0 * * 0,5,6", "Fri..Sun *-*-* 00:00:00"),
            ("0 0 * * Sat,SUN", "0 0 * * 0,6", "Sat,Sun *-*-* 00:00:00"),
            ("0 0 * * */2", "0 0 * * */2", "Tue,Thu,Sat,Sun *-*-* 00:00:00"),
            ("0 0 * * 0-7", "0 0 * * 0-6", "*-*-* 00:00:00"),
            ("0 0 * * MON/2", "0 0 * * 0,1,3,5", "Mon,Wed,Fri,Sun *-*-* 00:00:00"),
            ("30 4 1,15 * 5", "30 4 1,15 * 5", "*-*-01,15 04:30:00 | Fri *-*-* 04:30:00"),
            ("0 0 */2 * MON", "0 0 */2 * 1", &alternate),
            ("0 0 1-31 * MON", "0 0 1-31 * 1", "*-*-* 00:00:00"),
            ("@yearly", "0 0 1 1 *", "*-01-01 00:00:00"),
            ("@annually", "0 0 1 1 *", "*-01-01 00:00:00"),
            ("@monthly", "0 0 1 * *", "*-*-01 00:00:00"),
            ("@weekly", "0 0 * * 0", "Sun *-*-* 00:00:00"),
            ("@daily", "0 0 * * *", "*-*-* 00:00:00"),
            ("@MIDNIGHT", "0 0 * * *", "*-*-* 00:00:00"),
            ("@hourly", "0 * * * *", "*-*-* *:00:00"),
        ];
        for (expr, crontab, calendar) in table {
            let s = CronSchedule::parse(expr).unwrap();
            assert_eq!(s.crontab(), *crontab, "crontab of {expr:?}");
            assert_eq!(s.on_calendar().join(" | "), *calendar, "OnCalendar of {expr:?}");
            // The crontab form must mean the same schedule.
            let again = CronSchedule::parse(&s.crontab()).unwrap();
            assert_eq!(again.fields, s.fields, "re-parsed crontab of {expr:?}");
        }
    }

    #[test]
    fn upcoming_runs() {
        let table: &[(&str, &str, &[&str])] = &[
            // Strictly after: a start on a run time is not itself a run.
            ("30 2 * * *", "2026-03-10 02:30", &["2026-03-11 02:30", "2026-03-12 02:30"]),
            ("*/15 * * * *", "2026-03-10 23:50", &["2026-03-11 00:00", "2026-03-11 00:15"]),
            (
                "5/15 * * * *",
                "2026-03-10 10:00",
                &["2026-03-10 10:05", "2026-03-10 10:20", "2026-03-10 10:35", "2026-03-10 10:50", "2026-03-10 11:05"],
            ),
            ("0 9-17/4 * * *", "2026-03-10 10:00", &["2026-03-10 13:00", "2026-03-10 17:00", "2026-03-11 09:00"]),
            ("0 8 * * MON-FRI", "2026-03-06 12:00", &["2026-03-09 08:00", "2026-03-10 08:00"]),
            ("0 0 * * 0", "2026-03-02 00:00", &["2026-03-08 00:00", "2026-03-15 00:00"]),
            ("0 0 * * 7", "2026-03-02 00:00", &["2026-03-08 00:00", "2026-03-15 00:00"]),
            ("0 0 1 JAN,jul *", "2026-03-01 00:00", &["2026-07-01 00:00", "2027-01-01 00:00"]),
            (
                "0 0 31 * *",
                "2026-01-31 00:00",
                &["2026-03-31 00:00", "2026-05-31 00:00", "2026-07-31 00:00", "2026-08-31 00:00"],
            ),
            ("0 0 29 2 *", "2026-03-01 00:00", &["2028-02-29 00:00", "2032-02-29 00:00"]),
            ("@weekly", "2026-03-01 00:00", &["2026-03-08 00:00"]),
            ("@monthly", "2026-03-01 00:00", &["2026-04-01 00:00"]),
            ("@yearly", "2026-03-01 00:00", &["2027-01-01 00:00"]),
            ("@hourly", "2026-03-01 23:00", &["2026-03-02 00:00"]),
            // Vixie's OR: the 1st, the 15th and every Friday (June 2026 starts on a Monday).
            (
                "30 4 1,15 * 5",
                "2026-06-01 00:00",
                &[
                    "2026-06-01 04:30",
                    "2026-06-05 04:30",
                    "2026-06-12 04:30",
                    "2026-06-15 04:30",
                    "2026-06-19 04:30",
                    "2026-06-26 04:30",
                    "2026-07-01 04:30",
                    "2026-07-03 04:30",
                ],
            ),
            // `*` first in day-of-month makes it AND: Mondays that are odd days.
            (
                "0 0 */2 * MON",
                "2026-03-01 00:00",
                &["2026-03-09 00:00", "2026-03-23 00:00", "2026-04-13 00:00", "2026-04-27 00:00"],
            ),
            // OR with a full day-of-month set: every day.
            ("0 0 1-31 * MON", "2026-03-01 00:00", &["2026-03-02 00:00", "2026-03-03 00:00", "2026-03-04 00:00"]),
        ];
        for (expr, after, expected) in table {
            assert_eq!(runs(expr, after, expected.len()), *expected, "{expr:?} after {after}");
        }
    }

    #[test]
    fn sub_second_start_and_fixed_offset() {
        let s = CronSchedule::parse("30 2 * * *").unwrap();
        let just_before = utc("2026-03-10 02:29") + Duration::milliseconds(59_999);
        assert_eq!(s.next_after(&just_before), Some(utc("2026-03-10 02:30")));
        let just_after = utc("2026-03-10 02:30") + Duration::milliseconds(1);
        assert_eq!(s.next_after(&just_after), Some(utc("2026-03-11 02:30")));

        // Runs are wall-clock times in the start's zone: 02:30 at +05:30 is 21:00 UTC.
        let india = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        let start = india.with_ymd_and_hms(2026, 3, 10, 3, 0, 0).unwrap();
        let next = s.upcoming(&start, 2);
        assert_eq!(next[0], india.with_ymd_and_hms(2026, 3, 11, 2, 30, 0).unwrap());
        assert_eq!(next[0].offset(), &india);
        assert_eq!(next[0].with_timezone(&Utc), utc("2026-03-10 21:00"));
        assert_eq!(next[1].with_timezone(&Utc), utc("2026-03-11 21:00"));
    }

    #[test]
    fn rejects_with_clear_messages() {
        let exact = CronSchedule::parse("61 * * * *").unwrap_err();
        assert_eq!(
            exact.to_string(),
            "invalid schedule \"61 * * * *\": minute 61 is out of range 0-59 (expected 5 fields: \
             minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\")"
        );
        let table: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("garbage", "it has 1 field"),
            ("30 2 * *", "it has 4 fields"),
            ("0 30 2 * * *", "it has 6 fields; seconds and years are not supported"),
            ("0 30 2 * * * 2027", "it has 7 fields"),
            ("0 0 ? * MON", "day-of-month \"?\" is not a number 1-31 (\"?\" is not cron syntax; use *)"),
            ("0 0 L * *", "\"L\" and \"W\" are not supported"),
            ("0 0 15W * *", "\"L\" and \"W\" are not supported"),
            ("0 0 * * 5L", "\"L\" and \"W\" are not supported"),
            ("0 0 * * FRI#3", "\"#\" nth-weekday is not supported"),
            ("0 24 * * *", "hour 24 is out of range 0-23"),
            ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
            ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
            ("0 0 * 13 *", "month 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
            ("99999999999 * * * *", "minute 99999999999 is out of range 0-59"),
            ("5-1 * * * *", "minute range 5-1 is reversed"),
            (
                "0 0 * * FRI-SUN",
                "day-of-week range FRI-SUN is reversed (the first value must not exceed the second; Sunday is 0 or 7",
            ),
            ("*/0 * * * *", "minute step \"0\" must be a number 1-59"),
            ("*/60 * * * *", "minute step \"60\" must be a number 1-59"),
            ("*/x * * * *", "minute step \"x\" must be a number 1-59"),
            ("1,,2 * * * *", "minute \"1,,2\" has an empty list item"),
            ("abc * * * *", "minute \"abc\" is not a number 0-59"),
            ("+5 * * * *", "minute \"+5\" is not a number 0-59"),
            ("0 0 * JANUARY *", "month \"JANUARY\" is not a number 1-12 or a name JAN-DEC"),
            ("0 0 * * Monday", "day-of-week \"Monday\" is not a number 0-7 or a name SUN-SAT"),
            ("0 0 * * *-5", "day-of-week \"*\" is not a number"),
            ("0 0 30 2 *", "it never runs"),
            ("@reboot", "@reboot is not a schedule"),
            ("@every 5m", "unknown macro @every 5m"),
        ];
        for (expr, message) in table {
            let err = CronSchedule::parse(expr).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid schedule \"{expr}\": ")), "{err}");
            assert!(err.contains(message), "{expr:?}: {err}");
            assert!(err.ends_with(&format!("({EXPECTED})")), "{err}");
            assert_eq!(expr.parse::<CronSchedule>().unwrap_err().to_string(), err);
        }
    }

    #[test]
    fn text_round_trips() {
        let s: CronSchedule = " 0 4 * * mon ".parse().unwrap();
        assert_eq!(s.as_str(), "0 4 * * mon");
        assert_eq!(s.to_string(), "0 4 * * mon");
        assert_eq!(s, CronSchedule::parse("0 4 * * mon").unwrap());
        assert_ne!(s, CronSchedule::parse("0 4 * * 1").unwrap(), "text is part of identity");
        assert_eq!(FULL_DOM.bits, DOM.full());
        assert_eq!(FULL_DOW.bits, DOW.full());
    }

    /// Vixie cron's matching rule (cron.c) applied minute by minute, as a reference.
    fn vixie_matches(f: &Fields, t: NaiveDateTime) -> bool {
        let has = |field: &Field, v: u32| field.bits >> v & 1 == 1;
        let dom = has(&f.dom, t.day());
        let dow = has(&f.dow, t.weekday().num_days_from_sunday());
        let day = if f.dom.star_step.is_some() || f.dow.star_step.is_some() { dom && dow } else { dom || dow };
        has(&f.minute, t.minute()) && has(&f.hour, t.hour()) && has(&f.month, t.month()) && day
    }

    #[test]
    fn agrees_with_minute_by_minute_reference() {
        let corpus = [
            "* * * * *",
            "*/7 * * * *",
            "5/15 3-5 * * *",
            "0 0 * * *",
            "30 4 1,15 * 5",
            "0 0 */2 * MON",
            "0 0 1-31 * MON",
            "0 12 1 * 0,6",
            "15 10 * * 5-7",
            "0 0 29 2 *",
            "0 0 29 2 MON",
            "0 0 31 * *",
            "59 23 31 12 *",
            "0 0 * * */3",
            "0 0 * JAN-MAR/2 SAT",
            "0 9-17/2 */10 * 1-5",
            "0 0 13 * FRI",
            "45 1 * Feb *",
            "0 0 1,10-12,20 * TUE-THU",
        ];
        let start = utc("2026-01-01 00:00") - Duration::seconds(1);
        let end = utc("2029-01-01 00:00");
        let cap = 3000;
        for expr in corpus {
            let s = CronSchedule::parse(expr).unwrap();
            let mut expected = Vec::new();
            let mut t = start + Duration::seconds(1);
            while t < end && expected.len() < cap {
                if vixie_matches(&s.fields, t.naive_utc()) {
                    expected.push(t);
                }
                t += Duration::minutes(1);
            }
            let mut got = s.upcoming(&start, cap);
            got.retain(|t| *t < end);
            assert_eq!(got.len(), expected.len(), "{expr}");
            assert!(
                got == expected,
                "{expr}: first difference at {:?}",
                got.iter().zip(&expected).find(|(a, b)| a != b)
            );
        }
    }
}
