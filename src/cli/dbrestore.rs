//! `drtool restore ... --to URL`: show the plan, confirm, restore into a server.

use super::commands::open_repo;
use super::exit::{self, Failure};
use super::output::{bytes, outln, print_json, rate};
use super::{Global, RestoreArgs};
use crate::engine::{DbUrl, EngineError, Password};
use crate::job::dbrestore::{self, Action, DbRestoreOptions, DbRestorePlan};
use crate::target::db::{self, Replacement};
use std::io::{BufRead, IsTerminal, Write};

pub async fn run(g: &Global, a: RestoreArgs) -> Result<u8, Failure> {
    if a.point.any() || a.at_gtid.is_some() || a.at_position.is_some() {
        return super::pitr::run(g, a).await;
    }
    let to = a.to.as_deref().unwrap_or_default();
    let url = DbUrl::parse(to).map_err(|e| Failure::usage(e.to_string()))?;
    let password = Password::load(url.engine, a.to_password_file.as_deref(), "DRTOOL_TARGET_PASSWORD")
        .map_err(|e| Failure::usage(e.to_string()))?;
    let repo = open_repo(g).await?;
    let snap = repo.find_snapshot(&a.snapshot, a.name.as_deref()).await?;
    let mut target = tokio::task::block_in_place(|| db::connect(&url, &password)).map_err(target_failure)?;
    let opts = DbRestoreOptions { renames: a.rename.clone(), clean: a.clean, with_globals: a.with_globals };
    let plan = tokio::task::block_in_place(|| dbrestore::plan(&snap, target.as_ref(), &url, &opts))?;
    if g.json && a.dry_run {
        print_json(&plan)?;
    } else {
        // The plan goes to stderr when JSON output is reserved for the result.
        show_plan(&plan, g.json)?;
    }
    if let Some(r) = plan.refusals().first() {
        return Err(Failure::new(exit::REFUSED, anyhow::anyhow!("{r}")));
    }
    if a.dry_run {
        return Ok(exit::OK);
    }
    if !a.yes && !confirm()? {
        return Err(Failure::new(exit::REFUSED, anyhow::anyhow!("restore not confirmed; nothing was changed")));
    }
    let summary = dbrestore::execute(repo, &snap, &plan, target.as_mut()).await?;
    if g.json {
        print_json(&serde_json::json!({ "snapshot_id": snap.id, "target": plan.target, "summary": summary }))?;
    } else {
        outln!(
            "restored snapshot {} into {}: {} streams, {} in {:.1} s, {}",
            snap.id.short(),
            plan.target,
            summary.streams,
            bytes(summary.bytes),
            summary.duration_ms as f64 / 1000.0,
            rate(summary.bytes, summary.duration_ms)
        );
    }
    Ok(exit::OK)
}

fn target_failure(e: EngineError) -> Failure {
    let code = if matches!(e, EngineError::Usage(_)) { exit::USAGE } else { exit::TARGET_FAILED };
    Failure::new(code, anyhow::anyhow!("restore target: {e}"))
}

pub(super) fn show_plan(plan: &DbRestorePlan, to_stderr: bool) -> Result<(), Failure> {
    let mut lines = vec![
        format!("Restore plan for snapshot {} ({})", &plan.snapshot[..plan.snapshot.len().min(8)], plan.name),
        format!("  taken   {}", plan.time.format("%Y-%m-%d %H:%M:%S UTC")),
        format!("  size    {}", bytes(plan.size)),
        format!("  source  {}", plan.source),
        format!("  target  {}", plan.target),
    ];
    for s in &plan.streams {
        let db = match (&s.from, &s.to) {
            (Some(f), Some(t)) if f != t => format!("database {f} -> {t}"),
            (Some(f), _) => format!("database {f}"),
            _ => "whole archive".to_string(),
        };
        let what = match &s.action {
            Action::Create => "create it and load (new database)".to_string(),
            Action::Load => "load into the existing empty database".to_string(),
            Action::Replace { objects, how } => {
                format!("OVERWRITE: replace the existing database ({objects} objects): {}", replacement(how))
            }
            Action::LoadUnknown { drop_collections: true } => {
                "OVERWRITE: drop each collection just before loading it (not atomic: a failure part-way leaves \
                 collections dropped or half loaded)"
                    .into()
            }
            Action::LoadUnknown { drop_collections: false } => {
                "load; existing documents with the same _id are kept (target not inspected)".into()
            }
            Action::Globals => "apply accounts / roles (existing ones are reported and kept)".into(),
            Action::Skip { reason } => format!("skip: {reason}"),
            Action::Refuse { reason } => format!("REFUSED: {reason}"),
        };
        let db = if matches!(s.action, Action::Globals | Action::Skip { .. }) && s.from.is_none() {
            "globals".to_string()
        } else {
            db
        };
        lines.push(format!("  {:<24} {:>10}  {db}: {what}", s.stream, bytes(s.size)));
        for l in &s.leftovers {
            lines.push(format!(
                "    note: database {l} was left by an earlier interrupted restore; check it and drop it by hand \
                 (it is not touched)"
            ));
        }
    }
    let text = lines.join("\n");
    if to_stderr {
        eprintln!("{text}");
    } else {
        outln!("{text}");
    }
    Ok(())
}

fn replacement(how: &Replacement) -> String {
    match how {
        Replacement::Staged { staging, old } => format!(
            "load into the new database {staging}, and only once that succeeded swap its tables in (the current \
             ones move to {old}, dropped after the swap); until then the current data stays in place"
        ),
        Replacement::Transaction => {
            "drop and recreate its objects in one transaction (pg_restore --single-transaction): a failure \
             rolls everything back"
                .into()
        }
        Replacement::PerCollection => "drop each collection just before loading it (not atomic)".into(),
    }
}

/// Ask on the terminal; without one, refuse (scripts must pass --yes).
pub(super) fn confirm() -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            exit::REFUSED,
            anyhow::anyhow!(
                "refusing to restore into a server without confirmation: pass --yes (no terminal to ask on)"
            ),
        ));
    }
    eprint!("Proceed with this restore? Type 'yes' to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(exit::ERROR, e))?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}
