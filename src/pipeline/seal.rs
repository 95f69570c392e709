//! AES-256-GCM sealing: `nonce (12) || ciphertext || tag (16)`.
//!
//! Every sealed message carries associated data naming its role (blob, pack
//! header, index, snapshot, ...) so that a stored object cannot be swapped
//! into another role without failing authentication.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("authentication failed (wrong key or damaged data)")]
    Authentication,
    #[error("sealed message too short ({0} bytes)")]
    TooShort(usize),
    #[error("random number generator failed")]
    Random,
}

/// A 256-bit AES-GCM key; zeroized on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealKey([u8; 32]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Derive an independent key for one object (e.g. one pack) from a salt.
    ///
    /// Per-pack keys keep each key's random-nonce budget (2^32 messages) out of
    /// reach however large the repository grows.
    pub fn derive(&self, salt: &[u8]) -> SealKey {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"drtool v1 subkey");
        h.update(salt);
        SealKey(*h.finalize().as_bytes())
    }

    fn cipher(&self) -> Aes256Gcm {
        // A 32-byte slice is always a valid AES-256 key, so this cannot fail.
        Aes256Gcm::new(&self.0.into())
    }

    /// Encrypt and authenticate `plaintext` with a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let ct = self
            .cipher()
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| SealError::Authentication)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Seal with a synthetic nonce (a keyed hash of `aad` and `plaintext`):
    /// equal inputs give equal output, so a name can be found by value. This
    /// reveals only equality, and a nonce repeats only with its message (SIV).
    pub fn seal_deterministic(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut h = blake3::Hasher::new_keyed(&self.derive(b"synthetic nonce").0);
        h.update(&(aad.len() as u64).to_le_bytes());
        h.update(aad);
        h.update(plaintext);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN]);
        let ct = self
            .cipher()
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| SealError::Authentication)?;
        Ok([&nonce[..], &ct].concat())
    }

    /// Verify and decrypt a message produced by [`SealKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD {
            return Err(SealError::TooShort(sealed.len()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        self.cipher().decrypt(&Nonce::from(n), Payload { msg: ct, aad }).map_err(|_| SealError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_tamper_detection() {
        let key = SealKey::new([9; 32]);
        let sealed = key.seal(b"blob", b"secret data").unwrap();
        assert_eq!(sealed.len(), 11 + OVERHEAD);
        assert_eq!(key.open(b"blob", &sealed).unwrap(), b"secret data");
        assert_eq!(key.open(b"index", &sealed), Err(SealError::Authentication));
        let mut bad = sealed.clone();
        bad[15] ^= 1;
        assert_eq!(key.open(b"blob", &bad), Err(SealError::Authentication));
        assert_eq!(SealKey::new([8; 32]).open(b"blob", &sealed), Err(SealError::Authentication));
        assert_eq!(key.open(b"blob", &sealed[..5]), Err(SealError::TooShort(5)));
    }

    #[test]
    fn deterministic_sealing_repeats_only_for_equal_input() {
        let key = SealKey::new([3; 32]);
        let a = key.seal_deterministic(b"n", b"name").unwrap();
        assert_eq!(a, key.seal_deterministic(b"n", b"name").unwrap());
        assert_ne!(a, key.seal_deterministic(b"n", b"other").unwrap());
        assert_ne!(a, key.seal_deterministic(b"m", b"name").unwrap());
        assert_eq!(key.open(b"n", &a).unwrap(), b"name");
    }

    #[test]
    fn nonces_are_fresh_and_subkeys_differ() {
        let key = SealKey::new([1; 32]);
        assert_ne!(key.seal(b"", b"x").unwrap(), key.seal(b"", b"x").unwrap());
        let a = key.derive(b"salt-a").seal(b"", b"x").unwrap();
        assert!(key.derive(b"salt-b").open(b"", &a).is_err());
        assert!(key.derive(b"salt-a").open(b"", &a).is_ok());
    }
}
