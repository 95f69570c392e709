//! `drtool drill` and `drtool drills`.

use super::commands::{open_repo, store_at};
use super::exit::{self, Failure};
use super::output::{outln, print_json};
use super::policycmd::find_policy;
use super::{DrillArgs, Global};
use crate::drill::report::{self, DrillReport};
use crate::job::policyrun;
use crate::repo::{Repository, drills};
use std::sync::Arc;

pub async fn drill(g: &Global, a: DrillArgs) -> Result<u8, Failure> {
    let p = find_policy(g, &a.policy)?;
    policyrun::register_policy_secrets(&p);
    let password = policyrun::repository_password(&p.password)?;
    let store = store_at(&p.repository).await?;
    let repo = Arc::new(Repository::open(store, &password).await?);
    let span = tracing::info_span!("drill", policy = %p.name);
    let _enter = span.enter();
    // Dropping the drill on a signal tears its scratch server down (guards).
    let r = tokio::select! {
        r = crate::drill::run::run(&p, repo.clone()) => r?,
        sig = crate::job::shutdown_signal() => {
            return Err(Failure::new(exit::INTERRUPTED, anyhow::anyhow!("drill interrupted by {sig}; its scratch server was torn down")));
        }
    };
    let value = serde_json::to_value(&r).map_err(|e| Failure::new(exit::ERROR, e))?;
    if let Err(e) = drills::save(&repo, &value).await {
        eprintln!("drtool: warning: could not store the drill result in the repository: {e}");
    }
    write_reports(&a, &r, &value)?;
    if g.json {
        print_json(&value)?;
    } else {
        let text = report::summary(&r);
        outln!("{}", text.trim_end());
    }
    if r.ok {
        return Ok(exit::OK);
    }
    let why = r
        .error
        .clone()
        .or_else(|| r.failed_checks().next().map(|c| format!("check {:?} failed: {}", c.name, c.detail)))
        .unwrap_or_else(|| "the drill failed".into());
    Err(Failure::new(exit::DRILL_FAILED, anyhow::anyhow!("drill of {} failed: {why}", r.policy)))
}

fn write_reports(a: &DrillArgs, r: &DrillReport, value: &serde_json::Value) -> Result<(), Failure> {
    let write = |path: &std::path::Path, text: String| {
        std::fs::write(path, text)
            .map_err(|e| Failure::new(exit::ERROR, anyhow::anyhow!("cannot write {}: {e}", path.display())))
    };
    if let Some(f) = &a.json_file {
        write(f, serde_json::to_string_pretty(value).unwrap_or_default() + "\n")?;
    }
    if let Some(f) = &a.junit {
        write(f, report::junit(r))?;
    }
    if let Some(f) = &a.markdown {
        write(f, report::markdown(r))?;
    }
    Ok(())
}

pub async fn list(g: &Global, policy: Option<&str>) -> Result<u8, Failure> {
    let repo = open_repo(g).await?;
    let mut all: Vec<serde_json::Value> =
        drills::list(&repo).await?.into_iter().filter(|d| policy.is_none_or(|p| d["policy"] == p)).collect();
    all.sort_by(|a, b| a["started"].as_str().cmp(&b["started"].as_str()));
    if g.json {
        print_json(&all)?;
        return Ok(exit::OK);
    }
    outln!(
        "{:<19}  {:<16}  {:<8}  {:<8}  {:>9}  {:>9}  result",
        "started (UTC)",
        "policy",
        "snapshot",
        "scratch",
        "RTO",
        "RPO"
    );
    for d in &all {
        let started = d["started"].as_str().unwrap_or("").replace('T', " ");
        outln!(
            "{:<19}  {:<16}  {:<8}  {:<8}  {:>9}  {:>9}  {}",
            started.get(..19).unwrap_or(&started),
            d["policy"].as_str().unwrap_or(""),
            d["snapshot_id"].as_str().map_or("-", |s| &s[..8.min(s.len())]),
            d["scratch"].as_str().unwrap_or(""),
            d["rto_seconds"].as_f64().map_or("-".into(), |s| format!("{s:.1} s")),
            d["rpo_seconds"].as_f64().map_or("-".into(), |s| format!("{:.1} h", s / 3600.0)),
            if d["ok"] == true { "passed" } else { "FAILED" }
        );
    }
    outln!("{} drills", all.len());
    Ok(exit::OK)
}
