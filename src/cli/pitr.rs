//! `drtool restore latest --name NAME --to mysql://... --at TIME | --at-gtid G | --at-position F:P`.

use super::commands::open_repo;
use super::dbrestore::{confirm, show_plan};
use super::exit::{self, Failure};
use super::output::{bytes, outln, print_json};
use super::{Global, RestoreArgs};
use crate::engine::{DbUrl, Password};
use crate::job::dbrestore::{self, Action, DbRestoreOptions};
use crate::job::pitr_mysql::{self, At, PitrPlan};
use crate::target::binlog_replay::{self, Replay};
use crate::target::db;
use std::time::Instant;

fn parse_at(a: &RestoreArgs) -> Result<At, Failure> {
    let p = &a.point;
    if p.at_lsn.is_some() || p.at_xid.is_some() || p.at_name.is_some() {
        return Err(Failure::usage(
            "--at-lsn, --at-xid and --at-name are PostgreSQL targets: restore a physical snapshot with --target DIR",
        ));
    }
    match (&p.at, &a.at_gtid, &a.at_position) {
        (Some(t), None, None) => super::pitrcmd::parse_time(t).map(At::Time),
        (None, Some(g), None) => g.parse().map(At::Gtid).map_err(Failure::usage),
        (None, None, Some(p)) => {
            let bad =
                || Failure::usage(format!("--at-position {p:?}: expected FILE:POSITION, e.g. mysql-bin.000042:1234"));
            let (f, n) = p.rsplit_once(':').ok_or_else(bad)?;
            Ok(At::Position(f.to_string(), n.parse().map_err(|_| bad())?))
        }
        _ => Err(Failure::usage("give one of --at, --at-gtid, --at-position")),
    }
}

pub async fn run(g: &Global, a: RestoreArgs) -> Result<u8, Failure> {
    let at = parse_at(&a)?;
    let url = DbUrl::parse(a.to.as_deref().unwrap_or_default()).map_err(|e| Failure::usage(e.to_string()))?;
    if url.engine.as_str() != "mysql" {
        return Err(Failure::usage("point-in-time restore (--at*) is for mysql:// targets"));
    }
    if url.databases.len() > 1 {
        return Err(Failure::usage("point-in-time restore works on one database: name at most one in the --to URL"));
    }
    let password = Password::load(url.engine, a.to_password_file.as_deref(), "DRTOOL_TARGET_PASSWORD")
        .map_err(|e| Failure::usage(e.to_string()))?;
    let repo = open_repo(g).await?;
    let name = match (&a.name, a.snapshot.as_str()) {
        (Some(n), _) => n.clone(),
        (None, "latest") => return Err(Failure::usage("--at* with `latest` needs --name NAME (the policy name)")),
        (None, spec) => repo.find_snapshot(spec, None).await?.manifest.name,
    };
    let plan = pitr_mysql::plan(&repo, &name, &at, url.databases.first().map(String::as_str)).await?;
    let base = plan.base.clone().ok_or_else(|| Failure::usage("no base"))?;
    let base_url = DbUrl { databases: vec![plan.database.clone()], ..url.clone() };
    let mut target = tokio::task::block_in_place(|| db::connect(&base_url, &password))
        .map_err(|e| Failure::new(exit::TARGET_FAILED, anyhow::anyhow!("restore target: {e}")))?;
    let opts = DbRestoreOptions { renames: a.rename.clone(), clean: a.clean, with_globals: false };
    let dbplan = tokio::task::block_in_place(|| dbrestore::plan(&base, target.as_ref(), &base_url, &opts))?;
    let into = dbplan.streams.iter().find(|s| s.from.as_deref() == Some(&plan.database)).and_then(|s| s.to.clone());
    let into = into.unwrap_or_else(|| plan.database.clone());
    let skip_log_bin =
        tokio::task::block_in_place(|| binlog_replay::gtids_conflict(&url, &password, plan.base_gtid.as_deref()))
            .map_err(|e| Failure::new(exit::TARGET_FAILED, anyhow::anyhow!("restore target: {e}")))?;
    if g.json && a.dry_run {
        print_json(&serde_json::json!({ "base": dbplan, "pitr": plan, "into": into, "skip_log_bin": skip_log_bin }))?;
    } else {
        show_plan(&dbplan, g.json)?;
        show_pitr(&plan, &into, skip_log_bin, g.json)?;
    }
    if let Some(r) = dbplan.refusals().first() {
        return Err(Failure::new(exit::REFUSED, anyhow::anyhow!("{r}")));
    }
    if a.dry_run {
        return Ok(exit::OK);
    }
    if !a.yes && !confirm()? {
        return Err(Failure::new(exit::REFUSED, anyhow::anyhow!("restore not confirmed; nothing was changed")));
    }
    let started = Instant::now();
    let summary = dbrestore::execute(repo.clone(), &base, &dbplan, target.as_mut()).await?;
    let base_ms = started.elapsed().as_millis() as u64;
    let dir = tempfile::Builder::new()
        .prefix("drtool-pitr-")
        .tempdir()
        .map_err(|e| Failure::new(exit::ERROR, anyhow::anyhow!("temporary directory: {e}")))?;
    let files = pitr_mysql::fetch(&repo, &plan, dir.path()).await?;
    let replay = Replay {
        files,
        start: plan.base_position,
        stop: plan.stop.position,
        database: plan.database.clone(),
        into: into.clone(),
        skip_log_bin,
    };
    if let Err(e) = tokio::task::block_in_place(|| binlog_replay::replay(&url, &password, &replay)) {
        // A database this run created holds the base and part of the log: not a state anyone asked for.
        let created =
            dbplan.streams.iter().any(|s| s.to.as_deref() == Some(into.as_str()) && matches!(s.action, Action::Create));
        if created {
            let _ = tokio::task::block_in_place(|| target.drop_database(&into));
        }
        return Err(Failure::new(exit::TARGET_FAILED, anyhow::anyhow!("binlog replay into {into}: {e}")));
    }
    let total_ms = started.elapsed().as_millis() as u64;
    if g.json {
        print_json(&serde_json::json!({
            "base_snapshot": plan.base_snapshot, "database": into, "stop": plan.stop,
            "base_ms": base_ms, "replay_ms": total_ms - base_ms, "duration_ms": total_ms, "base_bytes": summary.bytes,
        }))?;
    } else {
        outln!(
            "restored {} at {}: base {} ({:.1} s) + binlog up to {}:{} ({:.1} s)",
            into,
            plan.target,
            &plan.base_snapshot[..8],
            base_ms as f64 / 1000.0,
            plan.stop.file,
            plan.stop.position,
            (total_ms - base_ms) as f64 / 1000.0
        );
    }
    Ok(exit::OK)
}

fn show_pitr(p: &PitrPlan, into: &str, skip_log_bin: bool, to_stderr: bool) -> Result<(), Failure> {
    let mut lines = vec![
        format!("Point-in-time recovery of database {} into {into}, to {}", p.database, p.target),
        format!(
            "  base    snapshot {} taken {} at {}:{}{}",
            &p.base_snapshot[..8],
            p.base_time.format("%Y-%m-%d %H:%M:%S UTC"),
            p.base_file,
            p.base_position,
            p.base_gtid.as_deref().map_or(String::new(), |g| format!(" (GTID {g})"))
        ),
        format!("  binlog  {} ({}): {}", p.files.len(), bytes(p.bytes), p.files.join(", ")),
        format!(
            "  stop    before {}:{}; last replayed transaction {} at {}",
            p.stop.file,
            p.stop.position,
            p.stop.last_gtid.as_deref().unwrap_or("-"),
            p.stop.last_event_time.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        ),
    ];
    if skip_log_bin {
        lines.push(
            "  note    the target's binlog already has later GTIDs of this history (same server?): the \
                    replayed transactions are not written to its binlog"
                .into(),
        );
    }
    let text = lines.join("\n");
    if to_stderr {
        eprintln!("{text}");
    } else {
        outln!("{text}");
    }
    Ok(())
}
