//! `check`: structural consistency, and optionally every blob read back.

use super::Repository;
use super::error::{RepoError, Result, chain};
use super::ids::{PackId, SnapshotId};
use super::index::Index;
use super::pack::{open_blob, read_header};
use super::reader::read_tree;
use super::snapshot::{Item, Snapshot};
use crate::pipeline::ChunkId;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub enum ReadData {
    None,
    All,
    /// Percentage of packs, chosen at random.
    Subset(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct DamagedPack {
    pub pack: PackId,
    pub reason: String,
    /// Snapshots that reference a chunk stored in this pack.
    pub snapshots: Vec<SnapshotId>,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub index_files: usize,
    pub packs_indexed: usize,
    pub packs_read: usize,
    pub blobs_read: u64,
    /// Packs in the store that no index lists: leftovers of interrupted runs, removed by prune.
    pub unindexed_packs: usize,
    /// Packs that prune has condemned or retired and deletes once the runs
    /// that might still use them have ended (docs/PRUNE.md); not damage.
    pub prune_pending_packs: usize,
    pub damaged_packs: Vec<DamagedPack>,
    /// Other problems: unreadable index or snapshot files, chunks missing from the index.
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.damaged_packs.is_empty() && self.errors.is_empty()
    }
}

/// Chunks each snapshot needs, including the file contents inside its trees.
async fn snapshot_chunks(repo: &Arc<Repository>, index: &Arc<Index>, snap: &Snapshot) -> Result<HashSet<ChunkId>> {
    let mut set: HashSet<ChunkId> = snap.manifest.direct_chunks().copied().collect();
    for item in &snap.manifest.items {
        if let Item::Tree { meta_chunks, .. } = item {
            for node in read_tree(repo, index, meta_chunks).await? {
                set.extend(node.chunks);
            }
        }
    }
    Ok(set)
}

pub async fn check(repo: &Arc<Repository>, read_data: ReadData) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // Snapshots are listed before the index is read, and packs after it: a
    // snapshot's index file is written before its manifest, and a pack before
    // its index file, so a backup committing meanwhile is never reported as damage.
    let listed = repo.store().list("snapshots/").await?;
    let records = super::prune::records::load(repo).await?;
    for (name, why) in &records.damaged {
        report.errors.push(format!("prune record {name}: {why}"));
    }
    let condemned = records.packs();
    report.prune_pending_packs = condemned.len();
    let mut packs = Vec::new();
    for (name, r) in repo.read_index_files().await? {
        report.index_files += 1;
        match r {
            Ok(p) => packs.extend(p),
            // Replaced by a concurrent prune (its successor is listed and read too).
            Err(RepoError::Store(e)) if e.is_not_found() => report.index_files -= 1,
            Err(e) => report.errors.push(format!("index file {name}: {}", chain(&e))),
        }
    }
    // Packs that prune condemned go last, so trees are read from packs that stay.
    let index = Arc::new(Index::build(&packs, &condemned));
    let stored: HashMap<String, u64> =
        repo.store().list("data/").await?.into_iter().map(|o| (o.name, o.size)).collect();
    let indexed: HashSet<PackId> = index.pack_ids().copied().collect();
    report.packs_indexed = indexed.len();
    let indexed_names: HashSet<String> = indexed.iter().map(PackId::object_name).collect();
    report.unindexed_packs = stored.keys().filter(|n| !indexed_names.contains(*n)).count();

    // Which snapshots need which chunks, to name the snapshots a damaged pack affects.
    let mut needs: Vec<(SnapshotId, HashSet<ChunkId>)> = Vec::new();
    for obj in &listed {
        let Some(id) = obj.name.strip_prefix("snapshots/").and_then(SnapshotId::from_hex) else {
            report.errors.push(format!("unexpected object {}", obj.name));
            continue;
        };
        let chunks = match repo.load_snapshot(id).await {
            Ok(s) => snapshot_chunks(repo, &index, &s).await,
            // Forgotten since it was listed.
            Err(RepoError::Store(e)) if e.is_not_found() => continue,
            Err(e) => Err(e),
        };
        report.snapshots += 1;
        match chunks {
            Ok(set) => {
                let missing = set.iter().filter(|c| !index.contains(c)).count();
                if missing > 0 {
                    report.errors.push(format!("snapshot {}: {missing} chunks are not in the index", id.short()));
                }
                needs.push((id, set));
            }
            Err(e) => report.errors.push(format!("snapshot {}: {}", id.short(), chain(&e))),
        }
    }

    let mut damaged: HashMap<PackId, String> = HashMap::new();
    for p in &indexed {
        if !stored.contains_key(&p.object_name()) {
            damaged.insert(*p, "missing from the store".into());
        }
    }
    let to_read = select_packs(&indexed, &stored, read_data);
    for pack in to_read {
        report.packs_read += 1;
        match verify_pack(repo, &index, &pack).await {
            Ok(n) => report.blobs_read += n,
            Err(reason) => {
                damaged.insert(pack, reason);
            }
        }
    }
    forget_pruned(repo, &mut damaged).await?;
    for (pack, reason) in damaged {
        let in_pack: HashSet<ChunkId> = index.chunks_in_pack(&pack).into_iter().collect();
        let mut snapshots: Vec<SnapshotId> =
            needs.iter().filter(|(_, set)| !set.is_disjoint(&in_pack)).map(|(id, _)| *id).collect();
        snapshots.sort();
        report.damaged_packs.push(DamagedPack { pack, reason, snapshots });
    }
    report.damaged_packs.sort_by_key(|d| d.pack);
    Ok(report)
}

/// A prune running alongside may retire a pack (rewrite the index without it)
/// and delete it after we read the index. Such a pack is gone from the store
/// *and* from every current index file; any other missing or unreadable pack
/// stays reported.
async fn forget_pruned(repo: &Arc<Repository>, damaged: &mut HashMap<PackId, String>) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    let mut still_indexed = HashSet::new();
    for (_, r) in repo.read_index_files().await? {
        match r {
            Ok(packs) => still_indexed.extend(packs.into_iter().map(|p| p.id)),
            // Cannot tell: keep every report.
            Err(_) => return Ok(()),
        }
    }
    let mut pruned = Vec::new();
    for pack in damaged.keys() {
        if !still_indexed.contains(pack) {
            match repo.store().size(&pack.object_name()).await {
                Err(e) if e.is_not_found() => pruned.push(*pack),
                _ => {}
            }
        }
    }
    for p in pruned {
        damaged.remove(&p);
    }
    Ok(())
}

fn select_packs(indexed: &HashSet<PackId>, stored: &HashMap<String, u64>, read_data: ReadData) -> Vec<PackId> {
    let mut present: Vec<PackId> = indexed.iter().filter(|p| stored.contains_key(&p.object_name())).copied().collect();
    present.sort();
    match read_data {
        ReadData::None => Vec::new(),
        ReadData::All => present,
        ReadData::Subset(pct) => {
            let want = ((present.len() as f64) * pct / 100.0).ceil() as usize;
            // Random order via keyed hashes of the ids with a fresh random key.
            let mut key = [0u8; 32];
            let _ = getrandom::fill(&mut key);
            present.sort_by_key(|p| *blake3::keyed_hash(&key, &p.0).as_bytes());
            present.truncate(want.min(present.len()));
            present
        }
    }
}

/// Read a whole pack: its id must match its bytes, its header must decrypt and
/// agree with the index, and every blob must decrypt and match its chunk id.
async fn verify_pack(repo: &Arc<Repository>, index: &Arc<Index>, pack: &PackId) -> std::result::Result<u64, String> {
    let bytes = repo.store().get(&pack.object_name()).await.map_err(|e| chain(&e))?;
    let (repo, index, pack) = (repo.clone(), index.clone(), *pack);
    tokio::task::spawn_blocking(move || {
        let (key, entries) = read_header(&repo.keys().data, &pack, &bytes).map_err(|e| e.to_string())?;
        if index.pack_salt(&pack).is_some_and(|s| bytes.get(..32) != Some(&s[..])) {
            return Err("salt differs from the index".to_string());
        }
        let mut bad = Vec::new();
        for e in &entries {
            let range = e.offset as usize..(e.offset as usize).saturating_add(e.length as usize);
            match bytes.get(range) {
                Some(sealed) => {
                    if let Err(err) = open_blob(&key, &repo.keys().id, e, sealed, &pack) {
                        bad.push(err.to_string());
                    }
                }
                None => bad.push(format!("blob {} out of range", e.id)),
            }
            if let Some((p, _, loc)) = index.locate(&e.id)
                && p == pack
                && loc != *e
            {
                bad.push(format!("blob {} position differs from the index", e.id));
            }
        }
        if bad.is_empty() { Ok(entries.len() as u64) } else { Err(bad.join("; ")) }
    })
    .await
    .map_err(|e| e.to_string())?
}
