//! Backing up file trees, incrementally against a parent snapshot.
//!
//! A file whose size, mtime, ctime and inode match the parent snapshot's
//! record is not read again: its chunk list is reused, provided every chunk is
//! still indexed. Streams never get this shortcut (DESIGN.md: a dump that
//! "looks unchanged" is read anyway).

use super::JobError;
use super::backup::FeedResult;
use crate::pipeline::ChunkId;
use crate::repo::index::Index;
use crate::repo::reader::read_tree;
use crate::repo::snapshot::{Item, SourceInfo};
use crate::repo::tree::{Node, NodeKind, RawPath};
use crate::repo::writer::Feeder;
use crate::repo::{RepoError, Repository, ids::SnapshotId};
use crate::source::exclude::{Exclusions, TreeOptions};
use crate::source::tree::{ContentSink, WalkError, walk};
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// Parent file records by backed-up root, then by node path.
pub type ParentTrees = HashMap<String, HashMap<RawPath, Node>>;

/// The latest snapshot of the same name from `host`, and its file records.
/// A parent that cannot be read only costs speed: everything is read instead.
pub async fn parent_trees(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    name: &str,
    host: &str,
) -> (Option<SnapshotId>, ParentTrees) {
    let snaps = match repo.list_snapshots().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no parent snapshot ({e}); reading all files");
            return (None, ParentTrees::default());
        }
    };
    let Some(parent) = snaps
        .iter()
        .rev()
        .find(|s| s.manifest.name == name && s.manifest.host == host && s.manifest.source.kind == "paths")
    else {
        return (None, ParentTrees::default());
    };
    let mut trees = ParentTrees::default();
    for item in &parent.manifest.items {
        let Item::Tree { root, meta_chunks, .. } = item else { continue };
        match read_tree(repo, index, meta_chunks).await {
            Ok(nodes) => {
                let files =
                    nodes.into_iter().filter(|n| n.kind == NodeKind::File).map(|n| (n.path.clone(), n)).collect();
                trees.insert(root.clone(), files);
            }
            Err(e) => tracing::warn!("parent snapshot {} unreadable ({e}); reading all files", parent.id.short()),
        }
    }
    (Some(parent.id), trees)
}

struct FeederSink<'a> {
    feeder: &'a mut Feeder,
    parent: Option<&'a HashMap<RawPath, Node>>,
}

impl ContentSink for FeederSink<'_> {
    type Error = RepoError;

    fn file(&mut self, file: File) -> Result<(Vec<ChunkId>, u64), RepoError> {
        let (s, _) = self.feeder.write_stream(file)?;
        Ok((s.chunks, s.size))
    }

    fn unchanged(&mut self, node: &Node) -> Option<Vec<ChunkId>> {
        let p = self.parent?.get(&node.path)?;
        if !p.unchanged_as(node.size, node.mtime_ns, node.ctime_ns, node.ino) || !self.feeder.has_all(&p.chunks) {
            return None;
        }
        self.feeder.note_unchanged(p.size);
        Some(p.chunks.clone())
    }
}

pub(super) fn feed_paths(
    feeder: &mut Feeder,
    paths: &[PathBuf],
    options: &TreeOptions,
    parents: &ParentTrees,
) -> Result<FeedResult, JobError> {
    let exclusions = Exclusions::new(options).map_err(|e| JobError::Usage(e.to_string()))?;
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    for path in paths {
        let mut abs = std::path::absolute(path).map_err(|e| RepoError::io(path.display().to_string(), e))?;
        if abs.file_name().is_none() {
            // `..` or `/x/..`: name the root by what it really is.
            abs = std::fs::canonicalize(&abs).map_err(|e| RepoError::io(path.display().to_string(), e))?;
        }
        let root = abs.display().to_string();
        let mut meta = Vec::new();
        let mut emit = |n: Node| {
            // Serialising plain structs to a Vec cannot fail.
            if serde_json::to_writer(&mut meta, &n).is_ok() {
                meta.push(b'\n');
            }
        };
        let mut sink = FeederSink { feeder, parent: parents.get(&root) };
        let stats = walk(&abs, &exclusions, &mut sink, &mut emit).map_err(|e| match e {
            WalkError::Root(p, source) => JobError::Source(crate::source::SourceError::Io { path: p, source }),
            WalkError::Sink(e) => JobError::Repo(e),
        })?;
        let (meta_ref, _) = feeder.write_stream(&meta[..])?;
        tracing::info!(
            "{root}: {} files ({} unchanged, {} hard links), {} dirs, {} excluded, {} special files skipped, {} unreadable",
            stats.files,
            stats.files_unchanged,
            stats.hardlinks,
            stats.dirs,
            stats.excluded,
            stats.special_skipped,
            stats.errors.len()
        );
        warnings.extend(stats.errors);
        items.push(Item::Tree {
            root,
            files: stats.files,
            dirs: stats.dirs,
            size: stats.bytes,
            meta_size: meta_ref.size,
            meta_chunks: meta_ref.chunks,
        });
    }
    let roots: Vec<String> =
        items.iter().filter_map(|i| if let Item::Tree { root, .. } = i { Some(root.clone()) } else { None }).collect();
    Ok(FeedResult {
        items,
        source: SourceInfo { kind: "paths".into(), details: serde_json::json!({ "paths": roots }) },
        warnings,
        fingerprints: serde_json::Value::Null,
    })
}
