//! Drill reports: the result record (stored sealed in the repository under
//! drills/), and its JUnit XML, Markdown and terminal renderings.

use super::checks::{CheckResult, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phases {
    pub provision_ms: u64,
    pub restore_ms: u64,
    pub checks_ms: u64,
    pub teardown_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub policy: String,
    pub host: String,
    pub started: DateTime<Utc>,
    pub snapshot_id: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    pub scratch: String,
    /// Servers restored into (no passwords).
    pub nodes: Vec<String>,
    pub phases: Phases,
    /// Restore start to checks passed.
    pub rto_seconds: Option<f64>,
    /// Age of the restored snapshot when the drill ran.
    pub rpo_seconds: Option<f64>,
    pub rto_target_seconds: Option<u64>,
    pub rpo_target_hours: Option<f64>,
    pub bytes_restored: u64,
    pub checks: Vec<CheckRecord>,
    pub ok: bool,
    /// Why the drill could not complete (provision or restore error, interruption).
    pub error: Option<String>,
    pub drtool_version: String,
}

/// A check as stored (CheckResult without behaviour).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub status: String,
    pub detail: String,
}

impl From<&CheckResult> for CheckRecord {
    fn from(c: &CheckResult) -> Self {
        let status = match c.status {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        };
        CheckRecord { name: c.name.clone(), status: status.into(), detail: c.detail.clone() }
    }
}

impl DrillReport {
    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckRecord> {
        self.checks.iter().filter(|c| c.status == "failed")
    }

    pub fn total_ms(&self) -> u64 {
        let p = &self.phases;
        p.provision_ms + p.restore_ms + p.checks_ms + p.teardown_ms
    }
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one testsuite, one testcase per check (a drill error is a failed case too).
pub fn junit(r: &DrillReport) -> String {
    let mut cases: Vec<(String, String, String)> =
        r.checks.iter().map(|c| (c.name.clone(), c.status.clone(), c.detail.clone())).collect();
    if let Some(e) = &r.error {
        cases.push(("drill completed".into(), "failed".into(), e.clone()));
    }
    let failures = cases.iter().filter(|c| c.1 == "failed").count();
    let skipped = cases.iter().filter(|c| c.1 == "skipped").count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str(&format!(
        "<testsuites name=\"drtool drills\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        cases.len(),
        r.total_ms() as f64 / 1000.0
    ));
    o.push_str(&format!(
        "  <testsuite name=\"drill {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\" hostname=\"{}\">\n",
        xml(&r.policy),
        cases.len(),
        r.total_ms() as f64 / 1000.0,
        r.started.format("%Y-%m-%dT%H:%M:%S"),
        xml(&r.host)
    ));
    for (name, status, detail) in &cases {
        o.push_str(&format!("    <testcase classname=\"drtool.drill.{}\" name=\"{}\"", xml(&r.policy), xml(name)));
        match status.as_str() {
            "failed" => o.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                xml(detail),
                xml(detail)
            )),
            "skipped" => o.push_str(&format!(">\n      <skipped message=\"{}\"/>\n    </testcase>\n", xml(detail))),
            _ => o.push_str(&format!(">\n      <system-out>{}</system-out>\n    </testcase>\n", xml(detail))),
        }
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Markdown, for wikis, tickets and CI summaries.
pub fn markdown(r: &DrillReport) -> String {
    let mut o = format!("# Restore drill: {} — {}\n\n", r.policy, if r.ok { "PASSED" } else { "FAILED" });
    o.push_str("| | |\n|---|---|\n");
    o.push_str(&format!("| started | {} |\n", r.started.format("%Y-%m-%d %H:%M:%S UTC")));
    o.push_str(&format!("| host | {} |\n", r.host));
    o.push_str(&format!(
        "| snapshot | {} ({}) |\n",
        r.snapshot_id.as_deref().map_or("-", |s| &s[..8.min(s.len())]),
        r.snapshot_time.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
    ));
    o.push_str(&format!(
        "| scratch | {} ({} node{}) |\n",
        r.scratch,
        r.nodes.len(),
        if r.nodes.len() == 1 { "" } else { "s" }
    ));
    let target = |t: Option<String>| t.map_or(String::new(), |t| format!(" (target {t})"));
    o.push_str(&format!(
        "| RTO | {}{} |\n",
        r.rto_seconds.map_or("-".into(), |s| format!("{s:.1} s")),
        target(r.rto_target_seconds.map(|t| format!("{t} s")))
    ));
    o.push_str(&format!(
        "| RPO | {}{} |\n",
        r.rpo_seconds.map_or("-".into(), |s| format!("{:.2} h", s / 3600.0)),
        target(r.rpo_target_hours.map(|t| format!("{t} h")))
    ));
    let p = &r.phases;
    o.push_str(&format!(
        "| phases | provision {}, restore {}, checks {}, teardown {} |\n",
        secs(p.provision_ms),
        secs(p.restore_ms),
        secs(p.checks_ms),
        secs(p.teardown_ms)
    ));
    if let Some(e) = &r.error {
        o.push_str(&format!("\n**Error:** {}\n", e.replace('\n', " ")));
    }
    o.push_str("\n| check | result | detail |\n|---|---|---|\n");
    for c in &r.checks {
        o.push_str(&format!(
            "| {} | {} | {} |\n",
            c.name.replace('|', "\\|"),
            c.status,
            c.detail.replace('|', "\\|").replace('\n', " ")
        ));
    }
    o
}

/// The terminal summary.
pub fn summary(r: &DrillReport) -> String {
    let mut o = String::new();
    for c in &r.checks {
        let mark = match c.status.as_str() {
            "passed" => "ok  ",
            "skipped" => "skip",
            _ => "FAIL",
        };
        o.push_str(&format!("  {mark}  {}: {}\n", c.name, c.detail));
    }
    let p = &r.phases;
    o.push_str(&format!(
        "drill {} {}: snapshot {}, {} scratch; RTO {}, RPO {}; provision {}, restore {}, checks {}, teardown {}\n",
        r.policy,
        if r.ok { "PASSED" } else { "FAILED" },
        r.snapshot_id.as_deref().map_or("-", |s| &s[..8.min(s.len())]),
        r.scratch,
        r.rto_seconds.map_or("-".into(), |s| format!("{s:.1} s")),
        r.rpo_seconds.map_or("-".into(), |s| format!("{:.2} h", s / 3600.0)),
        secs(p.provision_ms),
        secs(p.restore_ms),
        secs(p.checks_ms),
        secs(p.teardown_ms)
    ));
    if let Some(e) = &r.error {
        o.push_str(&format!("error: {e}\n"));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_and_counts() {
        let r = DrillReport {
            policy: "shop<&>".into(),
            host: "h".into(),
            started: Utc::now(),
            snapshot_id: Some("abcdef0123".into()),
            snapshot_time: None,
            scratch: "mariadb".into(),
            nodes: vec!["mysql://drtool@127.0.0.1:1/".into()],
            phases: Phases::default(),
            rto_seconds: Some(1.0),
            rpo_seconds: Some(3600.0),
            rto_target_seconds: None,
            rpo_target_hours: None,
            bytes_restored: 0,
            checks: vec![
                CheckRecord { name: "a \"quoted\"".into(), status: "passed".into(), detail: "x".into() },
                CheckRecord { name: "b".into(), status: "failed".into(), detail: "got <1>".into() },
                CheckRecord { name: "c".into(), status: "skipped".into(), detail: "n/a".into() },
            ],
            ok: false,
            error: None,
            drtool_version: "0".into(),
        };
        let x = junit(&r);
        assert!(x.contains("tests=\"3\" failures=\"1\"") && x.contains("skipped=\"1\""), "{x}");
        assert!(
            x.contains("drill shop&lt;&amp;&gt;") && x.contains("a &quot;quoted&quot;") && x.contains("got &lt;1&gt;")
        );
        assert_eq!(x.matches("<testcase ").count(), 3);
        let m = markdown(&r);
        assert!(m.contains("FAILED") && m.contains("| b | failed | got <1> |"), "{m}");
    }
}
