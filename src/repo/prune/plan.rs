//! Deciding what is garbage: pure, from a [`State`] and the packs that prune
//! records already name.
//!
//! Every chunk a snapshot references gets one *keeper* copy, chosen among the
//! stored, indexed packs that no record names, preferring the pack with the
//! highest share of referenced bytes (so duplicates left by concurrent
//! backups or by an interrupted repack end up in the emptier pack). A pack
//! holding no keeper is unused; one whose keepers fill less than the repack
//! threshold is repacked.

use super::state::State;
use crate::pipeline::ChunkId;
use crate::repo::ids::PackId;
use crate::repo::pack::{BlobEntry, SALT_LEN};
use std::collections::{HashMap, HashSet};

/// A pack whose keeper blobs are copied to new packs before it is condemned.
#[derive(Debug, Clone)]
pub struct Repack {
    pub pack: PackId,
    pub size: u64,
    pub salt: [u8; SALT_LEN],
    /// The blobs to copy, as the index lists them.
    pub keep: Vec<BlobEntry>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Indexed packs no snapshot needs anything from: (pack, stored size).
    pub unused: Vec<(PackId, u64)>,
    pub repack: Vec<Repack>,
    /// Stored packs that no index file lists.
    pub unindexed: Vec<(PackId, u64)>,
    /// Referenced chunks that no index file lists at all: damage.
    pub missing: Vec<ChunkId>,
    /// Indexed packs missing from the (earlier) pack listing that hold the
    /// only copies of referenced chunks: new since the listing, or gone
    /// (damage). The caller asks the store before deciding anything.
    pub unconfirmed: Vec<PackId>,
    /// Stored packs examined, and their bytes.
    pub packs: usize,
    pub bytes: u64,
    /// Bytes of the keeper copies (what the repository needs).
    pub used_bytes: u64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.unused.is_empty() && self.repack.is_empty() && self.unindexed.is_empty()
    }
}

/// `repack_percent`: repack a pack when more than this percentage of its blob
/// bytes is garbage (100 never repacks).
pub fn plan(state: &State, recorded: &HashSet<PackId>, repack_percent: u8) -> Plan {
    let indexed = state.indexed();
    let candidate = |p: &PackId| state.stored.contains_key(p) && !recorded.contains(p);
    let mut plan = Plan { packs: state.stored.len(), bytes: state.stored.values().sum(), ..Plan::default() };

    // Share of each candidate pack's bytes that snapshots reference.
    let mut share: HashMap<PackId, f64> = HashMap::new();
    for (id, p) in &indexed {
        if candidate(id) {
            let used: u64 =
                unique_blobs(&p.blobs).filter(|b| state.referenced.contains(&b.id)).map(|b| b.length as u64).sum();
            let size = state.stored.get(id).copied().unwrap_or(1).max(1);
            share.insert(*id, used as f64 / size as f64);
        }
    }
    // One keeper per referenced chunk: the fullest candidate pack, ties by id.
    let mut keeper: HashMap<ChunkId, PackId> = HashMap::new();
    let mut present: HashSet<ChunkId> = HashSet::new();
    for (id, p) in &indexed {
        for b in p.blobs.iter().filter(|b| state.referenced.contains(&b.id)) {
            present.insert(b.id);
            let Some(&s) = share.get(id) else { continue };
            let better = match keeper.get(&b.id) {
                None => true,
                Some(k) => {
                    let ks = share.get(k).copied().unwrap_or(0.0);
                    s > ks || (s == ks && id < k)
                }
            };
            if better {
                keeper.insert(b.id, *id);
            }
        }
    }
    let mut missing: Vec<ChunkId> = state.referenced.iter().filter(|c| !present.contains(c)).copied().collect();
    missing.sort();
    plan.missing = missing;
    let mut unconfirmed: HashSet<PackId> = HashSet::new();
    for (id, p) in &indexed {
        if !state.stored.contains_key(id)
            && !recorded.contains(id)
            && p.blobs.iter().any(|b| state.referenced.contains(&b.id) && !keeper.contains_key(&b.id))
        {
            unconfirmed.insert(*id);
        }
    }
    plan.unconfirmed = unconfirmed.into_iter().collect();
    plan.unconfirmed.sort();

    let mut ids: Vec<&PackId> = indexed.keys().filter(|id| candidate(id)).collect();
    ids.sort();
    for id in ids {
        let p = indexed[id];
        let size = state.stored[id];
        let keep: Vec<BlobEntry> = unique_blobs(&p.blobs).filter(|b| keeper.get(&b.id) == Some(id)).copied().collect();
        let total: u64 = p.blobs.iter().map(|b| b.length as u64).sum();
        let used: u64 = keep.iter().map(|b| b.length as u64).sum();
        plan.used_bytes += used;
        let garbage = total - used.min(total);
        if keep.is_empty() {
            plan.unused.push((*id, size));
        } else if garbage > 0 && garbage * 100 > u64::from(repack_percent) * total {
            plan.repack.push(Repack { pack: *id, size, salt: p.salt, keep });
        }
    }
    let mut unindexed: Vec<(PackId, u64)> = state
        .stored
        .iter()
        .filter(|(id, _)| !indexed.contains_key(id) && !recorded.contains(id))
        .map(|(i, s)| (*i, *s))
        .collect();
    unindexed.sort();
    plan.unindexed = unindexed;
    plan
}

/// A pack's blobs, each chunk once.
fn unique_blobs(blobs: &[BlobEntry]) -> impl Iterator<Item = &BlobEntry> {
    let mut seen = HashSet::new();
    blobs.iter().filter(move |b| seen.insert(b.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::IndexedPack;

    fn blob(c: u8, len: u32) -> BlobEntry {
        BlobEntry { id: ChunkId([c; 32]), offset: 32, length: len, raw_len: len }
    }

    fn pack(id: u8, blobs: Vec<BlobEntry>) -> IndexedPack {
        IndexedPack { id: PackId([id; 32]), salt: [0; 32], blobs }
    }

    fn state(packs: Vec<IndexedPack>, unindexed: &[u8], referenced: &[u8]) -> State {
        let mut stored: HashMap<PackId, u64> =
            packs.iter().map(|p| (p.id, p.blobs.iter().map(|b| b.length as u64).sum::<u64>() + 100)).collect();
        stored.extend(unindexed.iter().map(|&u| (PackId([u; 32]), 1000)));
        State {
            files: vec![("index/a".into(), packs)],
            stored,
            referenced: referenced.iter().map(|&c| ChunkId([c; 32])).collect(),
            snapshots: 1,
        }
    }

    #[test]
    fn classifies_unused_repack_keep_and_unindexed() {
        let s = state(
            vec![
                pack(1, vec![blob(10, 1000), blob(11, 1000)]), // all used: keep
                pack(2, vec![blob(20, 1000)]),                 // unused
                pack(3, vec![blob(30, 100), blob(31, 5000)]),  // mostly garbage: repack
                pack(4, vec![blob(40, 3000), blob(41, 2000)]), // 40% garbage: keep
            ],
            &[9],
            &[10, 11, 30, 40],
        );
        let p = plan(&s, &HashSet::new(), 50);
        assert_eq!(p.unused, vec![(PackId([2; 32]), 1100)]);
        assert_eq!(p.repack.len(), 1);
        assert_eq!(p.repack[0].pack, PackId([3; 32]));
        assert_eq!(p.repack[0].keep, vec![blob(30, 100)]);
        assert_eq!(p.unindexed, vec![(PackId([9; 32]), 1000)]);
        assert!(p.missing.is_empty());
        // 100 never repacks; recorded packs are left alone.
        assert!(plan(&s, &HashSet::new(), 100).repack.is_empty());
        let recorded: HashSet<PackId> = [PackId([2; 32]), PackId([9; 32])].into();
        let p = plan(&s, &recorded, 50);
        assert!(p.unused.is_empty() && p.unindexed.is_empty());
    }

    #[test]
    fn duplicates_are_kept_once_in_the_fuller_pack() {
        // Pack 5 is what an interrupted repack of pack 6 wrote: both hold chunk 50.
        let s = state(vec![pack(6, vec![blob(50, 1000), blob(51, 9000)]), pack(5, vec![blob(50, 1000)])], &[], &[50]);
        let p = plan(&s, &HashSet::new(), 50);
        assert_eq!(p.unused, vec![(PackId([6; 32]), 10100)]);
        assert!(p.repack.is_empty());
    }

    #[test]
    fn missing_chunks_are_reported_and_condemned_copies_count_as_present() {
        let s = state(vec![pack(7, vec![blob(70, 10)])], &[], &[70, 71]);
        assert_eq!(plan(&s, &HashSet::new(), 50).missing, vec![ChunkId([71; 32])]);
        let recorded: HashSet<PackId> = [PackId([7; 32])].into();
        let p = plan(&s, &recorded, 50);
        assert_eq!(p.missing, vec![ChunkId([71; 32])]);
        assert!(p.unused.is_empty());
        // Indexed but not in the pack listing: the only copy of chunk 70 is unconfirmed.
        let mut s = state(vec![pack(7, vec![blob(70, 10)])], &[], &[70]);
        s.stored.clear();
        assert_eq!(plan(&s, &HashSet::new(), 50).unconfirmed, vec![PackId([7; 32])]);
    }
}
