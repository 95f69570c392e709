//! Packs: many sealed blobs in one stored object, with a sealed header.
//!
//! Layout: `salt (32) || blob* || sealed header || header length (u32 LE)`.
//! The pack key is derived from the data key and the salt, so every pack has
//! its own AES-GCM key. See docs/FORMAT.md.

use super::error::{RepoError, Result};
use super::ids::PackId;
use crate::pipeline::{ChunkId, SealKey};

pub const SALT_LEN: usize = 32;
pub const BLOB_AAD: &[u8] = b"drtool blob v1";
pub const HEADER_AAD: &[u8] = b"drtool pack header v1";
const HEADER_MAGIC: &[u8; 4] = b"DRPK";
const ENTRY_LEN: usize = 32 + 8 + 4 + 4;

/// Where one blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: ChunkId,
    pub offset: u64,
    /// Stored (sealed) length.
    pub length: u32,
    /// Plaintext chunk length.
    pub raw_len: u32,
}

/// A pack ready to upload.
pub struct FinishedPack {
    pub id: PackId,
    pub salt: [u8; SALT_LEN],
    pub bytes: Vec<u8>,
    pub entries: Vec<BlobEntry>,
}

/// Accumulates sealed blobs; `finish` takes it by value because an
/// unfinished pack has no header and must never be stored.
pub struct PackBuilder {
    key: SealKey,
    salt: [u8; SALT_LEN],
    bytes: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackBuilder {
    pub fn new(data_key: &SealKey, capacity: usize) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| RepoError::Pipeline(format!("random: {e}")))?;
        let mut bytes = Vec::with_capacity(capacity);
        bytes.extend_from_slice(&salt);
        Ok(Self { key: data_key.derive(&salt), salt, bytes, entries: Vec::new() })
    }

    /// Seal an encoded blob (codec byte || payload) and append it.
    pub fn add(&mut self, id: ChunkId, encoded: &[u8], raw_len: usize) -> Result<()> {
        let sealed = self.key.seal(BLOB_AAD, encoded).map_err(|e| RepoError::seal("blob", e))?;
        self.entries.push(BlobEntry {
            id,
            offset: self.bytes.len() as u64,
            length: sealed.len() as u32,
            raw_len: raw_len as u32,
        });
        self.bytes.extend_from_slice(&sealed);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(mut self) -> Result<FinishedPack> {
        let mut header = Vec::with_capacity(9 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(HEADER_MAGIC);
        header.push(1);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            write_entry(&mut header, e);
        }
        let sealed = self.key.seal(HEADER_AAD, &header).map_err(|e| RepoError::seal("pack header", e))?;
        self.bytes.extend_from_slice(&sealed);
        self.bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        Ok(FinishedPack {
            id: PackId::of_bytes(&self.bytes),
            salt: self.salt,
            bytes: self.bytes,
            entries: self.entries,
        })
    }
}

/// Decrypt and decode one stored blob, verifying its chunk id.
pub fn open_blob(
    pack_key: &SealKey,
    id_key: &crate::pipeline::IdKey,
    entry: &BlobEntry,
    sealed: &[u8],
    pack: &PackId,
) -> Result<Vec<u8>> {
    let object = || format!("pack {pack} blob {}", entry.id.to_hex());
    let encoded = pack_key.open(BLOB_AAD, sealed).map_err(|e| RepoError::seal(object(), e))?;
    let data =
        crate::pipeline::decompress(&encoded, entry.raw_len as usize).map_err(|e| RepoError::corrupt(object(), e))?;
    if id_key.id_of(&data) != entry.id {
        return Err(RepoError::corrupt(object(), "content does not match its chunk id"));
    }
    Ok(data)
}

/// Parse a whole stored pack: verify its id, then decrypt its header.
pub fn read_header(data_key: &SealKey, id: &PackId, bytes: &[u8]) -> Result<(SealKey, Vec<BlobEntry>)> {
    let object = format!("pack {id}");
    if PackId::of_bytes(bytes) != *id {
        return Err(RepoError::corrupt(object, "stored bytes do not match the pack id"));
    }
    if bytes.len() < SALT_LEN + 4 {
        return Err(RepoError::corrupt(object, "too short"));
    }
    let (body, len_bytes) = bytes.split_at(bytes.len() - 4);
    let hlen = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if hlen > body.len() - SALT_LEN {
        return Err(RepoError::corrupt(object, "header length out of range"));
    }
    let key = data_key.derive(&body[..SALT_LEN]);
    let header = key
        .open(HEADER_AAD, &body[body.len() - hlen..])
        .map_err(|e| RepoError::corrupt(object.clone(), format!("header: {e}")))?;
    let entries = parse_header(&header).ok_or_else(|| RepoError::corrupt(object, "malformed header"))?;
    Ok((key, entries))
}

fn parse_header(h: &[u8]) -> Option<Vec<BlobEntry>> {
    if h.len() < 9 || &h[..4] != HEADER_MAGIC || h[4] != 1 {
        return None;
    }
    let count = u32::from_le_bytes(h[5..9].try_into().ok()?) as usize;
    let rest = &h[9..];
    if rest.len() != count.checked_mul(ENTRY_LEN)? {
        return None;
    }
    rest.chunks_exact(ENTRY_LEN).map(parse_entry).collect()
}

pub(crate) fn parse_entry(e: &[u8]) -> Option<BlobEntry> {
    Some(BlobEntry {
        id: ChunkId(e[..32].try_into().ok()?),
        offset: u64::from_le_bytes(e[32..40].try_into().ok()?),
        length: u32::from_le_bytes(e[40..44].try_into().ok()?),
        raw_len: u32::from_le_bytes(e[44..48].try_into().ok()?),
    })
}

pub(crate) fn write_entry(out: &mut Vec<u8>, e: &BlobEntry) {
    out.extend_from_slice(&e.id.0);
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(&e.length.to_le_bytes());
    out.extend_from_slice(&e.raw_len.to_le_bytes());
}

pub(crate) const BLOB_ENTRY_LEN: usize = ENTRY_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{IdKey, compress};

    #[test]
    fn pack_roundtrip_and_damage_detection() {
        let data_key = SealKey::new([3; 32]);
        let id_key = IdKey::new([4; 32]);
        let mut b = PackBuilder::new(&data_key, 1024).unwrap();
        let chunks: Vec<Vec<u8>> = vec![b"alpha".repeat(100), b"beta".to_vec(), vec![]];
        for c in &chunks {
            b.add(id_key.id_of(c), &compress(1, c), c.len()).unwrap();
        }
        let p = b.finish().unwrap();
        let (key, entries) = read_header(&data_key, &p.id, &p.bytes).unwrap();
        assert_eq!(entries, p.entries);
        for (e, c) in entries.iter().zip(&chunks) {
            let sealed = &p.bytes[e.offset as usize..(e.offset + e.length as u64) as usize];
            assert_eq!(&open_blob(&key, &id_key, e, sealed, &p.id).unwrap(), c);
        }
        let mut bad = p.bytes.clone();
        bad[40] ^= 0x80;
        assert!(read_header(&data_key, &p.id, &bad).is_err());
        let e = entries[0];
        let sealed = &bad[e.offset as usize..(e.offset + e.length as u64) as usize];
        assert!(open_blob(&key, &id_key, &e, sealed, &p.id).is_err());
    }
}
