//! The index: chunk id -> (pack, offset, length), loaded from sealed index files.
//!
//! An index file is written only after every pack it lists is stored, so an
//! indexed chunk is always readable (barring damage, which `check` finds).
//!
//! Packs that a prune record condemns (docs/PRUNE.md) stay readable, but a
//! backup must not deduplicate against a chunk whose only copies are in them:
//! such chunks are [`Index::contains`] but not [`Index::reusable`].

use super::error::{RepoError, Result};
use super::ids::PackId;
use super::pack::{BLOB_ENTRY_LEN, BlobEntry, SALT_LEN, parse_entry, write_entry};
use crate::pipeline::ChunkId;
use std::collections::{HashMap, HashSet};

const MAGIC: &[u8; 4] = b"DRIX";

/// One pack's entry in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    pub id: PackId,
    pub salt: [u8; SALT_LEN],
    pub blobs: Vec<BlobEntry>,
}

/// Location of a chunk: which pack (by position in `Index::packs`) and where.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub pack: u32,
    pub entry: BlobEntry,
}

/// In-memory union of all index files.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<(PackId, [u8; SALT_LEN])>,
    pack_pos: HashMap<PackId, u32>,
    chunks: HashMap<ChunkId, Location>,
    /// Chunks whose every copy is in a condemned pack (see [`Index::add_condemned_pack`]).
    condemned_only: HashSet<ChunkId>,
}

impl Index {
    pub fn add_pack(&mut self, p: &IndexedPack) {
        let pos = *self.pack_pos.entry(p.id).or_insert_with(|| {
            self.packs.push((p.id, p.salt));
            (self.packs.len() - 1) as u32
        });
        for b in &p.blobs {
            // First writer wins: duplicates (from concurrent backups) are equivalent.
            self.chunks.entry(b.id).or_insert(Location { pack: pos, entry: *b });
        }
    }

    /// Add a pack that a prune record condemns. Must be called after every
    /// live pack was added: first writer wins in `add_pack`, so readers then
    /// locate a chunk in a pack that stays whenever one has it, and a chunk
    /// first seen here has no live copy and is not [`Index::reusable`].
    pub fn add_condemned_pack(&mut self, p: &IndexedPack) {
        for b in &p.blobs {
            if !self.chunks.contains_key(&b.id) {
                self.condemned_only.insert(b.id);
            }
        }
        self.add_pack(p);
    }

    /// Build from index-file contents, with `condemned` packs added last.
    pub fn build<'a>(packs: impl IntoIterator<Item = &'a IndexedPack>, condemned: &HashSet<PackId>) -> Index {
        let mut idx = Index::default();
        let mut later = Vec::new();
        for p in packs {
            if condemned.contains(&p.id) { later.push(p) } else { idx.add_pack(p) }
        }
        later.into_iter().for_each(|p| idx.add_condemned_pack(p));
        idx
    }

    /// Whether any indexed pack holds the chunk (it can be read).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// Whether a backup may reference the chunk without storing it again: it
    /// is indexed in a pack that no prune record condemns.
    pub fn reusable(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id) && !self.condemned_only.contains(id)
    }

    pub fn locate(&self, id: &ChunkId) -> Option<(PackId, [u8; SALT_LEN], BlobEntry)> {
        let loc = self.chunks.get(id)?;
        let (pack, salt) = self.packs.get(loc.pack as usize)?;
        Some((*pack, *salt, loc.entry))
    }

    pub fn pack_ids(&self) -> impl Iterator<Item = &PackId> {
        self.packs.iter().map(|(id, _)| id)
    }

    pub fn pack_salt(&self, id: &PackId) -> Option<[u8; SALT_LEN]> {
        self.pack_pos.get(id).map(|&p| self.packs[p as usize].1)
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Every chunk whose (first-indexed) copy lives in `pack`.
    pub fn chunks_in_pack(&self, pack: &PackId) -> Vec<ChunkId> {
        let Some(&pos) = self.pack_pos.get(pack) else {
            return Vec::new();
        };
        self.chunks.iter().filter(|(_, l)| l.pack == pos).map(|(id, _)| *id).collect()
    }
}

/// Serialise index entries (plaintext of an index file; see docs/FORMAT.md).
pub fn encode(packs: &[IndexedPack]) -> Vec<u8> {
    let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
    let mut out = Vec::with_capacity(9 + packs.len() * 68 + blobs * BLOB_ENTRY_LEN);
    out.extend_from_slice(MAGIC);
    out.push(1);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.id.0);
        out.extend_from_slice(&p.salt);
        out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
        for b in &p.blobs {
            write_entry(&mut out, b);
        }
    }
    out
}

pub fn decode(object: &str, data: &[u8]) -> Result<Vec<IndexedPack>> {
    let bad = |why: &str| RepoError::corrupt(object.to_string(), why);
    if data.len() < 9 || &data[..4] != MAGIC || data[4] != 1 {
        return Err(bad("not an index file of version 1"));
    }
    let count = u32::from_le_bytes([data[5], data[6], data[7], data[8]]) as usize;
    let mut rest = &data[9..];
    let mut packs = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        if rest.len() < 68 {
            return Err(bad("truncated pack record"));
        }
        let id = PackId(rest[..32].try_into().map_err(|_| bad("pack id"))?);
        let salt: [u8; SALT_LEN] = rest[32..64].try_into().map_err(|_| bad("salt"))?;
        let n = u32::from_le_bytes([rest[64], rest[65], rest[66], rest[67]]) as usize;
        rest = &rest[68..];
        let need = n.checked_mul(BLOB_ENTRY_LEN).ok_or_else(|| bad("blob count"))?;
        if rest.len() < need {
            return Err(bad("truncated blob records"));
        }
        let blobs = rest[..need]
            .chunks_exact(BLOB_ENTRY_LEN)
            .map(parse_entry)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("blob record"))?;
        rest = &rest[need..];
        packs.push(IndexedPack { id, salt, blobs });
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_lookup() {
        let blob = BlobEntry { id: ChunkId([5; 32]), offset: 32, length: 100, raw_len: 70 };
        let p = IndexedPack { id: PackId([1; 32]), salt: [2; 32], blobs: vec![blob] };
        let bytes = encode(std::slice::from_ref(&p));
        let back = decode("index/x", &bytes).unwrap();
        assert_eq!(back, vec![p.clone()]);
        assert!(decode("index/x", &bytes[..bytes.len() - 1]).is_err());
        let mut idx = Index::default();
        idx.add_pack(&p);
        assert_eq!(idx.locate(&ChunkId([5; 32])).unwrap().0, PackId([1; 32]));
        assert!(!idx.contains(&ChunkId([6; 32])));
        assert_eq!(idx.chunks_in_pack(&PackId([1; 32])), vec![ChunkId([5; 32])]);
    }

    #[test]
    fn condemned_copies_are_readable_but_not_reusable() {
        let entry = |c: u8| BlobEntry { id: ChunkId([c; 32]), offset: 32, length: 10, raw_len: 5 };
        let old = IndexedPack { id: PackId([1; 32]), salt: [0; 32], blobs: vec![entry(7), entry(8)] };
        let new = IndexedPack { id: PackId([2; 32]), salt: [0; 32], blobs: vec![entry(8)] };
        let condemned: HashSet<PackId> = [old.id].into();
        // Whatever the order of the index files, the live copy wins.
        for files in [vec![&old, &new], vec![&new, &old]] {
            let idx = Index::build(files, &condemned);
            assert!(idx.contains(&ChunkId([7; 32])) && !idx.reusable(&ChunkId([7; 32])));
            assert!(idx.reusable(&ChunkId([8; 32])));
            assert_eq!(idx.locate(&ChunkId([8; 32])).unwrap().0, new.id);
            assert_eq!(idx.locate(&ChunkId([7; 32])).unwrap().0, old.id);
        }
    }
}
