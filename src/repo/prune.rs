//! `prune`: delete what no snapshot needs, while backups keep running.
//!
//! Deleting is split in three steps, each recorded in a sealed prune record
//! (see [`records`]) and each started only after every run that could have
//! missed the previous one has ended:
//!
//! 1. **condemn**: find unused, mostly-garbage (repacked first) and unindexed
//!    packs; store a record naming them. From then on backups do not
//!    deduplicate against chunks only they hold. The record waits for the
//!    locks held once it was visible.
//! 2. **retire** (those locks gone): rescue packs a snapshot turned out to
//!    need, take the rest out of the index (new index file first), record
//!    them as retired, waiting for the locks held after the index rewrite.
//! 3. **delete** (those locks gone too): delete the packs, then the record.
//!
//! On a quiet repository all three happen in one run. docs/PRUNE.md gives
//! the reasoning and the hazards this order excludes.

mod plan;
pub mod records;
mod repack;
mod state;
mod sweep;

use super::Repository;
use super::error::Result;
use super::lock::{self, LockKind};
use chrono::{DateTime, Utc};
use records::{PruneRecord, Reason, RecordedPack, Stage, StoredRecord};
use serde::Serialize;
use state::{Order, State, Usage};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long `prune` waits for another prune to finish before giving up.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
/// Repack a pack when more than this percentage of its bytes is garbage.
pub const DEFAULT_REPACK_PERCENT: u8 = 50;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Report what would be done; write and delete nothing (not even a lock).
    pub dry_run: bool,
    pub repack_percent: u8,
    pub lock_wait: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self { dry_run: false, repack_percent: DEFAULT_REPACK_PERCENT, lock_wait: DEFAULT_LOCK_WAIT }
    }
}

/// Packs condemned in this run, by reason.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Condemned {
    pub unused: usize,
    pub repacked: usize,
    pub unindexed: usize,
    pub bytes: u64,
}

/// A batch of packs waiting for runs to end before its next step.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub stage: Stage,
    pub packs: usize,
    pub bytes: u64,
    pub since: DateTime<Utc>,
    /// The runs still holding a lock the batch waits for.
    pub waiting_for: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    /// Stored packs examined, their bytes, and how many of those bytes snapshots need.
    pub packs: usize,
    pub bytes: u64,
    pub used_bytes: u64,
    pub deleted_packs: usize,
    pub deleted_bytes: u64,
    /// Packs whose needed blobs were copied to new packs (then condemned).
    pub repacked_packs: usize,
    pub repacked_bytes: u64,
    pub repacked_blobs: u64,
    pub new_packs: usize,
    pub new_bytes: u64,
    pub condemned: Condemned,
    /// Condemned packs kept because a snapshot written meanwhile needs them,
    /// or because their backup committed after all.
    pub rescued_packs: usize,
    pub index_files_written: usize,
    pub index_files_deleted: usize,
    pub stale_locks_removed: usize,
    pub pending: Vec<Pending>,
    /// Packs that could not be repacked because they are damaged (run `check`).
    pub damaged: Vec<String>,
}

impl PruneReport {
    /// Bytes the store holds less than before this run.
    pub fn freed_bytes(&self) -> u64 {
        self.deleted_bytes.saturating_sub(self.new_bytes)
    }
    pub fn pending_packs(&self) -> usize {
        self.pending.iter().map(|p| p.packs).sum()
    }
    pub fn pending_bytes(&self) -> u64 {
        self.pending.iter().map(|p| p.bytes).sum()
    }
}

/// Test-only fault injection: when `DRTOOL_TEST_PRUNE_DIE_AT` names `step`,
/// the process kills itself with SIGKILL there, as a crash or `kill -9` would
/// (tests/prune.rs uses it to prove every intermediate state is safe).
pub(crate) fn checkpoint(step: &str) {
    static DIE_AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if DIE_AT.get_or_init(|| std::env::var("DRTOOL_TEST_PRUNE_DIE_AT").ok()).as_deref() == Some(step) {
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so nothing runs after it.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// One prune run, holding the prune lock.
pub(crate) struct Run<'a> {
    repo: &'a Arc<Repository>,
    /// Our own lock, which no record waits for.
    me: &'a str,
    usage: Usage,
    report: PruneReport,
    repack_percent: u8,
}

/// Run prune (see the module documentation).
pub async fn prune(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PruneReport> {
    if opts.dry_run {
        return dry_run(repo, opts).await;
    }
    let guard = lock::acquire_wait(repo, LockKind::Prune, "prune", opts.lock_wait).await?;
    let me = guard.name().to_string();
    let mut run = Run {
        repo,
        me: &me,
        usage: Usage::default(),
        report: PruneReport::default(),
        repack_percent: opts.repack_percent,
    };
    let result = run.go().await;
    let released = guard.release().await;
    result?;
    released?;
    Ok(run.report)
}

impl Run<'_> {
    async fn go(&mut self) -> Result<()> {
        self.report.stale_locks_removed = lock::remove_stale(self.repo).await?;
        // Finish earlier runs' batches, mark new garbage, then, if nothing else
        // runs, carry the new batch through at once.
        self.advance().await?;
        self.condemn().await?;
        self.advance().await?;
        self.report.pending = pending(self.repo, self.me).await?;
        Ok(())
    }

    /// Move every batch whose awaited runs have ended one or two steps on.
    async fn advance(&mut self) -> Result<()> {
        let all = records::load(self.repo).await?;
        for name in all.superseded().iter().filter(|n| all.records.iter().any(|r| &r.name == *n)) {
            records::delete(self.repo, name).await?;
        }
        for (name, why) in &all.damaged {
            // Dropping a record only keeps data: its packs are reconsidered from scratch.
            tracing::warn!("removing unreadable prune record {name}: {why}");
            records::delete(self.repo, name).await?;
        }
        // Listed after the records were read, so it may arm a leftover draft.
        let live: HashSet<String> = lock::live_lock_names(self.repo, Some(self.me)).await?.into_iter().collect();
        let mut active = Vec::new();
        for r in all.active() {
            // A draft of a prune that died before arming it (we hold the prune lock).
            if r.record.wait_for.is_none() {
                let mut sorted: Vec<String> = live.iter().cloned().collect();
                sorted.sort();
                active.push(self.arm(&r, sorted).await?);
            } else {
                active.push(r);
            }
        }
        for r in active.iter().filter(|r| r.record.stage == Stage::Retired && r.record.ready(&live)) {
            sweep::delete_retired(self, r).await?;
        }
        let ready: Vec<StoredRecord> =
            active.into_iter().filter(|r| r.record.stage == Stage::Condemned && r.record.ready(&live)).collect();
        if !ready.is_empty()
            && let Some(retired) = sweep::retire(self, &ready).await?
            && retired.record.wait_for.as_ref().is_some_and(Vec::is_empty)
        {
            sweep::delete_retired(self, &retired).await?;
        }
        Ok(())
    }

    /// Store `r` again with the locks to wait for, then delete the draft.
    async fn arm(&mut self, r: &StoredRecord, wait_for: Vec<String>) -> Result<StoredRecord> {
        let mut armed = r.record.clone();
        armed.wait_for = Some(wait_for);
        armed.replaces = vec![r.name.clone()];
        let stored = records::save(self.repo, &armed).await?;
        checkpoint("condemn-armed");
        records::delete(self.repo, &r.name).await?;
        Ok(stored)
    }

    /// Find new garbage, repack, and store an armed condemned record for it.
    async fn condemn(&mut self) -> Result<()> {
        let recorded = records::load(self.repo).await?.packs();
        let state = State::load(self.repo, Order::PacksFirst, &mut self.usage, &recorded).await?;
        let plan = plan::plan(&state, &recorded, self.repack_percent);
        let rep = &mut self.report;
        (rep.snapshots, rep.packs, rep.bytes, rep.used_bytes) =
            (state.snapshots, plan.packs, plan.bytes, plan.used_bytes);
        if !plan.missing.is_empty() {
            return Err(sweep::missing_error(plan.missing.len()));
        }
        confirm(self.repo, &plan).await?;
        if plan.is_empty() {
            return Ok(());
        }
        let repacked = repack::repack(self.repo, &plan.repack).await?;
        let rep = &mut self.report;
        rep.repacked_packs += repacked.done.len();
        rep.repacked_bytes += repacked.done.iter().map(|(_, s)| s).sum::<u64>();
        rep.repacked_blobs += repacked.blobs;
        rep.new_packs += repacked.new_packs;
        rep.new_bytes += repacked.new_bytes;
        rep.damaged.extend(repacked.damaged);
        let entry = |(id, size): (super::ids::PackId, u64), indexed, reason| RecordedPack { id, size, indexed, reason };
        let packs: Vec<RecordedPack> = (plan.unused.iter().map(|p| entry(*p, true, Reason::Unused)))
            .chain(repacked.done.iter().map(|p| entry(*p, true, Reason::Repacked)))
            .chain(plan.unindexed.iter().map(|p| entry(*p, false, Reason::Unindexed)))
            .collect();
        if packs.is_empty() {
            return Ok(());
        }
        let c = &mut rep.condemned;
        (c.unused, c.repacked, c.unindexed) = (plan.unused.len(), repacked.done.len(), plan.unindexed.len());
        c.bytes = packs.iter().map(|p| p.size).sum();
        let draft = records::save(self.repo, &PruneRecord::new(Stage::Condemned, packs)).await?;
        checkpoint("condemn-draft");
        // Only now that the draft is visible: a run whose lock is not listed
        // here took its lock, and then read the records, after the draft existed.
        let live = lock::live_lock_names(self.repo, Some(self.me)).await?;
        self.arm(&draft, live).await?;
        Ok(())
    }
}

/// Stop before deciding anything if a pack holding the only copies of
/// needed chunks is gone: indexed but missing is damage, and `check` says
/// which snapshots it affects.
async fn confirm(repo: &Repository, plan: &plan::Plan) -> Result<()> {
    for pack in &plan.unconfirmed {
        match repo.store().size(&pack.object_name()).await {
            Err(e) if e.is_not_found() => {
                return Err(super::RepoError::corrupt(
                    format!("pack {pack}"),
                    "indexed, needed by snapshots, and missing from the store; prune deletes nothing \
                     until this is repaired (run `drtool check`)",
                ));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Batches still waiting, with the runs they wait for.
async fn pending(repo: &Repository, me: &str) -> Result<Vec<Pending>> {
    let locks = lock::list_locks(repo).await?;
    let now = Utc::now();
    let holder = |name: &String| {
        locks.iter().find(|l| &l.name == name && l.name != me && !l.is_stale(now)).map(|l| l.describe())
    };
    Ok(records::load(repo)
        .await?
        .active()
        .into_iter()
        .map(|r| Pending {
            stage: r.record.stage,
            packs: r.record.packs.len(),
            bytes: r.record.bytes(),
            since: r.record.created,
            waiting_for: r.record.wait_for.iter().flatten().filter_map(holder).collect(),
        })
        .collect())
}

/// What a run would do now, assuming no other run starts and nothing is rescued.
async fn dry_run(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport { dry_run: true, ..PruneReport::default() };
    let all = records::load(repo).await?;
    let live: HashSet<String> = lock::live_lock_names(repo, None).await?.into_iter().collect();
    let mut later = Vec::new();
    for r in all.active() {
        // Drafts are armed with the current locks, then treated like any record.
        let waits = match &r.record.wait_for {
            Some(w) => w.iter().any(|l| live.contains(l)),
            None => !live.is_empty(),
        };
        if waits {
            later.push(r);
        } else {
            report.deleted_packs += r.record.packs.len();
            report.deleted_bytes += r.record.bytes();
        }
    }
    let recorded = all.packs();
    let state = State::load(repo, Order::PacksFirst, &mut Usage::default(), &recorded).await?;
    let plan = plan::plan(&state, &recorded, opts.repack_percent);
    if !plan.missing.is_empty() {
        return Err(sweep::missing_error(plan.missing.len()));
    }
    confirm(repo, &plan).await?;
    (report.snapshots, report.packs, report.bytes, report.used_bytes) =
        (state.snapshots, plan.packs, plan.bytes, plan.used_bytes);
    report.repacked_packs = plan.repack.len();
    report.repacked_bytes = plan.repack.iter().map(|r| r.size).sum();
    report.repacked_blobs = plan.repack.iter().map(|r| r.keep.len() as u64).sum();
    // Blob bytes only: the new packs' salts and headers add a little.
    report.new_bytes = plan.repack.iter().flat_map(|r| &r.keep).map(|b| b.length as u64).sum();
    let c = &mut report.condemned;
    (c.unused, c.repacked, c.unindexed) = (plan.unused.len(), plan.repack.len(), plan.unindexed.len());
    c.bytes = plan.unused.iter().chain(&plan.unindexed).map(|(_, s)| s).sum::<u64>() + report.repacked_bytes;
    let new_batch = plan.unused.len() + plan.repack.len() + plan.unindexed.len();
    report.pending = later
        .iter()
        .map(|r| Pending {
            stage: r.record.stage,
            packs: r.record.packs.len(),
            bytes: r.record.bytes(),
            since: r.record.created,
            waiting_for: Vec::new(),
        })
        .collect();
    if live.is_empty() {
        report.deleted_packs += new_batch;
        report.deleted_bytes += report.condemned.bytes;
    } else if new_batch > 0 {
        report.pending.push(Pending {
            stage: Stage::Condemned,
            packs: new_batch,
            bytes: report.condemned.bytes,
            since: Utc::now(),
            waiting_for: Vec::new(),
        });
    }
    Ok(report)
}
