//! Forgetting snapshots: by id, or those no retention rule keeps.
//!
//! Only snapshot manifests are removed; the data they alone referenced stays
//! until `prune`. Retention is applied per snapshot name (a policy's name).

use super::JobError;
use crate::policy::retention::{self, Candidate, Kept, Retention};
use crate::repo::snapshot::Snapshot;
use crate::repo::{Repository, lock};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct ForgetRequest {
    /// Snapshot ids or unique prefixes to remove.
    pub ids: Vec<String>,
    pub rules: Option<Retention>,
    /// Only snapshots with this name.
    pub name: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDecision {
    pub name: String,
    pub keep: Vec<Kept>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetReport {
    pub groups: Vec<GroupDecision>,
    /// Ids removed (or, with dry_run, that would be).
    pub removed: Vec<String>,
    pub dry_run: bool,
    /// Snapshots left (of the selected name, or all).
    pub remaining: usize,
}

pub async fn forget(repo: Arc<Repository>, req: &ForgetRequest) -> Result<ForgetReport, JobError> {
    if req.ids.is_empty() == req.rules.is_none() {
        return Err(JobError::Usage("give snapshot ids or retention rules (--keep-*), not both or neither".into()));
    }
    if let Some(r) = &req.rules {
        r.validate().map_err(|e| JobError::Usage(e.to_string()))?;
    }
    let guard = lock::acquire(&repo, false, "forget").await?;
    let result = forget_locked(&repo, req).await;
    let released = guard.release().await;
    let report = result?;
    released?;
    Ok(report)
}

async fn forget_locked(repo: &Arc<Repository>, req: &ForgetRequest) -> Result<ForgetReport, JobError> {
    let mut report = ForgetReport { dry_run: req.dry_run, ..ForgetReport::default() };
    let mut doomed: Vec<Snapshot> = Vec::new();
    if let Some(rules) = &req.rules {
        let all = repo.list_snapshots().await?;
        let mut groups: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
        for s in all.iter().filter(|s| req.name.as_ref().is_none_or(|n| &s.manifest.name == n)) {
            groups.entry(s.manifest.name.clone()).or_default().push(s);
        }
        for (name, snaps) in groups {
            let ids: Vec<String> = snaps.iter().map(|s| s.id.to_string()).collect();
            let candidates: Vec<Candidate> =
                snaps.iter().zip(&ids).map(|(s, id)| Candidate { id: id.as_str(), time: s.manifest.time }).collect();
            let decision = retention::apply(rules, &candidates).map_err(|e| JobError::Usage(e.to_string()))?;
            for id in &decision.remove {
                if let Some(s) = snaps.iter().find(|s| &s.id.to_string() == id) {
                    doomed.push((*s).clone());
                }
            }
            report.remaining += decision.keep.len();
            report.groups.push(GroupDecision { name, keep: decision.keep, remove: decision.remove });
        }
    } else {
        for spec in &req.ids {
            doomed.push(repo.find_snapshot(spec, req.name.as_deref()).await?);
        }
        report.remaining = repo.snapshot_ids().await?.len().saturating_sub(doomed.len());
    }
    for s in &doomed {
        if !req.dry_run {
            repo.store().delete(&s.id.object_name()).await.map_err(crate::repo::RepoError::from)?;
            tracing::info!(snapshot = %s.id, name = %s.manifest.name, "forgot snapshot");
        }
        report.removed.push(s.id.to_string());
    }
    Ok(report)
}
