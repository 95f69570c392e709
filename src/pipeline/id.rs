//! Chunk identities: BLAKE3 keyed with a repository secret.
//!
//! Keying matters for confidentiality: an unkeyed hash of plaintext would let
//! anyone holding the store confirm that a known file is in it.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Identity of a chunk's plaintext: `BLAKE3-keyed(id_key, plaintext)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChunkId::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid chunk id"))
    }
}

/// Secret key for chunk ids; zeroized on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct IdKey([u8; 32]);

impl IdKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn id_of(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.0, data).as_bytes())
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_differ_by_key_and_roundtrip_hex() {
        let a = IdKey::new([1; 32]).id_of(b"hello");
        let b = IdKey::new([2; 32]).id_of(b"hello");
        assert_ne!(a, b);
        assert_ne!(a.0, *blake3::hash(b"hello").as_bytes());
        assert_eq!(ChunkId::from_hex(&a.to_hex()), Some(a));
        assert_eq!(ChunkId::from_hex("zz"), None);
        assert_eq!(format!("{:?}", IdKey::new([7; 32])), "IdKey(<redacted>)");
    }
}
