//! Snapshot manifests: the sealed record that makes a backup exist.
//!
//! A manifest is written last, after every pack and index file it depends on
//! is stored; a run that dies before that leaves only garbage.

use super::ids::SnapshotId;
use crate::pipeline::ChunkId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 1;

/// One thing a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A byte stream (stdin, a command's stdout, a database dump).
    Stream {
        name: String,
        size: u64,
        chunks: Vec<ChunkId>,
        /// The database a dump stream holds (database sources only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
        /// How to restore it: `mysql-sql`, `mysql-users`, `pg-custom`, `pg-globals`, `mongodb-archive`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// A file tree; its node list is itself stored as a chunked stream of JSON lines.
    Tree {
        /// The path that was backed up, as given on the command line (absolute).
        root: String,
        files: u64,
        dirs: u64,
        size: u64,
        meta_size: u64,
        meta_chunks: Vec<ChunkId>,
    },
}

impl Item {
    /// A stream with no database meaning (stdin, a command).
    pub fn plain_stream(name: &str, size: u64, chunks: Vec<ChunkId>) -> Self {
        Item::Stream { name: name.to_string(), size, chunks, database: None, format: None }
    }

    pub fn size(&self) -> u64 {
        match self {
            Item::Stream { size, .. } | Item::Tree { size, .. } => *size,
        }
    }
}

/// What produced the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SourceInfo {
    /// `stdin`, `command`, `paths`, later `mysql`, `postgres`, ...
    pub kind: String,
    /// Kind-specific details (command line, tool versions, positions, ...).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Sizes and counts measured during the backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BackupSummary {
    pub bytes_read: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
    pub chunks: u64,
    pub chunks_new: u64,
    pub packs: u64,
    pub duration_ms: u64,
    /// File bytes taken from the parent snapshot without reading (unchanged files).
    #[serde(default)]
    pub bytes_unchanged: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotManifest {
    pub version: u32,
    pub time: DateTime<Utc>,
    pub host: String,
    pub name: String,
    pub source: SourceInfo,
    pub items: Vec<Item>,
    pub summary: BackupSummary,
    #[serde(default)]
    pub tags: Vec<String>,
    /// True when some inputs could not be read (see the volume issue).
    #[serde(default)]
    pub partial: bool,
    /// Facts recorded at backup time for drills to compare (row counts, ...).
    #[serde(default)]
    pub fingerprints: serde_json::Value,
    pub drtool_version: String,
    /// The snapshot whose file metadata let unchanged files be skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
}

impl SnapshotManifest {
    pub fn size(&self) -> u64 {
        self.items.iter().map(Item::size).sum()
    }

    /// Every chunk the manifest references directly (tree contents need the tree stream).
    pub fn direct_chunks(&self) -> impl Iterator<Item = &ChunkId> {
        self.items.iter().flat_map(|i| match i {
            Item::Stream { chunks, .. } => chunks.iter(),
            Item::Tree { meta_chunks, .. } => meta_chunks.iter(),
        })
    }
}

/// Stream names become file names on `restore --target`, so they must be one
/// plain path component.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(format!("invalid stream name {name:?}: use a non-empty name without '/' of at most 255 bytes"));
    }
    Ok(())
}

/// A manifest with the id it is stored under.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub manifest: SnapshotManifest,
}
