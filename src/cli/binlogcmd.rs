//! `drtool binlog POLICY`: continuous binlog capture, and its status.

use super::commands::store_at;
use super::exit::{self, Failure};
use super::output::{bytes, outln, print_json};
use super::policycmd::find_policy;
use super::{BinlogArgs, Global};
use crate::engine::DbUrl;
use crate::job::backup::BackupSource;
use crate::job::binlog::{CaptureOptions, capture};
use crate::job::policyrun::{self, lock_policy};
use crate::repo::{Repository, binlogcat};
use crate::source::binlog_stream::BinlogServer;
use std::sync::Arc;

pub async fn run(g: &Global, a: BinlogArgs) -> Result<u8, Failure> {
    let p = find_policy(g, &a.policy)?;
    let Some(settings) = p.binlog.clone() else {
        return Err(Failure::usage(format!(
            "policy {} has no [binlog] section: add one (docs/PITR.md) to capture its binary log",
            p.name
        )));
    };
    let password = policyrun::repository_password(&p.password)?;
    let repo = Arc::new(Repository::open(store_at(&p.repository).await?, &password).await?);
    if a.status {
        return status(g, &repo, &p.name).await;
    }
    let BackupSource::Database(url, db_password) = policyrun::backup_request(&p)?.source else {
        return Err(Failure::usage("[binlog] needs a mysql source"));
    };
    // The whole server's log is captured; the URL's databases only choose what dumps hold.
    let url = DbUrl { databases: vec![], ..url };
    let _lock = lock_policy(&format!("{}.binlog", p.name))?;
    let server = tokio::task::block_in_place(|| BinlogServer::connect(&url, &db_password)).map_err(|e| {
        let code = if matches!(e, crate::engine::EngineError::Usage(_)) { exit::USAGE } else { exit::SOURCE_FAILED };
        Failure::new(code, anyhow::anyhow!("binlog capture: {e}"))
    })?;
    let opts = CaptureOptions { name: p.name.clone(), flush: settings.flush, spool: settings.dir.clone() };
    capture(repo, server, opts).await?;
    Ok(exit::OK)
}

async fn status(g: &Global, repo: &Repository, name: &str) -> Result<u8, Failure> {
    let all = binlogcat::load_all(repo).await?;
    let (files, _) = binlogcat::current(&all, name);
    let summary = binlogcat::summary(&files, chrono::Utc::now());
    if g.json {
        let list: Vec<_> = files
            .iter()
            .map(|s| {
                let r = &s.record;
                serde_json::json!({
                    "file": r.file, "size": r.size, "safe_end": r.safe_end, "complete": r.complete,
                    "first_time": r.first_time, "last_time": r.last_time, "server_id": r.server_id,
                    "gtid_start": binlogcat::format_list(&r.gtid_start), "gtid_end": binlogcat::format_list(&r.gtid_end),
                    "verified_at": r.verified_at, "chunks": r.chunks.len(),
                })
            })
            .collect();
        print_json(&serde_json::json!({ "name": name, "summary": summary, "files": list }))?;
        return Ok(exit::OK);
    }
    let Some(s) = summary else {
        outln!("no binlog captured for {name}");
        return Ok(exit::OK);
    };
    outln!(
        "binlog of {} from {}: {} files ({}), {} .. {}",
        s.name,
        s.server,
        s.files,
        bytes(s.bytes),
        s.first_file,
        s.last_file
    );
    outln!(
        "  events {} .. {} (newest {} s old), last GTID {}",
        s.first_event.map_or("-".into(), |t| t.to_rfc3339()),
        s.newest_event.map_or("-".into(), |t| t.to_rfc3339()),
        s.newest_event_age_seconds.unwrap_or(0),
        s.last_gtid.as_deref().unwrap_or("-")
    );
    for gap in &s.gaps {
        outln!("  GAP after {}: {}", gap.after, gap.reason);
    }
    Ok(if s.gaps.is_empty() { exit::OK } else { exit::DAMAGED })
}
