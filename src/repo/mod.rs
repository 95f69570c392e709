//! The repository: the only layer that knows the stored format (docs/FORMAT.md).

pub mod binlogcat;
pub mod check;
pub mod drills;
pub mod error;
pub mod ids;
pub mod index;
pub mod keyring;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod prune;
pub mod reader;
pub mod restore_plan;
pub mod snapshot;
pub mod tree;
pub mod walcat;
pub mod writer;

use crate::pipeline::{ChunkerParams, compress, decompress_limited};
use crate::store::DynStore;
pub use error::{RepoError, Result};
use futures_util::stream::{self, StreamExt};
use ids::{IndexId, SnapshotId};
use index::{Index, IndexedPack};
use keys::{KdfParams, KeySlot, MasterKey, RepoKeys};
use serde::{Deserialize, Serialize};
use snapshot::{Snapshot, SnapshotManifest};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Metadata objects fetched at once (matters for high-latency stores).
const PARALLEL_READS: usize = 8;
/// Metadata plaintexts larger than this are refused when read (defence against damage).
const META_LIMIT: u64 = 4 << 30;
/// Sealing adds a codec byte, a nonce and a tag, and never compresses a
/// plaintext into more than its raw form: no sealed object a reader would
/// accept is larger than this.
const SEALED_META_LIMIT: u64 = META_LIMIT + 1 + 28;
/// Stored size caps of objects that drtool writes at a few hundred bytes
/// (config, key slots, locks) and of drill reports (kilobytes), with a wide
/// margin; docs/FORMAT.md section 1 lists them.
pub const SMALL_OBJECT_LIMIT: u64 = 64 << 10;
const DRILL_LIMIT: u64 = 64 << 20;

/// Plaintext `config`: only what is needed to open the repository.
#[derive(Debug, Serialize, Deserialize)]
struct ConfigFile {
    version: u32,
    id: String,
    /// Sealed JSON [`Settings`], hex.
    settings: String,
}

/// Repository-wide settings fixed at init; sealed inside `config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub chunker: ChunkerParams,
}

/// Options for `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self { chunker: ChunkerParams::default(), kdf: keys::DEFAULT_KDF }
    }
}

/// An open repository: store plus keys. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Repository {
    store: DynStore,
    id: String,
    keys: RepoKeys,
    settings: Settings,
    /// Kept (zeroized on drop) so that `key add` can wrap it in a new slot.
    master: MasterKey,
    /// The key slot the password opened (so it is not removed by accident).
    slot: String,
}

/// Object kinds sealed with the metadata key; the name goes into the AAD.
#[derive(Debug, Clone, Copy)]
pub enum MetaKind {
    Config,
    Index,
    Snapshot,
    Lock,
    /// Prune's record of packs it condemned or retired (docs/PRUNE.md).
    PruneRecord,
    /// A restore drill's result (docs/DRILLS.md).
    Drill,
    /// A binlog catalog record (docs/PITR.md).
    Binlog,
}

impl MetaKind {
    /// The largest stored object of this kind a reader accepts: checked
    /// before the body is read, so a planted huge object costs no memory.
    pub fn max_stored(self) -> u64 {
        match self {
            MetaKind::Config | MetaKind::Lock => SMALL_OBJECT_LIMIT,
            // A binlog record lists one file's chunks: a 1 GiB file is ~1,000 ids.
            MetaKind::Drill | MetaKind::Binlog => DRILL_LIMIT,
            MetaKind::Index | MetaKind::Snapshot | MetaKind::PruneRecord => SEALED_META_LIMIT,
        }
    }

    fn aad(self) -> &'static [u8] {
        match self {
            MetaKind::Config => b"drtool config v1",
            MetaKind::Index => b"drtool index v1",
            MetaKind::Snapshot => b"drtool snapshot v1",
            MetaKind::Lock => b"drtool lock v1",
            MetaKind::PruneRecord => b"drtool prune record v1",
            MetaKind::Drill => b"drtool drill v1",
            MetaKind::Binlog => b"drtool binlog v1",
        }
    }
}

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| RepoError::Pipeline(format!("random: {e}")))?;
    Ok(hex::encode(b))
}

impl Repository {
    /// Create a repository. Key slot first, `config` last: a store with a
    /// `config` is a repository, so a crash mid-init leaves no half-made one.
    pub async fn init(store: DynStore, password: &[u8], opts: InitOptions) -> Result<Self> {
        opts.chunker.validate().map_err(|reason| RepoError::Invalid { what: "chunker".into(), reason })?;
        match store.size("config").await {
            Ok(_) => {
                return Err(RepoError::AlreadyExists { location: store.location() });
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let id = random_hex(16)?;
        let master = MasterKey::generate()?;
        let keys = master.derive_keys();
        let settings = Settings { chunker: opts.chunker };
        let slot_id = random_hex(16)?;
        let slot = KeySlot::create(&master, password, &id, opts.kdf)?;
        store.put(&format!("keys/{slot_id}"), json_bytes(&slot)?).await?;
        let sealed = seal_meta(&keys, MetaKind::Config, &json_bytes(&settings)?)?;
        let config = ConfigFile { version: FORMAT_VERSION, id: id.clone(), settings: hex::encode(sealed) };
        store.put("config", json_bytes(&config)?).await?;
        Ok(Self { store, id, keys, settings, master, slot: slot_id })
    }

    pub async fn open(store: DynStore, password: &[u8]) -> Result<Self> {
        let location = store.location();
        let raw = match store.get_limited("config", MetaKind::Config.max_stored()).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Err(RepoError::NoRepository { location }),
            Err(e) => return Err(too_large_is_damage(e)),
        };
        let config: ConfigFile =
            serde_json::from_slice(&raw).map_err(|e| RepoError::corrupt("config", format!("not valid JSON: {e}")))?;
        if config.version != FORMAT_VERSION {
            return Err(RepoError::UnsupportedVersion { found: config.version, supported: FORMAT_VERSION });
        }
        let (master, slot) = keyring::unlock(&store, &config.id, password).await?;
        let keys = master.derive_keys();
        let sealed = hex::decode(&config.settings).map_err(|_| RepoError::corrupt("config", "settings not hex"))?;
        let settings: Settings = serde_json::from_slice(&open_meta(&keys, MetaKind::Config, "config", &sealed)?)
            .map_err(|e| RepoError::corrupt("config", e))?;
        settings.chunker.validate().map_err(|r| RepoError::corrupt("config", r))?;
        Ok(Self { store, id: config.id, keys, settings, master, slot })
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn keys(&self) -> &RepoKeys {
        &self.keys
    }
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn current_slot(&self) -> &str {
        &self.slot
    }
    /// The secret of the log archives (WAL, binlog): see [`walcat`].
    pub fn log_archive_secret(&self) -> walcat::ArchiveSecret {
        walcat::ArchiveSecret::new(*self.master.log_archive_secret())
    }

    /// Seal and store a metadata object under `<dir>/<BLAKE3 of stored bytes>`.
    pub async fn put_meta(&self, kind: MetaKind, dir: &str, plaintext: &[u8]) -> Result<[u8; 32]> {
        let sealed = seal_meta(&self.keys, kind, plaintext)?;
        let id = *blake3::hash(&sealed).as_bytes();
        self.store.put(&format!("{dir}/{}", hex::encode(id)), sealed).await?;
        Ok(id)
    }

    pub async fn get_meta(&self, kind: MetaKind, name: &str) -> Result<Vec<u8>> {
        let sealed = self.store.get_limited(name, kind.max_stored()).await.map_err(too_large_is_damage)?;
        open_meta(&self.keys, kind, name, &sealed)
    }

    pub async fn write_index(&self, packs: &[IndexedPack]) -> Result<IndexId> {
        Ok(IndexId(self.put_meta(MetaKind::Index, "index", &index::encode(packs)).await?))
    }

    /// Read and decode every index file, several at once; each file keeps its
    /// own result so callers decide what damage means to them.
    ///
    /// Prune replaces index files by writing the successor before deleting the
    /// old one, so a listed file that is gone when read means a successor now
    /// exists: list again (a few times) rather than miss its packs.
    pub async fn read_index_files(&self) -> Result<Vec<(String, Result<Vec<IndexedPack>>)>> {
        let mut attempt = 0;
        loop {
            let names: Vec<String> = self.store.list("index/").await?.into_iter().map(|o| o.name).collect();
            let files: Vec<(String, Result<Vec<IndexedPack>>)> = stream::iter(names)
                .map(|name| async move {
                    let r = self.get_meta(MetaKind::Index, &name).await.and_then(|p| index::decode(&name, &p));
                    (name, r)
                })
                .buffer_unordered(PARALLEL_READS)
                .collect()
                .await;
            let vanished = files.iter().any(|(_, r)| matches!(r, Err(RepoError::Store(e)) if e.is_not_found()));
            attempt += 1;
            if !vanished || attempt >= 5 {
                return Ok(files);
            }
        }
    }

    /// Load every index file. A damaged index file is an error here; `check` reports it.
    ///
    /// Prune records are read first: packs they condemn stay readable but are
    /// not reused by backups (see `Index::reusable`). Reading them before the
    /// index files, and after the caller took its lock, is what prune's
    /// protocol relies on (docs/PRUNE.md).
    pub async fn load_index(&self) -> Result<Index> {
        let condemned = prune::records::condemned_packs(self).await?;
        let mut packs = Vec::new();
        for (name, r) in self.read_index_files().await? {
            match r {
                Ok(p) => packs.extend(p),
                // One damaged index file must not make every snapshot unreadable: chunks it
                // alone listed show up as missing where they are needed, and `check` names it.
                Err(e @ RepoError::Corrupt { .. }) => {
                    tracing::warn!("skipping {}", error::chain(&e))
                }
                // Replaced by a prune between listing and reading: its packs are in the new file.
                Err(RepoError::Store(e)) if e.is_not_found() => tracing::debug!("{name} was replaced meanwhile"),
                Err(e) => return Err(e),
            }
        }
        Ok(Index::build(&packs, &condemned))
    }

    /// Write a snapshot manifest, the commit of a backup. Only a run whose
    /// lock others still see may commit: a prune that took it for stale may
    /// have deleted the packs the manifest names (docs/PRUNE.md). The lock is
    /// read back from the store right before the manifest is written.
    pub async fn save_snapshot(&self, manifest: &SnapshotManifest, held: &lock::LockGuard) -> Result<SnapshotId> {
        let plain = json_bytes(manifest)?;
        held.ensure_held().await?;
        Ok(SnapshotId(self.put_meta(MetaKind::Snapshot, "snapshots", &plain).await?))
    }

    pub async fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let name = id.object_name();
        let sealed =
            self.store.get_limited(&name, MetaKind::Snapshot.max_stored()).await.map_err(too_large_is_damage)?;
        if SnapshotId::of_bytes(&sealed) != id {
            return Err(RepoError::corrupt(name, "stored bytes do not match the snapshot id"));
        }
        let plain = open_meta(&self.keys, MetaKind::Snapshot, &name, &sealed)?;
        let manifest = serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(name, e))?;
        Ok(Snapshot { id, manifest })
    }

    /// Remove a snapshot manifest. Only the manifest goes: the data it alone
    /// referenced stays until `prune`. Idempotent (a missing snapshot is Ok).
    pub async fn delete_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.store.delete(&id.object_name()).await?;
        Ok(())
    }

    /// Ids of all stored snapshots, without reading them.
    pub async fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        Ok(self
            .store
            .list("snapshots/")
            .await?
            .iter()
            .filter_map(|o| o.name.strip_prefix("snapshots/").and_then(SnapshotId::from_hex))
            .collect())
    }

    /// Load snapshots; damaged ones are skipped with a warning (`check` reports them),
    /// so one bad manifest never hides the others.
    async fn load_snapshots(&self, ids: Vec<SnapshotId>) -> Result<Vec<Snapshot>> {
        let mut loads = stream::iter(ids).map(|id| self.load_snapshot(id)).buffer_unordered(PARALLEL_READS);
        let mut out = Vec::new();
        while let Some(r) = loads.next().await {
            match r {
                Ok(s) => out.push(s),
                Err(e @ RepoError::Corrupt { .. }) => {
                    tracing::warn!("skipping {}", error::chain(&e))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// All readable snapshots, oldest first.
    pub async fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut out = self.load_snapshots(self.snapshot_ids().await?).await?;
        out.sort_by(|a, b| a.manifest.time.cmp(&b.manifest.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Resolve `latest` (optionally the latest with a given name) or an id prefix.
    pub async fn find_snapshot(&self, spec: &str, name: Option<&str>) -> Result<Snapshot> {
        let matches_name = |s: &&Snapshot| name.is_none_or(|n| s.manifest.name == n);
        if spec == "latest" {
            let all = self.list_snapshots().await?;
            let what = name.map_or_else(|| "latest".to_string(), |n| format!("latest with name {n:?}"));
            return all.iter().rev().find(matches_name).cloned().ok_or(RepoError::SnapshotNotFound(what));
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.is_empty() || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::SnapshotNotFound(spec.to_string()));
        }
        // Read only the snapshots whose id matches, so a damaged other one does not matter.
        let ids: Vec<SnapshotId> =
            self.snapshot_ids().await?.into_iter().filter(|id| id.to_hex().starts_with(&spec_l)).collect();
        // The one snapshot asked for is reported damaged, not "not found".
        let candidates = if let [one] = ids.as_slice() {
            vec![self.load_snapshot(*one).await?]
        } else {
            self.load_snapshots(ids).await?
        };
        let mut found = candidates.iter().filter(matches_name);
        match (found.next(), found.next()) {
            (Some(s), None) => Ok(s.clone()),
            (Some(_), Some(_)) => Err(RepoError::AmbiguousSnapshot(spec.to_string())),
            (None, _) => Err(RepoError::SnapshotNotFound(spec.to_string())),
        }
    }
}

/// An object larger than any of its kind that drtool writes is damaged (or
/// planted), whatever the store says: callers treat it like any damage.
fn too_large_is_damage(e: crate::store::StoreError) -> RepoError {
    match e {
        crate::store::StoreError::TooLarge { name, size, limit } => {
            let size = size.map_or_else(|| "more than that".to_string(), |s| format!("{s} bytes"));
            RepoError::corrupt(
                name,
                format!("larger than any such object drtool writes ({size}, limit {limit}); not read"),
            )
        }
        other => other.into(),
    }
}

fn json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| RepoError::Pipeline(format!("serialise: {e}")))
}

fn seal_meta(keys: &RepoKeys, kind: MetaKind, plaintext: &[u8]) -> Result<Vec<u8>> {
    keys.meta.seal(kind.aad(), &compress(3, plaintext)).map_err(|e| RepoError::seal(format!("{kind:?}"), e))
}

fn open_meta(keys: &RepoKeys, kind: MetaKind, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let encoded = keys.meta.open(kind.aad(), sealed).map_err(|e| RepoError::seal(name, e))?;
    decompress_limited(&encoded, META_LIMIT).map_err(|e| RepoError::corrupt(name, e))
}
