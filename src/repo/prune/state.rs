//! What prune reads before deciding anything: index files, stored packs, and
//! the chunks snapshots reference.
//!
//! Unlike `load_index`, prune is strict: a damaged index file would make its
//! packs look unindexed and a damaged snapshot would make its chunks look
//! unused, so either stops prune before anything is decided.

use crate::pipeline::ChunkId;
use crate::repo::Repository;
use crate::repo::error::{RepoError, Result};
use crate::repo::ids::{PackId, SnapshotId};
use crate::repo::index::{Index, IndexedPack};
use crate::repo::reader::read_tree;
use crate::repo::snapshot::Item;
use futures_util::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// In which order the listings are taken; each protocol step needs its own
/// (docs/PRUNE.md, "Order of reads").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Packs, then snapshots, then index files: for condemning. A pack listed
    /// before the index was read and absent from it is unindexed at that
    /// moment, and its writer (if alive) holds a lock listed later.
    PacksFirst,
    /// Snapshots, then index files, then packs: for retiring. An indexed pack
    /// missing from the later listing is really missing.
    PacksLast,
}

pub struct State {
    /// Index files by name, with the packs each lists.
    pub files: Vec<(String, Vec<IndexedPack>)>,
    /// Stored packs and their sizes.
    pub stored: HashMap<PackId, u64>,
    /// Chunks that some listed snapshot needs (tree contents included).
    pub referenced: HashSet<ChunkId>,
    pub snapshots: usize,
}

impl State {
    pub async fn load(
        repo: &Arc<Repository>,
        order: Order,
        usage: &mut Usage,
        condemned: &HashSet<PackId>,
    ) -> Result<Self> {
        let mut stored = if order == Order::PacksFirst { Some(list_packs(repo).await?) } else { None };
        // Snapshots are listed before the index is read: a snapshot's index file
        // is written before its manifest, so every chunk it needs is in what we read.
        let ids = repo.snapshot_ids().await?;
        // Binlog records, like manifests, are written after their index file.
        let logs = crate::repo::binlogcat::referenced_chunks(repo).await?;
        let files = read_index_strict(repo).await?;
        if stored.is_none() {
            stored = Some(list_packs(repo).await?);
        }
        let index = Arc::new(Index::build(files.iter().flat_map(|(_, p)| p), condemned));
        let mut referenced = usage.referenced(repo, &index, ids).await?;
        referenced.extend(logs);
        Ok(State { files, stored: stored.unwrap_or_default(), referenced, snapshots: usage.cache.len() })
    }

    /// Every pack that an index file lists (once, in file order).
    pub fn indexed(&self) -> HashMap<PackId, &IndexedPack> {
        let mut out = HashMap::new();
        for p in self.files.iter().flat_map(|(_, packs)| packs) {
            out.entry(p.id).or_insert(p);
        }
        out
    }
}

/// Stored packs by id; names under `data/` that are not pack names are ignored.
pub async fn list_packs(repo: &Repository) -> Result<HashMap<PackId, u64>> {
    Ok(repo
        .store()
        .list("data/")
        .await?
        .into_iter()
        .filter_map(|o| {
            let id = o.name.rsplit('/').next().and_then(PackId::from_hex)?;
            (id.object_name() == o.name).then_some((id, o.size))
        })
        .collect())
}

async fn read_index_strict(repo: &Repository) -> Result<Vec<(String, Vec<IndexedPack>)>> {
    let mut out = Vec::new();
    for (name, r) in repo.read_index_files().await? {
        match r {
            Ok(packs) => out.push((name, packs)),
            Err(RepoError::Store(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Chunks each snapshot references, cached across the steps of one run:
/// a snapshot id names immutable content, so its chunk set never changes.
#[derive(Default)]
pub struct Usage {
    cache: HashMap<SnapshotId, Arc<Vec<ChunkId>>>,
}

impl Usage {
    /// The union of the chunks the snapshots `ids` need. Snapshots deleted since
    /// they were listed are skipped; damaged ones stop prune.
    async fn referenced(
        &mut self,
        repo: &Arc<Repository>,
        index: &Arc<Index>,
        ids: Vec<SnapshotId>,
    ) -> Result<HashSet<ChunkId>> {
        let wanted: HashSet<SnapshotId> = ids.iter().copied().collect();
        self.cache.retain(|id, _| wanted.contains(id));
        let new: Vec<SnapshotId> = ids.into_iter().filter(|id| !self.cache.contains_key(id)).collect();
        let loaded: Vec<Result<Option<SnapshotChunks>>> =
            stream::iter(new).map(|id| snapshot_chunks(repo, index, id)).buffer_unordered(8).collect().await;
        for r in loaded {
            if let Some((id, chunks)) = r? {
                self.cache.insert(id, Arc::new(chunks));
            }
        }
        Ok(self.cache.values().flat_map(|c| c.iter().copied()).collect())
    }
}

/// A snapshot and every chunk it needs, sorted.
type SnapshotChunks = (SnapshotId, Vec<ChunkId>);

async fn snapshot_chunks(repo: &Arc<Repository>, index: &Arc<Index>, id: SnapshotId) -> Result<Option<SnapshotChunks>> {
    let snap = match repo.load_snapshot(id).await {
        Ok(s) => s,
        // Forgotten since it was listed: it needs nothing any more.
        Err(RepoError::Store(e)) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut chunks: Vec<ChunkId> = snap.manifest.direct_chunks().copied().collect();
    for item in &snap.manifest.items {
        if let Item::Tree { meta_chunks, .. } = item {
            for node in read_tree(repo, index, meta_chunks).await? {
                chunks.extend(node.chunks);
            }
        }
    }
    chunks.sort();
    chunks.dedup();
    Ok(Some((id, chunks)))
}
