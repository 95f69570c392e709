//! The two later steps of the protocol: *retire* condemned packs (rescue what
//! a snapshot turned out to need, take the rest out of the index) and
//! *delete* retired packs. Each step starts only when every run that could
//! have missed the previous step has ended (docs/PRUNE.md).

use super::records::{self, PruneRecord, RecordedPack, Stage, StoredRecord};
use super::state::{Order, State};
use super::{Run, checkpoint};
use crate::pipeline::ChunkId;
use crate::repo::error::{RepoError, Result};
use crate::repo::ids::PackId;
use crate::repo::index::IndexedPack;
use crate::repo::lock;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Retire the packs of `ready` condemned records, which no run that started
/// before they were condemned still uses. Returns the retired record, if any
/// pack is left to delete.
pub async fn retire(run: &mut Run<'_>, ready: &[StoredRecord]) -> Result<Option<StoredRecord>> {
    let recorded = records::load(run.repo).await?.packs();
    let state = State::load(run.repo, Order::PacksLast, &mut run.usage, &recorded).await?;
    let indexed = state.indexed();
    // Condemned packs that are still indexed: candidates to leave the index.
    let mut leaving: BTreeMap<PackId, RecordedPack> = BTreeMap::new();
    // Already out of the index (a retire was interrupted after rewriting it).
    let mut out_of_index: Vec<RecordedPack> = Vec::new();
    let mut unindexed_garbage: Vec<RecordedPack> = Vec::new();
    for p in ready.iter().flat_map(|r| &r.record.packs) {
        match (p.indexed, indexed.contains_key(&p.id)) {
            // Unindexed when condemned, indexed now: its backup committed after all.
            (false, true) => run.report.rescued_packs += 1,
            // Its writer has ended without indexing it: nothing can read it.
            (false, false) => unindexed_garbage.push(p.clone()),
            (true, true) => {
                leaving.insert(p.id, p.clone());
            }
            (true, false) => out_of_index.push(p.clone()),
        }
    }
    rescue(run, &state, &indexed, &mut leaving)?;
    rewrite_index(run, &state, &leaving).await?;
    delete_packs(run, &unindexed_garbage).await?;

    let packs: Vec<RecordedPack> = leaving.into_values().chain(out_of_index).collect();
    let replaced: Vec<String> = ready.iter().map(|r| r.name.clone()).collect();
    if packs.is_empty() {
        for name in &replaced {
            records::delete(run.repo, name).await?;
        }
        return Ok(None);
    }
    // Listed after the index rewrite: every run that may still have the old
    // index, and so may read these packs, holds one of these locks.
    let mut record = PruneRecord::new(Stage::Retired, packs);
    record.wait_for = Some(lock::live_lock_names(run.repo, Some(run.me)).await?);
    record.replaces = replaced.clone();
    let stored = records::save(run.repo, &record).await?;
    checkpoint("retire-recorded");
    for name in &replaced {
        records::delete(run.repo, name).await?;
    }
    Ok(Some(stored))
}

/// Keep every condemned pack that holds the last stored copy of a chunk some
/// snapshot references (a backup that loaded the index before the pack was
/// condemned may have deduplicated against it: hazard 1).
fn rescue(
    run: &mut Run<'_>,
    state: &State,
    indexed: &HashMap<PackId, &IndexedPack>,
    leaving: &mut BTreeMap<PackId, RecordedPack>,
) -> Result<()> {
    let mut elsewhere: HashSet<ChunkId> = HashSet::new();
    for (id, p) in indexed {
        if !leaving.contains_key(id) && state.stored.contains_key(id) {
            elsewhere.extend(p.blobs.iter().map(|b| b.id));
        }
    }
    let in_leaving: HashSet<ChunkId> = leaving.keys().flat_map(|id| indexed[id].blobs.iter().map(|b| b.id)).collect();
    let missing = state.referenced.iter().filter(|c| !elsewhere.contains(c) && !in_leaving.contains(c)).count();
    if missing > 0 {
        return Err(missing_error(missing));
    }
    let ids: Vec<PackId> = leaving.keys().copied().collect();
    for id in ids {
        let blobs = &indexed[&id].blobs;
        if blobs.iter().any(|b| state.referenced.contains(&b.id) && !elsewhere.contains(&b.id)) {
            leaving.remove(&id);
            elsewhere.extend(blobs.iter().map(|b| b.id));
            run.report.rescued_packs += 1;
        }
    }
    Ok(())
}

pub fn missing_error(n: usize) -> RepoError {
    RepoError::corrupt(
        "repository index",
        format!(
            "{n} chunks that snapshots reference are in no index file; prune deletes nothing until \
             this is repaired (run `drtool check`, then forget the damaged snapshots)"
        ),
    )
}

/// Replace every index file that lists a leaving pack by one file without
/// them: the new file is stored before any old one is deleted, so each pack
/// that stays is indexed at every instant (a crash leaves duplicates only).
async fn rewrite_index(run: &mut Run<'_>, state: &State, leaving: &BTreeMap<PackId, RecordedPack>) -> Result<()> {
    let affected: Vec<&(String, Vec<IndexedPack>)> =
        state.files.iter().filter(|(_, packs)| packs.iter().any(|p| leaving.contains_key(&p.id))).collect();
    if affected.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    let kept: Vec<IndexedPack> = affected
        .iter()
        .flat_map(|(_, packs)| packs)
        .filter(|p| !leaving.contains_key(&p.id) && seen.insert(p.id))
        .cloned()
        .collect();
    if !kept.is_empty() {
        run.repo.write_index(&kept).await?;
        run.report.index_files_written += 1;
    }
    checkpoint("retire-index-written");
    for (name, _) in &affected {
        run.repo.store().delete(name).await?;
        run.report.index_files_deleted += 1;
    }
    checkpoint("retire-index-deleted");
    Ok(())
}

/// Delete a retired record's packs, then the record.
pub async fn delete_retired(run: &mut Run<'_>, record: &StoredRecord) -> Result<()> {
    delete_packs(run, &record.record.packs).await?;
    checkpoint("delete-done");
    records::delete(run.repo, &record.name).await
}

/// Delete packs (idempotent: packs already gone are skipped and not counted).
async fn delete_packs(run: &mut Run<'_>, packs: &[RecordedPack]) -> Result<()> {
    let store = run.repo.store();
    let first = std::sync::atomic::AtomicBool::new(true);
    let deleted: Vec<Option<u64>> = stream::iter(packs)
        .map(|p| async {
            let name = p.id.object_name();
            let size = match store.size(&name).await {
                Ok(s) => s,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(RepoError::from(e)),
            };
            store.delete(&name).await?;
            if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                checkpoint("delete-first");
            }
            Ok(Some(size))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for size in deleted.into_iter().flatten() {
        run.report.deleted_packs += 1;
        run.report.deleted_bytes += size;
    }
    Ok(())
}
