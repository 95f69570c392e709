//! Log archives: continuously archived database logs (PostgreSQL WAL, later
//! MySQL binlogs), kept apart from snapshots (docs/PITR.md, docs/FORMAT.md).
//!
//! ```text
//! wal/<archive id>/archive        sealed JSON ArchiveInfo (kind, name, identity)
//! wal/<archive id>/f/<sealed name> one archived file: sealed header + sealed data
//! ```
//! Every archived file is ONE object holding its own catalog record (name,
//! size, hash, times) and its data, written with one atomic, durable `put`.
//! So "data, index entry and catalog record are durable" is a single event:
//! when `put_file` returns, the file is archived; before, nothing of it is
//! visible. Files are addressed by name, not by chunk id, so they need no
//! index entry and never touch the snapshot index.
//!
//! Object names are the file names sealed deterministically, so the store
//! shows no file name, yet a name can be looked up without listing, and a
//! listing can be decrypted into the catalog without reading any data.
//!
//! Everything here is keyed by the [`ArchiveSecret`], derived from the
//! repository's master key: a database host given only that secret can
//! archive and fetch logs, and read nothing else in the repository.

use crate::pipeline::{SealKey, compress, decompress_limited};
use crate::store::{DynStore, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Store prefix of all log archives.
pub const PREFIX: &str = "wal/";
const MAGIC: &[u8; 4] = b"DRLF";
/// Archived files larger than this are refused when read (WAL segments are at most 1 GiB).
const FILE_LIMIT: u64 = 1 << 31;

/// The 32-byte secret of the log archives; zeroized, never printed.
#[derive(Clone)]
pub struct ArchiveSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for ArchiveSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArchiveSecret(<redacted>)")
    }
}

impl ArchiveSecret {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// Hex form, for the archive configuration file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = Zeroizing::new(hex::decode(s.trim()).ok()?);
        let bytes: [u8; 32] = v.as_slice().try_into().ok()?;
        Some(Self::new(bytes))
    }
    fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &*self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("no log archive {name:?} in the repository at {location}")]
    NotFound { name: String, location: String },
    #[error("the log archive key does not open archive {name:?} (wrong key or another repository)")]
    WrongKey { name: String },
    #[error("{file} is already archived with different content; refusing to replace it")]
    Conflict { file: String },
    #[error("{object} is damaged: {reason}")]
    Corrupt { object: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

fn corrupt(object: &str, reason: impl fmt::Display) -> ArchiveError {
    ArchiveError::Corrupt { object: object.to_string(), reason: reason.to_string() }
}

/// The archive's own record: what it archives, for which server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArchiveInfo {
    pub version: u32,
    /// `postgres-wal` (later `mysql-binlog`).
    pub kind: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The server whose logs these are, fixed by the first archived file
    /// (PostgreSQL: system identifier, page magic, segment size). Logs of
    /// another server are refused, so two servers never interleave.
    #[serde(default)]
    pub identity: Option<serde_json::Value>,
}

/// The catalog record stored at the head of each archived file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub name: String,
    pub size: u64,
    /// Keyed BLAKE3 of the content (equality checks without reading data).
    pub hash: String,
    /// The file's modification time when archived (ns since the Unix epoch):
    /// nothing in it is newer.
    pub mtime_ns: i64,
    pub stored: DateTime<Utc>,
}

/// Outcome of archiving one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same name with the same content was archived before (a retry).
    AlreadyIdentical,
}

/// One open log archive.
#[derive(Debug)]
pub struct LogArchive {
    store: DynStore,
    id: String,
    info: ArchiveInfo,
    names: SealKey,
    records: SealKey,
    hash_key: [u8; 32],
}

fn archive_id(secret: &ArchiveSecret, kind: &str, name: &str) -> String {
    let key = secret.derive("drtool v1 log archive id");
    let h = blake3::keyed_hash(&key, format!("{kind}\0{name}").as_bytes());
    hex::encode(&h.as_bytes()[..16])
}

impl LogArchive {
    fn keyed(store: DynStore, secret: &ArchiveSecret, id: String, info: ArchiveInfo) -> Self {
        let per = |ctx: &str| {
            let mut h = blake3::Hasher::new_keyed(&secret.derive(ctx));
            h.update(id.as_bytes());
            *h.finalize().as_bytes()
        };
        Self {
            names: SealKey::new(per("drtool v1 log archive names")),
            records: SealKey::new(per("drtool v1 log archive records")),
            hash_key: per("drtool v1 log archive hash"),
            store,
            id,
            info,
        }
    }

    fn info_object(id: &str) -> String {
        format!("{PREFIX}{id}/archive")
    }

    fn info_key(secret: &ArchiveSecret, id: &str) -> SealKey {
        SealKey::new(blake3::keyed_hash(&secret.derive("drtool v1 log archive info"), id.as_bytes()).into())
    }

    /// Create the archive, or open it if it exists (idempotent).
    pub async fn create(store: DynStore, secret: &ArchiveSecret, kind: &str, name: &str) -> Result<Self> {
        match Self::open(store.clone(), secret, kind, name).await {
            Err(ArchiveError::NotFound { .. }) => {}
            other => return other,
        }
        let id = archive_id(secret, kind, name);
        let info = ArchiveInfo {
            version: 1,
            kind: kind.to_string(),
            name: name.to_string(),
            created: Utc::now(),
            identity: None,
        };
        let a = Self::keyed(store, secret, id, info);
        a.write_info(secret).await?;
        Ok(a)
    }

    /// Open an existing archive by kind and name.
    pub async fn open(store: DynStore, secret: &ArchiveSecret, kind: &str, name: &str) -> Result<Self> {
        let id = archive_id(secret, kind, name);
        let object = Self::info_object(&id);
        let sealed = match store.get(&object).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                // Archives that this secret cannot open mean a wrong key, not a missing archive.
                let others = store.list(PREFIX).await?.iter().any(|o| o.name.ends_with("/archive"));
                return Err(if others && list_archives(&store, secret, kind).await?.is_empty() {
                    ArchiveError::WrongKey { name: name.to_string() }
                } else {
                    ArchiveError::NotFound { name: name.to_string(), location: store.location() }
                });
            }
            Err(e) => return Err(e.into()),
        };
        let plain = Self::info_key(secret, &id)
            .open(b"drtool log archive info v1", &sealed)
            .map_err(|_| ArchiveError::WrongKey { name: name.to_string() })?;
        let info: ArchiveInfo = serde_json::from_slice(&plain).map_err(|e| corrupt(&object, e))?;
        if info.kind != kind || info.name != name || info.version != 1 {
            return Err(corrupt(&object, "archive record does not match its name"));
        }
        Ok(Self::keyed(store, secret, id, info))
    }

    async fn write_info(&self, secret: &ArchiveSecret) -> Result<()> {
        let plain = serde_json::to_vec(&self.info).map_err(|e| corrupt("archive record", e))?;
        let sealed = Self::info_key(secret, &self.id)
            .seal(b"drtool log archive info v1", &plain)
            .map_err(|e| corrupt("archive record", e))?;
        self.store.put(&Self::info_object(&self.id), sealed).await?;
        Ok(())
    }

    /// Fix the archive's server identity (done once, by the first archived file).
    pub async fn bind(&mut self, secret: &ArchiveSecret, identity: serde_json::Value) -> Result<()> {
        self.info.identity = Some(identity);
        self.write_info(secret).await
    }

    pub fn info(&self) -> &ArchiveInfo {
        &self.info
    }
    pub fn id(&self) -> &str {
        &self.id
    }

    fn object_name(&self, file: &str) -> Result<String> {
        let sealed =
            self.names.seal_deterministic(b"drtool log file name v1", file.as_bytes()).map_err(|e| corrupt(file, e))?;
        Ok(format!("{PREFIX}{}/f/{}", self.id, hex::encode(sealed)))
    }

    fn file_name_of(&self, object: &str) -> Result<String> {
        let hex_part = object.rsplit('/').next().unwrap_or_default();
        let sealed = hex::decode(hex_part).map_err(|_| corrupt(object, "name is not hex"))?;
        let plain = self.names.open(b"drtool log file name v1", &sealed).map_err(|e| corrupt(object, e))?;
        String::from_utf8(plain).map_err(|_| corrupt(object, "name is not UTF-8"))
    }

    fn content_hash(&self, data: &[u8]) -> String {
        blake3::keyed_hash(&self.hash_key, data).to_hex().to_string()
    }

    fn aad(&self, part: &str, file: &str) -> Vec<u8> {
        format!("drtool log file {part} v1\0{}\0{file}", self.id).into_bytes()
    }

    /// Archive one file. Returns only after the object is durably stored
    /// (the store's `put` contract), so the caller may acknowledge it then.
    /// The same name with the same content is fine (a retry); with other
    /// content it is a [`ArchiveError::Conflict`] and nothing is replaced.
    pub async fn put_file(&self, file: &str, data: &[u8], mtime_ns: i64) -> Result<Stored> {
        let object = self.object_name(file)?;
        let hash = self.content_hash(data);
        match self.store.size(&object).await {
            Ok(_) => {
                let existing = self.read_record(&object, file).await?;
                return if existing.hash == hash && existing.size == data.len() as u64 {
                    Ok(Stored::AlreadyIdentical)
                } else {
                    Err(ArchiveError::Conflict { file: file.to_string() })
                };
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let record = FileRecord { name: file.to_string(), size: data.len() as u64, hash, mtime_ns, stored: Utc::now() };
        let head = serde_json::to_vec(&record).map_err(|e| corrupt(file, e))?;
        let seal =
            |part: &str, plain: &[u8]| self.records.seal(&self.aad(part, file), plain).map_err(|e| corrupt(file, e));
        let head = seal("record", &head)?;
        // Level 1: WAL must keep up with the server; it mostly shrinks by its zero tails anyway.
        let body = seal("data", &compress(1, data))?;
        let mut out = Vec::with_capacity(9 + head.len() + body.len());
        out.extend_from_slice(MAGIC);
        out.push(1);
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&body);
        self.store.put(&object, out).await?;
        Ok(Stored::New)
    }

    async fn read_record(&self, object: &str, file: &str) -> Result<FileRecord> {
        let start = self.store.get_range(object, 0, 9).await?;
        let head_len = parse_prefix(object, &start)?;
        let sealed = self.store.get_range(object, 9, head_len as u64).await?;
        self.open_record(object, file, &sealed)
    }

    fn open_record(&self, object: &str, file: &str, sealed: &[u8]) -> Result<FileRecord> {
        let plain = self.records.open(&self.aad("record", file), sealed).map_err(|e| corrupt(object, e))?;
        let r: FileRecord = serde_json::from_slice(&plain).map_err(|e| corrupt(object, e))?;
        if r.name != file {
            return Err(corrupt(object, "record names another file"));
        }
        Ok(r)
    }

    /// The catalog record of an archived file, or `None` when it is not archived.
    pub async fn record(&self, file: &str) -> Result<Option<FileRecord>> {
        let object = self.object_name(file)?;
        match self.read_record(&object, file).await {
            Err(ArchiveError::Store(e)) if e.is_not_found() => Ok(None),
            r => r.map(Some),
        }
    }

    /// Read an archived file back, verified (AEAD, then content hash); `None` when absent.
    pub async fn get_file(&self, file: &str) -> Result<Option<(FileRecord, Vec<u8>)>> {
        let object = self.object_name(file)?;
        let raw = match self.store.get(&object).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let head_len = parse_prefix(&object, &raw)?;
        let body_at = 9 + head_len;
        if raw.len() < body_at {
            return Err(corrupt(&object, "truncated"));
        }
        let record = self.open_record(&object, file, &raw[9..body_at])?;
        let encoded = self.records.open(&self.aad("data", file), &raw[body_at..]).map_err(|e| corrupt(&object, e))?;
        let data = decompress_limited(&encoded, FILE_LIMIT).map_err(|e| corrupt(&object, e))?;
        if data.len() as u64 != record.size || self.content_hash(&data) != record.hash {
            return Err(corrupt(&object, "content does not match its record"));
        }
        Ok(Some((record, data)))
    }

    /// Names of every archived file (decrypted from the listing; no data is read).
    pub async fn list_files(&self) -> Result<Vec<String>> {
        let prefix = format!("{PREFIX}{}/f/", self.id);
        let mut out = Vec::new();
        for o in self.store.list(&prefix).await? {
            out.push(self.file_name_of(&o.name)?);
        }
        out.sort();
        Ok(out)
    }

    /// Remove an archived file (retention); idempotent.
    pub async fn delete_file(&self, file: &str) -> Result<()> {
        self.store.delete(&self.object_name(file)?).await?;
        Ok(())
    }
}

fn parse_prefix(object: &str, raw: &[u8]) -> Result<usize> {
    if raw.len() < 9 || &raw[..4] != MAGIC || raw[4] != 1 {
        return Err(corrupt(object, "not an archived log file of version 1"));
    }
    Ok(u32::from_le_bytes([raw[5], raw[6], raw[7], raw[8]]) as usize)
}

/// Every archive of `kind` the secret opens (others' records are skipped).
pub async fn list_archives(store: &DynStore, secret: &ArchiveSecret, kind: &str) -> Result<Vec<LogArchive>> {
    let mut out = Vec::new();
    for o in store.list(PREFIX).await? {
        let Some(id) = o.name.strip_prefix(PREFIX).and_then(|r| r.strip_suffix("/archive")) else { continue };
        let Ok(sealed) = store.get(&o.name).await else { continue };
        let Ok(plain) = LogArchive::info_key(secret, id).open(b"drtool log archive info v1", &sealed) else { continue };
        let Ok(info) = serde_json::from_slice::<ArchiveInfo>(&plain) else { continue };
        if info.kind == kind && archive_id(secret, kind, &info.name) == id {
            out.push(LogArchive::keyed(store.clone(), secret, id.to_string(), info));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn files_round_trip_conflict_and_hide_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::new(dir.path()));
        let secret = ArchiveSecret::new([7; 32]);
        let mut a = LogArchive::create(store.clone(), &secret, "postgres-wal", "main").await.unwrap();
        a.bind(&secret, serde_json::json!({"system_identifier": "1"})).await.unwrap();
        let name = "000000010000000000000001";
        assert_eq!(a.put_file(name, b"segment bytes", 5).await.unwrap(), Stored::New);
        assert_eq!(a.put_file(name, b"segment bytes", 6).await.unwrap(), Stored::AlreadyIdentical);
        assert!(matches!(a.put_file(name, b"other bytes", 5).await, Err(ArchiveError::Conflict { .. })));
        let (rec, data) = a.get_file(name).await.unwrap().unwrap();
        assert_eq!((rec.mtime_ns, data.as_slice()), (5, &b"segment bytes"[..]));
        assert!(a.get_file("000000010000000000000002").await.unwrap().is_none());
        assert_eq!(a.list_files().await.unwrap(), vec![name.to_string()]);
        for o in store.list("").await.unwrap() {
            assert!(!o.name.contains(name) && !o.name.contains("main"), "{}", o.name);
        }
        let b = LogArchive::open(store.clone(), &secret, "postgres-wal", "main").await.unwrap();
        assert_eq!(b.info().identity, a.info().identity);
        let wrong = ArchiveSecret::new([8; 32]);
        assert!(matches!(
            LogArchive::open(store.clone(), &wrong, "postgres-wal", "main").await,
            Err(ArchiveError::WrongKey { .. })
        ));
        assert!(matches!(
            LogArchive::open(store.clone(), &secret, "postgres-wal", "other").await,
            Err(ArchiveError::NotFound { .. })
        ));
        assert_eq!(list_archives(&store, &secret, "postgres-wal").await.unwrap().len(), 1);
        assert!(list_archives(&store, &wrong, "postgres-wal").await.unwrap().is_empty());
    }
}
