//! The binlog catalog: one sealed record per captured binary log file.
//!
//! Archived logs are not snapshots (docs/DESIGN, docs/PITR.md): each binlog
//! file a capture stores is described by a record under `binlog/` that names
//! the file, the bytes stored so far (their chunks), event times and the GTID
//! state at both ends. Continuity (file sequence, GTID states) is checked from
//! the records alone, without reading data.
//!
//! A file still being written is stored again as it grows: each version is a
//! new record whose chunk list extends the previous one's, written after the
//! index file for its new chunks; only then is the previous version deleted.
//! So at every instant some record references every stored chunk, and a
//! reader that finds a listed record gone lists again to find its successor
//! (the same rule prune relies on for index files).

use super::error::{RepoError, Result};
use super::{MetaKind, Repository, json_bytes};
use crate::pipeline::ChunkId;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

pub const RECORD_VERSION: u32 = 1;
const DIR: &str = "binlog";

/// A MariaDB global transaction id, `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl std::str::FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid GTID {s:?}: expected DOMAIN-SERVER-SEQUENCE, e.g. 0-1-42");
        let mut it = s.trim().split('-');
        let (Some(d), Some(sv), Some(q), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        Ok(Gtid {
            domain: d.parse().map_err(|_| bad())?,
            server: sv.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// The binlog GTID state: the last GTID per (domain, server), as the server
/// keeps it and writes it into each new file's GTID_LIST event.
pub type GtidState = BTreeMap<(u32, u32), u64>;

pub fn state_to_list(s: &GtidState) -> Vec<Gtid> {
    s.iter().map(|(&(domain, server), &seq)| Gtid { domain, server, seq }).collect()
}

pub fn list_to_state(l: &[Gtid]) -> GtidState {
    l.iter().map(|g| ((g.domain, g.server), g.seq)).collect()
}

pub fn format_list(l: &[Gtid]) -> String {
    l.iter().map(Gtid::to_string).collect::<Vec<_>>().join(",")
}

/// One binlog file as captured so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinlogRecord {
    pub version: u32,
    /// The capture's name (the policy name); snapshots of the same name are its bases.
    pub name: String,
    /// The server it was read from (URL without password).
    pub server: String,
    pub server_id: u32,
    pub file: String,
    /// The file name's number (`mysql-bin.000042` -> 42).
    pub seq: u64,
    /// Bytes `[0, size)` of the file are stored, ending with a complete event.
    pub size: u64,
    /// End of the last complete transaction within `size`.
    pub safe_end: u64,
    pub first_time: Option<DateTime<Utc>>,
    pub last_time: Option<DateTime<Utc>>,
    /// GTID state at the file's start (its GTID_LIST event) and after `size`.
    pub gtid_start: Vec<Gtid>,
    pub gtid_end: Vec<Gtid>,
    pub first_gtid: Option<Gtid>,
    pub last_gtid: Option<Gtid>,
    /// The file ended (ROTATE or STOP read): no later version will follow.
    pub complete: bool,
    pub next_file: Option<String>,
    pub chunks: Vec<ChunkId>,
    pub stored_at: DateTime<Utc>,
    /// When the server was seen at exactly this file and size: nothing was
    /// missing from the capture up to that moment.
    pub verified_at: Option<DateTime<Utc>>,
    /// The scanner's state after `size`, so a restarted capture resumes scanning.
    #[serde(default)]
    pub scan: serde_json::Value,
}

/// A record with the object it is stored under.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: String,
    pub record: BinlogRecord,
}

/// Store a record; returns its object name.
pub async fn save(repo: &Repository, r: &BinlogRecord) -> Result<String> {
    let id = repo.put_meta(MetaKind::Binlog, DIR, &json_bytes(r)?).await?;
    Ok(format!("{DIR}/{}", hex::encode(id)))
}

pub async fn delete(repo: &Repository, object: &str) -> Result<()> {
    Ok(repo.store().delete(object).await?)
}

/// Every record, including superseded versions. A damaged record is an error:
/// its chunks would otherwise look unused to prune.
pub async fn load_all(repo: &Repository) -> Result<Vec<Stored>> {
    let mut attempt = 0;
    loop {
        let names: Vec<String> = repo.store().list(&format!("{DIR}/")).await?.into_iter().map(|o| o.name).collect();
        let read: Vec<(String, Result<Vec<u8>>)> = stream::iter(names)
            .map(|n| async move {
                let r = repo.get_meta(MetaKind::Binlog, &n).await;
                (n, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut out = Vec::new();
        let mut vanished = false;
        for (object, r) in read {
            match r {
                Ok(plain) => {
                    let record = serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(&object, e))?;
                    out.push(Stored { object, record });
                }
                // Replaced by a newer version between listing and reading: list again.
                Err(RepoError::Store(e)) if e.is_not_found() => vanished = true,
                Err(e) => return Err(e),
            }
        }
        attempt += 1;
        if !vanished || attempt >= 5 {
            out.sort_by(|a, b| (&a.record.name, a.record.seq).cmp(&(&b.record.name, b.record.seq)));
            return Ok(out);
        }
    }
}

/// Every chunk any record references (prune keeps them).
pub async fn referenced_chunks(repo: &Repository) -> Result<HashSet<ChunkId>> {
    Ok(load_all(repo).await?.iter().flat_map(|s| s.record.chunks.iter().copied()).collect())
}

/// The newest version of each file of one capture, in file order, and the
/// objects of older versions (left by a crash between writing and deleting).
pub fn current(all: &[Stored], name: &str) -> (Vec<Stored>, Vec<String>) {
    let mut best: BTreeMap<(u64, &str), &Stored> = BTreeMap::new();
    let mut old = Vec::new();
    for s in all.iter().filter(|s| s.record.name == name) {
        let key = (s.record.seq, s.record.file.as_str());
        let newer = |a: &Stored, b: &Stored| {
            (a.record.size, a.record.complete, a.record.verified_at)
                > (b.record.size, b.record.complete, b.record.verified_at)
        };
        match best.get(&key) {
            Some(b) if !newer(s, b) => old.push(s.object.clone()),
            Some(b) => {
                old.push(b.object.clone());
                best.insert(key, s);
            }
            None => {
                best.insert(key, s);
            }
        }
    }
    (best.into_values().cloned().collect(), old)
}

/// A break in the captured log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// The last file before the gap and the first after it.
    pub after: String,
    pub before: String,
    pub reason: String,
}

/// Breaks between consecutive files: a number skipped, a file not captured
/// to its end, or a GTID state that does not continue (which also catches a
/// switch to a server with a different history).
pub fn gaps(files: &[Stored]) -> Vec<Gap> {
    let mut out = Vec::new();
    for w in files.windows(2) {
        let (a, b) = (&w[0].record, &w[1].record);
        let gap = |reason: String| Gap { after: a.file.clone(), before: b.file.clone(), reason };
        let between = missing_between(&a.file, b.seq);
        let listed =
            if between.is_empty() { String::new() } else { format!("; missing files: {}", between.join(", ")) };
        if !a.complete {
            out.push(gap(format!(
                "{} was captured only up to position {}; the rest of it is missing{listed}",
                a.file, a.size
            )));
        } else if b.seq != a.seq + 1 || a.next_file.as_ref().is_some_and(|n| n != &b.file) {
            out.push(gap(format!(
                "binlog files between {} and {} are missing (purged before they were copied?){listed}",
                a.file, b.file
            )));
        } else if !b.gtid_start.is_empty() && a.gtid_end != b.gtid_start {
            out.push(gap(format!(
                "GTID state at the end of {} ({}) does not continue into {} ({})",
                a.file,
                format_list(&a.gtid_end),
                b.file,
                format_list(&b.gtid_start)
            )));
        }
    }
    out
}

/// File names after `file` and before number `before` (at most 20 listed).
fn missing_between(file: &str, before: u64) -> Vec<String> {
    let Some((base, n)) = file.rsplit_once('.').and_then(|(b, n)| Some((b, n.parse::<u64>().ok()?))) else {
        return Vec::new();
    };
    let width = file.len() - base.len() - 1;
    let mut out: Vec<String> = (n + 1..before).take(20).map(|k| format!("{base}.{k:0width$}")).collect();
    if before.saturating_sub(n + 1) > 20 {
        out.push("...".into());
    }
    out
}

/// Capture names in the catalog.
pub fn names(all: &[Stored]) -> Vec<String> {
    let mut v: Vec<String> = all.iter().map(|s| s.record.name.clone()).collect();
    v.sort();
    v.dedup();
    v
}

/// Records of one capture by file name.
pub fn by_file(files: &[Stored]) -> HashMap<&str, &BinlogRecord> {
    files.iter().map(|s| (s.record.file.as_str(), &s.record)).collect()
}

/// One capture's state at a glance (`drtool binlog --status`, `show`, metrics).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub server: String,
    pub files: usize,
    pub first_file: String,
    pub last_file: String,
    pub bytes: u64,
    pub first_event: Option<DateTime<Utc>>,
    /// The newest captured event, and its age: the archive lag.
    pub newest_event: Option<DateTime<Utc>>,
    pub newest_event_age_seconds: Option<i64>,
    /// When the server was last seen with nothing more than what is stored.
    pub verified_at: Option<DateTime<Utc>>,
    pub last_gtid: Option<String>,
    pub gaps: Vec<Gap>,
}

pub fn summary(files: &[Stored], now: DateTime<Utc>) -> Option<Summary> {
    let (first, last) = (&files.first()?.record, &files.last()?.record);
    let newest = files.iter().rev().find_map(|s| s.record.last_time);
    Some(Summary {
        name: last.name.clone(),
        server: last.server.clone(),
        files: files.len(),
        first_file: first.file.clone(),
        last_file: last.file.clone(),
        bytes: files.iter().map(|s| s.record.size).sum(),
        first_event: files.iter().find_map(|s| s.record.first_time),
        newest_event: newest,
        newest_event_age_seconds: newest.map(|t| (now - t).num_seconds()),
        verified_at: last.verified_at,
        last_gtid: files.iter().rev().find_map(|s| s.record.last_gtid).map(|g| g.to_string()),
        gaps: gaps(files),
    })
}
