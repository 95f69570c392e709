//! The master key and the password-protected key slots that wrap it.
//!
//! One random 256-bit master key per repository; every working key is derived
//! from it with BLAKE3's key derivation, so adding or changing a password never
//! re-encrypts data: it only writes another slot under `keys/`.

use super::error::{RepoError, Result};
use crate::pipeline::{IdKey, SealKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Argon2id cost for new slots: 64 MiB, 3 passes, 1 lane (OWASP-level; ~0.2 s here).
pub const DEFAULT_KDF: KdfParams = KdfParams { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// Bounds on the Argon2 cost a stored slot may ask for. Slots are plaintext
/// and anyone who can write to the store can plant one; without bounds a slot
/// asking for terabytes or billions of passes would hang or kill every open.
/// The bounds admit everything drtool writes (`DEFAULT_KDF`, and the 64 KiB /
/// 1 pass slots tests create) with a wide margin (docs/FORMAT.md section 4).
pub const MAX_M_COST_KIB: u32 = 1 << 20;
pub const MAX_T_COST: u32 = 16;
pub const MAX_P_COST: u32 = 16;
/// Memory times passes, in KiB: 4 GiB-passes, about 20 times `DEFAULT_KDF`.
pub const MAX_KDF_WORK_KIB: u64 = 4 << 20;

impl KdfParams {
    /// Whether a reader should run Argon2 with these parameters at all.
    pub fn check(&self) -> std::result::Result<(), String> {
        let KdfParams { m_cost_kib: m, t_cost: t, p_cost: p } = *self;
        if !(1..=MAX_P_COST).contains(&p) || !(1..=MAX_T_COST).contains(&t) {
            return Err(format!("argon2 t_cost {t} / p_cost {p} outside 1..={MAX_T_COST} / 1..={MAX_P_COST}"));
        }
        // Argon2 itself needs 8 KiB per lane.
        if m < 8 * p || m > MAX_M_COST_KIB {
            return Err(format!("argon2 m_cost_kib {m} outside {}..={MAX_M_COST_KIB}", 8 * p));
        }
        if u64::from(m) * u64::from(t) > MAX_KDF_WORK_KIB {
            return Err(format!("argon2 cost {m} KiB x {t} passes exceeds {MAX_KDF_WORK_KIB} KiB-passes"));
        }
        Ok(())
    }
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Keys derived from the master key, one per purpose.
#[derive(Debug, Clone)]
pub struct RepoKeys {
    /// Keys chunk ids (BLAKE3 keyed hash).
    pub id: IdKey,
    /// Root of the per-pack data keys.
    pub data: SealKey,
    /// Seals metadata objects: config settings, index, snapshots, locks.
    pub meta: SealKey,
    /// XOR-ed into FastCDC's gear table.
    pub chunker_seed: u64,
}

impl MasterKey {
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| RepoError::Pipeline(format!("random: {e}")))?;
        Ok(Self(k))
    }

    fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// The secret of the continuous log archives (docs/PITR.md). It opens
    /// them only: no snapshot, index or pack key can be derived from it.
    pub fn log_archive_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.derive("drtool v1 log archive"))
    }

    pub fn derive_keys(&self) -> RepoKeys {
        let mut seed = self.derive("drtool v1 chunker seed");
        let chunker_seed = u64::from_le_bytes([seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7]]);
        seed.zeroize();
        RepoKeys {
            id: IdKey::new(self.derive("drtool v1 chunk id")),
            data: SealKey::new(self.derive("drtool v1 data")),
            meta: SealKey::new(self.derive("drtool v1 metadata")),
            chunker_seed,
        }
    }
}

/// A stored key slot (`keys/<slot id>`, plaintext JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    pub version: u32,
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// Argon2 salt, hex.
    pub salt: String,
    /// The master key sealed with the Argon2-derived key, hex.
    pub wrapped: String,
    pub created: chrono::DateTime<chrono::Utc>,
}

fn slot_aad(repo_id: &str) -> Vec<u8> {
    format!("drtool key slot v1 {repo_id}").into_bytes()
}

fn kek(password: &[u8], salt: &[u8], p: KdfParams) -> Result<SealKey> {
    let invalid =
        |e: argon2::Error| RepoError::Invalid { what: "key derivation parameters".into(), reason: e.to_string() };
    let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32)).map_err(invalid)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(password, salt, out.as_mut()).map_err(invalid)?;
    Ok(SealKey::new(*out))
}

impl KeySlot {
    pub fn create(master: &MasterKey, password: &[u8], repo_id: &str, params: KdfParams) -> Result<Self> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| RepoError::Pipeline(format!("random: {e}")))?;
        let key = kek(password, &salt, params)?;
        let wrapped = key.seal(&slot_aad(repo_id), &master.0).map_err(|e| RepoError::seal("key slot", e))?;
        Ok(KeySlot {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            wrapped: hex::encode(wrapped),
            created: chrono::Utc::now(),
        })
    }

    /// Why this slot must not be tried, if it must not: an unknown version or
    /// kdf, costs outside the bounds, or fields that are not what drtool writes.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(format!("unknown key slot version {} or kdf {:?}", self.version, self.kdf));
        }
        self.params.check()?;
        match hex::decode(&self.salt) {
            Ok(salt) if (8..=64).contains(&salt.len()) => {}
            _ => return Err("salt is not 8 to 64 bytes of hex".into()),
        }
        // The sealed 32-byte master key: nonce, key, tag.
        match hex::decode(&self.wrapped) {
            Ok(w) if w.len() == 12 + 32 + 16 => Ok(()),
            _ => Err("wrapped key is not 60 bytes of hex".into()),
        }
    }

    /// `Ok(None)` when the password does not open this slot.
    pub fn open(&self, password: &[u8], repo_id: &str) -> Result<Option<MasterKey>> {
        let bad = |what: &str| RepoError::corrupt("key slot", what);
        self.check().map_err(|why| bad(&why))?;
        let salt = hex::decode(&self.salt).map_err(|_| bad("salt is not hex"))?;
        let wrapped = hex::decode(&self.wrapped).map_err(|_| bad("wrapped key is not hex"))?;
        let key = kek(password, &salt, self.params)?;
        match key.open(&slot_aad(repo_id), &wrapped) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| bad("wrapped key has wrong length"))?;
                Ok(Some(MasterKey(bytes)))
            }
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 };

    #[test]
    fn slot_opens_only_with_its_password_and_repo() {
        let master = MasterKey::generate().unwrap();
        let slot = KeySlot::create(&master, b"pw", "repo1", FAST).unwrap();
        let opened = slot.open(b"pw", "repo1").unwrap().unwrap();
        assert_eq!(opened.0, master.0);
        assert!(slot.open(b"wrong", "repo1").unwrap().is_none());
        assert!(slot.open(b"pw", "repo2").unwrap().is_none());
        let json = serde_json::to_string(&slot).unwrap();
        assert!(!json.contains(&hex::encode(master.0)));
    }

    #[test]
    fn kdf_bounds_admit_what_drtool_writes_and_nothing_absurd() {
        for ok in [DEFAULT_KDF, FAST, KdfParams { m_cost_kib: 1024, t_cost: 1, p_cost: 1 }] {
            assert_eq!(ok.check(), Ok(()), "{ok:?}");
        }
        let master = MasterKey::generate().unwrap();
        assert_eq!(KeySlot::create(&master, b"pw", "r", FAST).unwrap().check(), Ok(()));
        for bad in [
            KdfParams { m_cost_kib: u32::MAX, t_cost: 1, p_cost: 1 },
            KdfParams { m_cost_kib: 64, t_cost: u32::MAX, p_cost: 1 },
            KdfParams { m_cost_kib: 64, t_cost: 0, p_cost: 1 },
            KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1000 },
            KdfParams { m_cost_kib: 4, t_cost: 1, p_cost: 1 },
            KdfParams { m_cost_kib: MAX_M_COST_KIB, t_cost: MAX_T_COST, p_cost: 1 },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_keys_are_distinct() {
        let k = MasterKey::generate().unwrap().derive_keys();
        let sealed = k.meta.seal(b"", b"x").unwrap();
        assert!(k.data.open(b"", &sealed).is_err());
        assert!(format!("{k:?}").contains("redacted"));
    }
}
