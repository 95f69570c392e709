//! `drtool forget`: remove snapshots by id or by retention rules.

use super::commands::open_repo;
use super::exit::{self, Failure};
use super::output::{outln, print_json};
use super::{ForgetArgs, Global, PruneArgs};
use crate::job::forget::{ForgetRequest, forget};
use crate::policy::group::GroupBy;
use crate::policy::retention::Retention;

pub async fn run(g: &Global, a: ForgetArgs) -> Result<u8, Failure> {
    let rules = Retention {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a.keep_within.clone(),
        group_by: None,
    };
    let mut rules = if rules == Retention::default() { None } else { Some(rules) };
    if rules.is_none() && a.snapshots.is_empty() {
        return Err(Failure::usage(
            "nothing to forget: give snapshot ids or retention rules (--keep-last, --keep-daily, ...)",
        ));
    }
    let grouping = GroupBy::parse(&a.group_by).map_err(|e| Failure::usage(format!("--group-by: {e}")))?;
    match &mut rules {
        Some(r) => r.group_by = Some(grouping.keys().to_vec()),
        None if grouping != GroupBy::default() => {
            return Err(Failure::usage("--group-by applies to retention rules (--keep-*), not to snapshot ids"));
        }
        None => {}
    }
    let req = ForgetRequest {
        ids: a.snapshots.clone(),
        rules,
        name: a.name.clone(),
        hosts: a.hosts.clone(),
        dry_run: a.dry_run,
    };
    let repo = open_repo(g).await?;
    let report = forget(repo, &req).await?;
    if g.json {
        print_json(&report)?;
    } else {
        for group in &report.groups {
            outln!("{}: keep {}, remove {}", group.group, group.keep.len(), group.remove.len());
            for k in &group.keep {
                outln!("  keep   {}  {}", &k.id[..8.min(k.id.len())], k.reasons.join(", "));
            }
            for r in &group.remove {
                outln!("  remove {}", &r[..8.min(r.len())]);
            }
        }
        let verb = if a.dry_run { "would remove" } else { "removed" };
        outln!("{verb} {} snapshots; {} remain", report.removed.len(), report.remaining);
        if !a.dry_run && !report.removed.is_empty() && !a.prune {
            outln!("run `drtool prune` to free the space they alone used");
        }
    }
    if a.prune && !a.dry_run {
        return super::prunecmd::run(g, PruneArgs { dry_run: false }).await;
    }
    Ok(exit::OK)
}
