//! Reading the chunks of many destinations (the files of a tree restore) at
//! once, planned by pack.
//!
//! Reading chunk by chunk, file by file, costs one store request per small
//! file, one after the other: on S3 that is one round trip (plus whatever the
//! server adds) per file. Here every chunk the destinations need is located
//! first; the chunks of each pack are sorted by offset and neighbouring ones
//! merged into one range read; the range reads run several at a time; each
//! range is decrypted and verified on a blocking thread (one key derivation
//! per range, not per blob) and every verified blob is handed to the sink
//! once per place it occupies, so a chunk shared by several files (or used
//! twice in one) is read once.
//!
//! Every blob is verified (AEAD tag, then chunk id) before the sink sees it.
//! Memory stays bounded by the store's read concurrency times [`MAX_FETCH`]
//! (plus one blob per range being decoded), whatever the destinations' size.

use super::Repository;
use super::error::{RepoError, Result};
use super::ids::PackId;
use super::index::Index;
use super::pack::{BlobEntry, SALT_LEN, open_blob};
use crate::pipeline::ChunkId;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A range read stops growing at this many bytes (unless one blob is larger).
pub const MAX_FETCH: u64 = 4 << 20;
/// Blobs this close in a pack are read in one request, gap included: reading
/// a few unused bytes costs less than another request.
pub const MAX_GAP: u64 = 256 << 10;

/// Where one chunk's plaintext belongs: destination `dest`, at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub dest: usize,
    pub offset: u64,
}

/// One stored blob and every place its plaintext goes.
#[derive(Debug)]
struct Blob {
    entry: BlobEntry,
    places: Vec<Place>,
}

/// One range read: bytes `start..end` of a pack and the blobs inside it.
#[derive(Debug)]
struct Fetch {
    pack: PackId,
    salt: [u8; SALT_LEN],
    start: u64,
    end: u64,
    blobs: Vec<Blob>,
}

/// The range reads that fill a set of destinations.
#[derive(Debug)]
pub struct ReadPlan {
    fetches: Vec<Fetch>,
    sizes: Vec<u64>,
}

impl ReadPlan {
    /// Plan the reads for `dests`, each a list of chunks in order. Fails with
    /// `MissingChunk` before anything is read if the index lacks a chunk.
    pub fn new(index: &Index, dests: &[&[ChunkId]]) -> Result<Self> {
        let mut sizes = Vec::with_capacity(dests.len());
        // Pack -> (salt, chunk -> blob): each chunk is read once however often it is used.
        // Ordered by pack so that a plan (and a local disk's read order) is reproducible.
        let mut by_pack: BTreeMap<PackId, ([u8; SALT_LEN], HashMap<ChunkId, Blob>)> = BTreeMap::new();
        for (dest, chunks) in dests.iter().enumerate() {
            let mut offset = 0u64;
            for id in chunks.iter() {
                let (pack, salt, entry) =
                    index.locate(id).ok_or_else(|| RepoError::MissingChunk { chunk: id.to_hex() })?;
                let blobs = &mut by_pack.entry(pack).or_insert_with(|| (salt, HashMap::new())).1;
                blobs
                    .entry(*id)
                    .or_insert_with(|| Blob { entry, places: Vec::new() })
                    .places
                    .push(Place { dest, offset });
                offset += u64::from(entry.raw_len);
            }
            sizes.push(offset);
        }
        let mut fetches: Vec<Fetch> = Vec::new();
        for (pack, (salt, blobs)) in by_pack {
            let mut blobs: Vec<Blob> = blobs.into_values().collect();
            blobs.sort_by_key(|b| b.entry.offset);
            for blob in blobs {
                let (start, end) = (blob.entry.offset, blob.entry.offset + u64::from(blob.entry.length));
                match fetches.last_mut() {
                    Some(f) if f.pack == pack && start <= f.end + MAX_GAP && end - f.start <= MAX_FETCH => {
                        f.end = f.end.max(end);
                        f.blobs.push(blob);
                    }
                    _ => fetches.push(Fetch { pack, salt, start, end, blobs: vec![blob] }),
                }
            }
        }
        Ok(Self { fetches, sizes })
    }

    /// Plaintext size of each destination, in the order given to [`ReadPlan::new`].
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// How many store requests the plan makes.
    pub fn requests(&self) -> usize {
        self.fetches.len()
    }

    /// Run the reads, `repo.store().read_concurrency()` at a time and no
    /// more than `permits` allows (one permit per read, held until its blobs
    /// are delivered, shared by plans executed side by side), and hand every
    /// verified blob to `sink` once per place, on a blocking thread (the sink
    /// usually writes to files). Places arrive in no particular order.
    /// Returns the plaintext bytes delivered. On error, reads still running
    /// are abandoned; the sink may have been called for other blobs.
    pub async fn execute<F>(self, repo: &Arc<Repository>, permits: &Arc<Semaphore>, sink: Arc<F>) -> Result<u64>
    where
        F: Fn(Place, &[u8]) -> Result<()> + Send + Sync + 'static,
    {
        let concurrency = repo.store().read_concurrency().max(1);
        stream::iter(self.fetches)
            .map(|f| run_fetch(repo, permits, f, sink.clone()))
            .buffer_unordered(concurrency)
            .try_fold(0u64, |total, n| async move { Ok(total + n) })
            .await
    }
}

/// Read one range, then open each blob in it and deliver it.
async fn run_fetch<F>(repo: &Arc<Repository>, permits: &Arc<Semaphore>, f: Fetch, sink: Arc<F>) -> Result<u64>
where
    F: Fn(Place, &[u8]) -> Result<()> + Send + Sync + 'static,
{
    let permit = permits.clone().acquire_owned().await.map_err(|e| RepoError::Pipeline(e.to_string()))?;
    let sealed = repo.store().get_range(&f.pack.object_name(), f.start, f.end - f.start).await.map_err(|e| {
        if e.is_not_found() {
            RepoError::corrupt(format!("pack {}", f.pack), "missing from the store")
        } else {
            e.into()
        }
    })?;
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let key = repo.keys().data.derive(&f.salt);
        let mut delivered = 0u64;
        for blob in &f.blobs {
            let at = (blob.entry.offset - f.start) as usize;
            let bytes = sealed
                .get(at..at + blob.entry.length as usize)
                .ok_or_else(|| RepoError::corrupt(format!("pack {}", f.pack), "blob out of range"))?;
            let data = open_blob(&key, &repo.keys().id, &blob.entry, bytes, &f.pack)?;
            for place in &blob.places {
                sink(*place, &data)?;
                delivered += data.len() as u64;
            }
        }
        Ok(delivered)
    })
    .await
    .map_err(|e| RepoError::Pipeline(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::IndexedPack;

    fn chunk(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    fn pack(n: u8, blobs: &[(u8, u64, u32)]) -> IndexedPack {
        IndexedPack {
            id: PackId::of_bytes(&[n]),
            salt: [n; SALT_LEN],
            blobs: blobs
                .iter()
                .map(|&(c, offset, length)| BlobEntry { id: chunk(c), offset, length, raw_len: length * 2 })
                .collect(),
        }
    }

    #[test]
    fn neighbours_share_a_read_and_shared_chunks_are_read_once() {
        let far = MAX_GAP + 1000;
        let p1 = pack(1, &[(1, 0, 100), (2, 100, 100), (3, 200 + far, 100)]);
        let p2 = pack(2, &[(4, 0, 50)]);
        let index = Index::build([&p1, &p2], &Default::default());
        let a = [chunk(1), chunk(4), chunk(1)];
        let b = [chunk(2), chunk(3)];
        let empty: [ChunkId; 0] = [];
        let plan = ReadPlan::new(&index, &[&a, &b, &empty]).unwrap();
        assert_eq!(plan.sizes(), &[200 + 100 + 200, 200 + 200, 0]);
        // 1 and 2 are neighbours; 3 is too far; 4 is in another pack.
        assert_eq!(plan.requests(), 3);
        let first = plan.fetches.iter().find(|f| f.start == 0 && f.pack == p1.id).unwrap();
        assert_eq!((first.end, first.blobs.len()), (200, 2));
        let one = first.blobs.iter().find(|b| b.entry.id == chunk(1)).unwrap();
        assert_eq!(one.places, vec![Place { dest: 0, offset: 0 }, Place { dest: 0, offset: 300 }]);
    }

    #[test]
    fn reads_stay_bounded_and_unknown_chunks_fail_first() {
        let blobs: Vec<(u8, u64, u32)> = (0..10).map(|i| (i, u64::from(i) * (1 << 20), 1 << 20)).collect();
        let index = Index::build([&pack(1, &blobs)], &Default::default());
        let all: Vec<ChunkId> = (0..10).map(chunk).collect();
        let plan = ReadPlan::new(&index, &[&all]).unwrap();
        assert!(plan.fetches.iter().all(|f| f.end - f.start <= MAX_FETCH));
        assert_eq!(plan.requests(), 3);
        let missing = [chunk(1), chunk(99)];
        assert!(matches!(ReadPlan::new(&index, &[&missing]), Err(RepoError::MissingChunk { .. })));
    }
}
