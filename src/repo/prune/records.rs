//! Prune records: sealed objects under `prune/` that carry prune's two-phase
//! protocol from one run to the next (docs/PRUNE.md; layout in docs/FORMAT.md
//! section 11).
//!
//! A record is immutable and named by the BLAKE3 of its stored bytes, like
//! every other metadata object. Progress is made by writing a successor that
//! `replaces` it and only then deleting it, so a crash between the two leaves
//! both, and the next prune deletes the superseded one.

use crate::repo::error::{RepoError, Result, chain};
use crate::repo::ids::PackId;
use crate::repo::{MetaKind, Repository, json_bytes};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Store directory of prune records.
pub const DIR: &str = "prune";
pub const RECORD_VERSION: u32 = 1;

/// Where a batch of packs is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Still indexed and readable, but backups no longer deduplicate against
    /// chunks that only these packs hold.
    Condemned,
    /// Removed from the index; deleted once every run that might still read
    /// them has ended.
    Retired,
}

/// Why a pack was condemned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No snapshot needs any of its chunks.
    Unused,
    /// Mostly garbage; the chunks snapshots need were copied to new packs.
    Repacked,
    /// In the store but in no index file (an interrupted run, or a backup
    /// that had not committed yet when prune looked).
    Unindexed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPack {
    pub id: PackId,
    /// Stored size in bytes (for reports).
    pub size: u64,
    /// Whether an index file listed the pack when it was condemned.
    pub indexed: bool,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    pub version: u32,
    pub stage: Stage,
    pub created: DateTime<Utc>,
    /// Locks (`locks/<id>`) that must all be gone, released or stale, before
    /// the next stage. `None` marks a draft: written, but the locks to wait for
    /// were not listed yet (that listing must come after the draft is visible).
    #[serde(default)]
    pub wait_for: Option<Vec<String>>,
    /// Records this one supersedes; they are deleted right after it is stored.
    #[serde(default)]
    pub replaces: Vec<String>,
    pub packs: Vec<RecordedPack>,
}

impl PruneRecord {
    pub fn new(stage: Stage, packs: Vec<RecordedPack>) -> Self {
        Self { version: RECORD_VERSION, stage, created: Utc::now(), wait_for: None, replaces: Vec::new(), packs }
    }

    pub fn bytes(&self) -> u64 {
        self.packs.iter().map(|p| p.size).sum()
    }

    /// Armed and none of the runs it waits for is still holding its lock.
    pub fn ready(&self, live_locks: &HashSet<String>) -> bool {
        self.wait_for.as_ref().is_some_and(|w| w.iter().all(|l| !live_locks.contains(l)))
    }
}

/// A record with its object name.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub name: String,
    pub record: PruneRecord,
}

/// Every readable record, and the names of those that could not be read.
#[derive(Debug, Default)]
pub struct Records {
    pub records: Vec<StoredRecord>,
    pub damaged: Vec<(String, String)>,
}

impl Records {
    /// Names some other record replaces: leftovers of an interrupted hand-over.
    pub fn superseded(&self) -> HashSet<String> {
        self.records.iter().flat_map(|r| r.record.replaces.iter().cloned()).collect()
    }

    /// Records that are not superseded, in creation order.
    pub fn active(&self) -> Vec<StoredRecord> {
        let gone = self.superseded();
        let mut v: Vec<StoredRecord> = self.records.iter().filter(|r| !gone.contains(&r.name)).cloned().collect();
        v.sort_by(|a, b| a.record.created.cmp(&b.record.created).then(a.name.cmp(&b.name)));
        v
    }

    /// Every pack any record names (superseded ones included: they name the same packs).
    pub fn packs(&self) -> HashSet<PackId> {
        self.records.iter().flat_map(|r| r.record.packs.iter().map(|p| p.id)).collect()
    }
}

pub async fn save(repo: &Repository, record: &PruneRecord) -> Result<StoredRecord> {
    let id = repo.put_meta(MetaKind::PruneRecord, DIR, &json_bytes(record)?).await?;
    Ok(StoredRecord { name: format!("{DIR}/{}", hex::encode(id)), record: record.clone() })
}

pub async fn delete(repo: &Repository, name: &str) -> Result<()> {
    Ok(repo.store().delete(name).await?)
}

async fn read(repo: &Repository, name: &str) -> Result<PruneRecord> {
    let plain = repo.get_meta(MetaKind::PruneRecord, name).await?;
    let r: PruneRecord = serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(name, e))?;
    if r.version != RECORD_VERSION {
        return Err(RepoError::corrupt(name, format!("prune record version {} is not supported", r.version)));
    }
    Ok(r)
}

/// Listings a reader makes before giving up on records that keep vanishing.
const LISTINGS: usize = 5;

/// Read every record; damaged ones are returned by name (only prune writes
/// records, and dropping one only ever keeps data, so callers may ignore them).
///
/// A listed record that is gone when read was deleted by a prune, which
/// stores a record's successor before deleting it (a draft is replaced by its
/// armed record, condemned records by the retired one): list again, or a
/// backup would miss the successor's condemned packs and reuse them. A record
/// deleted for good (its packs deleted) is simply absent from the next listing.
pub async fn load(repo: &Repository) -> Result<Records> {
    let mut listings = 0;
    loop {
        let names: Vec<String> = repo.store().list(&format!("{DIR}/")).await?.into_iter().map(|o| o.name).collect();
        let results: Vec<(String, Result<PruneRecord>)> = stream::iter(names)
            .map(|name| async move {
                let r = read(repo, &name).await;
                (name, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        listings += 1;
        let mut out = Records::default();
        let mut vanished = None;
        for (name, r) in results {
            match r {
                Ok(record) => out.records.push(StoredRecord { name, record }),
                Err(RepoError::Store(e)) if e.is_not_found() => vanished = Some(e),
                Err(e @ RepoError::Corrupt { .. }) => out.damaged.push((name, chain(&e))),
                Err(e) => return Err(e),
            }
        }
        match vanished {
            None => return Ok(out),
            // Prunes keep replacing records faster than we read them: fail
            // rather than return a set that may lack a successor.
            Some(e) if listings >= LISTINGS => return Err(e.into()),
            Some(e) => tracing::debug!("{e} since it was listed; listing prune records again"),
        }
    }
}

/// Packs that some prune record names: backups must not reuse chunks that
/// only these packs hold. A damaged record is skipped (its packs are then
/// merely reusable again, which is always safe).
pub async fn condemned_packs(repo: &Repository) -> Result<HashSet<PackId>> {
    let records = load(repo).await?;
    for (name, why) in &records.damaged {
        tracing::warn!("ignoring prune record {name}: {why}");
    }
    Ok(records.packs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_supersession() {
        let mut r = PruneRecord::new(Stage::Condemned, vec![]);
        let live: HashSet<String> = ["locks/a".to_string()].into();
        assert!(!r.ready(&live), "a draft is never ready");
        r.wait_for = Some(vec!["locks/b".into()]);
        assert!(r.ready(&live));
        r.wait_for = Some(vec!["locks/a".into(), "locks/b".into()]);
        assert!(!r.ready(&live));
        let draft = StoredRecord { name: "prune/1".into(), record: PruneRecord::new(Stage::Condemned, vec![]) };
        let mut armed = PruneRecord::new(Stage::Condemned, vec![]);
        armed.replaces = vec!["prune/1".into()];
        let all =
            Records { records: vec![draft, StoredRecord { name: "prune/2".into(), record: armed }], damaged: vec![] };
        let active: Vec<String> = all.active().into_iter().map(|r| r.name).collect();
        assert_eq!(active, vec!["prune/2".to_string()]);
        let j = serde_json::to_string(&all.records[1].record).unwrap();
        assert_eq!(serde_json::from_str::<PruneRecord>(&j).unwrap(), all.records[1].record);
    }
}
