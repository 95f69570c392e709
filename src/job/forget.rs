//! Forgetting snapshots: by id, or those no retention rule keeps.
//!
//! Only snapshot manifests are removed; the data they alone referenced stays
//! until `prune`. Retention is applied per group of snapshots: by default
//! those of one host and one name (see [`crate::policy::group`]).

use super::{JobError, interrupt};
use crate::policy::group::GroupId;
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
    /// Only snapshots of these hosts (empty: every host). Rules only.
    pub hosts: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDecision {
    /// What the group's snapshots share (host, name, tags: the keys grouped by).
    #[serde(flatten)]
    pub group: GroupId,
    pub keep: Vec<Kept>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetReport {
    pub groups: Vec<GroupDecision>,
    /// Ids removed (or, with dry_run, that would be).
    pub removed: Vec<String>,
    pub dry_run: bool,
    /// Snapshots left (of those selected, or all).
    pub remaining: usize,
}

pub async fn forget(repo: Arc<Repository>, req: &ForgetRequest) -> Result<ForgetReport, JobError> {
    if req.ids.is_empty() == req.rules.is_none() {
        return Err(JobError::Usage("give snapshot ids or retention rules (--keep-*), not both or neither".into()));
    }
    if let Some(r) = &req.rules {
        r.validate().map_err(|e| JobError::Usage(e.to_string()))?;
    } else if !req.hosts.is_empty() {
        return Err(JobError::Usage("a host filter applies to retention rules, not to snapshot ids".into()));
    }
    let guard = lock::acquire(&repo, false, "forget").await?;
    let result = forget_locked(&repo, req).await;
    let released = guard.release().await;
    let report = result?;
    released?;
    Ok(report)
}

async fn forget_locked(repo: &Arc<Repository>, req: &ForgetRequest) -> Result<ForgetReport, JobError> {
    // Where a signal is latched (a policy run), it stops us between two deletes.
    let start = interrupt::mark();
    let mut report = ForgetReport { dry_run: req.dry_run, ..ForgetReport::default() };
    let mut doomed: Vec<Snapshot> = Vec::new();
    if let Some(rules) = &req.rules {
        let all = repo.list_snapshots().await?;
        let selected = all.iter().filter(|s| {
            req.name.as_ref().is_none_or(|n| &s.manifest.name == n)
                && (req.hosts.is_empty() || req.hosts.contains(&s.manifest.host))
        });
        let grouping = rules.grouping().map_err(|e| JobError::Usage(e.to_string()))?;
        let mut groups: BTreeMap<GroupId, Vec<&Snapshot>> = BTreeMap::new();
        for s in selected {
            let m = &s.manifest;
            groups.entry(grouping.group_of(&m.host, &m.name, &m.tags)).or_default().push(s);
        }
        for (group, snaps) in groups {
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
            report.groups.push(GroupDecision { group, keep: decision.keep, remove: decision.remove });
        }
    } else {
        for spec in &req.ids {
            doomed.push(repo.find_snapshot(spec, req.name.as_deref()).await?);
        }
        report.remaining = repo.snapshot_ids().await?.len().saturating_sub(doomed.len());
    }
    for (done, s) in doomed.iter().enumerate() {
        if let (false, Some(signal)) = (req.dry_run, interrupt::since(start)) {
            let phase = format!("during retention, after forgetting {done} of {} snapshots", doomed.len());
            return Err(JobError::Stopped { signal, phase });
        }
        if !req.dry_run {
            repo.store().delete(&s.id.object_name()).await.map_err(crate::repo::RepoError::from)?;
            tracing::info!(snapshot = %s.id, host = %s.manifest.host, name = %s.manifest.name, "forgot snapshot");
        }
        report.removed.push(s.id.to_string());
    }
    Ok(report)
}
