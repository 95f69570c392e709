//! A restore run: snapshot -> verified bytes -> stdout, a file, or a directory.

use super::JobError;
use crate::repo::index::Index;
use crate::repo::reader::{read_stream, read_tree};
use crate::repo::snapshot::{Item, Snapshot};
use crate::repo::tree::NodeKind;
use crate::repo::{Repository, lock};
use crate::target::create_new_file;
use crate::target::tree::{TargetError, apply_metadata, create_node, safe_join};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum RestoreTarget {
    Stdout,
    Dir(PathBuf),
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
}

pub async fn run(repo: Arc<Repository>, snap: &Snapshot, target: &RestoreTarget) -> Result<RestoreSummary, JobError> {
    let guard = lock::acquire(&repo, false, "restore").await?;
    let result = restore_locked(&repo, snap, target).await;
    let released = guard.release().await;
    let summary = result?;
    released?;
    Ok(summary)
}

async fn restore_locked(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    target: &RestoreTarget,
) -> Result<RestoreSummary, JobError> {
    let index = Arc::new(repo.load_index().await?);
    let mut summary = RestoreSummary::default();
    if let RestoreTarget::Stdout = target {
        if snap.manifest.items.iter().any(|i| matches!(i, Item::Tree { .. })) {
            return Err(JobError::Usage("snapshot holds a file tree; restore it with --target DIR".into()));
        }
    }
    for item in &snap.manifest.items {
        match (item, target) {
            (Item::Stream { chunks, .. }, RestoreTarget::Stdout) => {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                summary.bytes += read_stream(repo, &index, chunks, |d| out.write_all(d)).await?;
                tokio::task::block_in_place(|| out.flush()).map_err(|e| crate::repo::RepoError::io("stdout", e))?;
            }
            (Item::Stream { name, chunks, .. }, RestoreTarget::Dir(dir)) => {
                std::fs::create_dir_all(dir)
                    .map_err(|source| TargetError::Io { path: dir.display().to_string(), source })?;
                let path = safe_join(dir, name.as_bytes())?;
                summary.bytes += restore_file(repo, &index, chunks, open_new(&path)?, &path).await?;
                summary.files += 1;
            }
            (Item::Tree { meta_chunks, .. }, RestoreTarget::Dir(dir)) => {
                restore_tree(repo, &index, meta_chunks, dir, &mut summary).await?;
            }
            // Rejected above, before any output was written.
            (Item::Tree { .. }, RestoreTarget::Stdout) => {}
        }
    }
    Ok(summary)
}

fn open_new(path: &Path) -> Result<std::fs::File, JobError> {
    Ok(create_new_file(path).map_err(|source| TargetError::Io { path: path.display().to_string(), source })?)
}

/// Restore one chunk list into a new file; on failure the partial file is removed,
/// so a damaged snapshot never leaves a plausible-looking but wrong file.
async fn restore_file(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    chunks: &[crate::pipeline::ChunkId],
    file: std::fs::File,
    path: &Path,
) -> Result<u64, JobError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let r = read_stream(repo, index, chunks, |d| out.write_all(d)).await;
    let r =
        r.and_then(|n| out.flush().map(|_| n).map_err(|e| crate::repo::RepoError::io(path.display().to_string(), e)));
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    Ok(r?)
}

async fn restore_tree(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    meta: &[crate::pipeline::ChunkId],
    dir: &Path,
    summary: &mut RestoreSummary,
) -> Result<(), JobError> {
    std::fs::create_dir_all(dir).map_err(|source| TargetError::Io { path: dir.display().to_string(), source })?;
    let nodes = read_tree(repo, index, meta).await?;
    let mut dirs = Vec::new();
    for node in &nodes {
        let (path, file) = create_node(dir, node)?;
        match (node.kind, file) {
            (NodeKind::File, Some(file)) => {
                summary.bytes += restore_file(repo, index, &node.chunks, file, &path).await?;
                summary.files += 1;
                apply_metadata(&path, node)?;
            }
            (NodeKind::Dir, _) => {
                summary.dirs += 1;
                dirs.push((path, node));
            }
            (NodeKind::Symlink, _) => {
                summary.symlinks += 1;
                apply_metadata(&path, node)?;
            }
            (NodeKind::File, None) => {}
        }
    }
    // Children first: writing into a directory changes its mtime.
    for (path, node) in dirs.iter().rev() {
        apply_metadata(path, node)?;
    }
    Ok(())
}
