//! A restore run: snapshot -> verified bytes -> stdout, a file, or a directory.
//!
//! Trees restore with their metadata (target/tree.rs), files sparse
//! (target/sparse.rs), hard links as hard links. `--include` narrows a
//! restore to some paths (job/include.rs); every include must match
//! something, checked before anything is written. A dry run only plans.

use super::JobError;
use super::include::Includes;
use super::restore_batch::{FileBatch, FillQueue, PendingFile};
use crate::pipeline::ChunkId;
use crate::repo::index::Index;
use crate::repo::reader::{read_stream, read_tree};
use crate::repo::snapshot::{Item, Snapshot};
use crate::repo::tree::{Node, NodeKind, RawPath};
use crate::repo::{RepoError, Repository, lock};
use crate::target::create_new_file;
use crate::target::sparse::SparseWriter;
use crate::target::tree::{TargetError, apply_metadata, create_node, safe_join};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum RestoreTarget {
    Stdout,
    Dir(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only these paths (and what is below them); see job/include.rs.
    pub include: Vec<String>,
    /// List what would be restored; write nothing.
    pub dry_run: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Metadata that could not be applied (owner, extended attributes); the
    /// data itself was restored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// With `dry_run`: what would be restored, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<PlannedEntry>,
}

/// One entry a dry run would restore.
#[derive(Debug, Serialize)]
pub struct PlannedEntry {
    pub path: String,
    pub kind: NodeKind,
    pub size: u64,
}

/// What to restore of one manifest item.
enum Plan<'a> {
    Stream { name: &'a str, chunks: &'a [ChunkId], size: u64 },
    Tree { nodes: Vec<Node>, all: Vec<Node> },
}

pub async fn run(repo: Arc<Repository>, snap: &Snapshot, target: &RestoreTarget) -> Result<RestoreSummary, JobError> {
    run_with(repo, snap, target, &RestoreOptions::default()).await
}

pub async fn run_with(
    repo: Arc<Repository>,
    snap: &Snapshot,
    target: &RestoreTarget,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, JobError> {
    let guard = lock::acquire(&repo, false, "restore").await?;
    let result = restore_locked(&repo, snap, target, opts).await;
    let released = guard.release().await;
    let summary = result?;
    released?;
    Ok(summary)
}

async fn restore_locked(
    repo: &Arc<Repository>,
    snap: &Snapshot,
    target: &RestoreTarget,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, JobError> {
    let index = Arc::new(repo.load_index().await?);
    let mut summary = RestoreSummary::default();
    if let RestoreTarget::Stdout = target
        && snap.manifest.items.iter().any(|i| matches!(i, Item::Tree { .. }))
    {
        return Err(JobError::Usage("snapshot holds a file tree; restore it with --target DIR".into()));
    }
    let plans = plan(repo, &index, snap, &opts.include).await?;
    if opts.dry_run && matches!(target, RestoreTarget::Stdout) {
        return Err(JobError::Usage("--dry-run needs --target DIR".into()));
    }
    let dir = match target {
        RestoreTarget::Dir(dir) => dir,
        RestoreTarget::Stdout => {
            for p in &plans {
                if let Plan::Stream { chunks, .. } = p {
                    summary.bytes += restore_stdout(repo, &index, chunks).await?;
                }
            }
            return Ok(summary);
        }
    };
    if opts.dry_run {
        for p in &plans {
            list_plan(p, dir, &mut summary)?;
        }
        return Ok(summary);
    }
    std::fs::create_dir_all(dir).map_err(|source| TargetError::Io { path: dir.display().to_string(), source })?;
    for p in &plans {
        match p {
            Plan::Stream { name, chunks, .. } => {
                let path = safe_join(dir, name.as_bytes())?;
                summary.bytes += restore_file(repo, &index, chunks, open_new(&path)?, &path).await?;
                summary.files += 1;
            }
            Plan::Tree { nodes, all } => restore_tree(repo, &index, nodes, all, dir, &mut summary).await?,
        }
    }
    Ok(summary)
}

/// Read the trees and pick what `include` selects; fail before anything is
/// written when an include matches nothing.
async fn plan<'a>(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    snap: &'a Snapshot,
    include: &[String],
) -> Result<Vec<Plan<'a>>, JobError> {
    let mut includes = Includes::new(include);
    let mut plans = Vec::new();
    for item in &snap.manifest.items {
        match item {
            Item::Stream { name, chunks, size, .. } => {
                if includes.selects_path(name.as_bytes(), name.as_bytes()) {
                    plans.push(Plan::Stream { name, chunks, size: *size });
                }
            }
            Item::Tree { root, meta_chunks, .. } => {
                let all = read_tree(repo, index, meta_chunks).await?;
                let nodes: Vec<Node> = all.iter().filter(|n| includes.selects(root, n)).cloned().collect();
                // Without includes every node is selected: no need to keep a second copy.
                let all = if includes.is_empty() { Vec::new() } else { all };
                plans.push(Plan::Tree { nodes, all });
            }
        }
    }
    let unmatched = includes.unmatched();
    if !unmatched.is_empty() {
        return Err(JobError::Usage(format!(
            "--include {} matches nothing in snapshot {} (give the original path, e.g. /srv/data/dir, \
             or the path as restored, e.g. data/dir; list it with --dry-run)",
            unmatched.join(", "),
            snap.id.short()
        )));
    }
    Ok(plans)
}

fn list_plan(p: &Plan<'_>, dir: &Path, summary: &mut RestoreSummary) -> Result<(), JobError> {
    let mut add = |path: &[u8], kind: NodeKind, size: u64| -> Result<(), JobError> {
        let full = safe_join(dir, path)?;
        match kind {
            NodeKind::File => summary.files += 1,
            NodeKind::Dir => summary.dirs += 1,
            NodeKind::Symlink => summary.symlinks += 1,
            NodeKind::Hardlink => summary.hardlinks += 1,
        }
        summary.bytes += size;
        summary.planned.push(PlannedEntry { path: full.display().to_string(), kind, size });
        Ok(())
    };
    match p {
        Plan::Stream { name, size, .. } => add(name.as_bytes(), NodeKind::File, *size),
        Plan::Tree { nodes, .. } => nodes.iter().try_for_each(|n| add(&n.path.0, n.kind, n.size)),
    }
}

async fn restore_stdout(repo: &Arc<Repository>, index: &Arc<Index>, chunks: &[ChunkId]) -> Result<u64, JobError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let n = read_stream(repo, index, chunks, |d| out.write_all(d)).await?;
    tokio::task::block_in_place(|| out.flush()).map_err(|e| RepoError::io("stdout", e))?;
    Ok(n)
}

fn open_new(path: &Path) -> Result<std::fs::File, JobError> {
    Ok(create_new_file(path).map_err(|source| TargetError::Io { path: path.display().to_string(), source })?)
}

/// Restore one chunk list into a new file, leaving zero blocks as holes; on
/// failure the partial file is removed, so a damaged snapshot never leaves a
/// plausible-looking but wrong file.
async fn restore_file(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    chunks: &[ChunkId],
    file: std::fs::File,
    path: &Path,
) -> Result<u64, JobError> {
    let mut out = SparseWriter::new(file);
    let r = read_stream(repo, index, chunks, |d| out.write(d)).await;
    let r = r.and_then(|_| out.finish().map_err(|e| RepoError::io(path.display().to_string(), e)));
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    Ok(r?)
}

/// Restore the selected `nodes` of a tree (parents come before children).
/// `all` is the whole tree when `nodes` is a selection: a hard link whose
/// first name was not selected gets that file's content instead. File
/// contents are written a batch of files at a time (job/restore_batch.rs).
async fn restore_tree(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    nodes: &[Node],
    all: &[Node],
    dir: &Path,
    summary: &mut RestoreSummary,
) -> Result<(), JobError> {
    let mut dirs = Vec::new();
    let (mut batch, mut queue) = (FileBatch::default(), FillQueue::new(repo, index));
    // Name a file was recorded under -> name it was restored under.
    let mut placed: HashMap<&RawPath, RawPath> = HashMap::new();
    let mut files_by_path: Option<HashMap<&RawPath, &Node>> = None;
    for node in nodes {
        if node.kind == NodeKind::Hardlink {
            let first =
                node.target.as_ref().ok_or_else(|| RepoError::corrupt("tree metadata", "hard link without target"))?;
            if let Some(at) = placed.get(first) {
                // The file linked to must be complete before it gets a second name.
                flush(&mut queue, &mut batch, true, summary).await?;
                let link = Node { target: Some(at.clone()), ..node.clone() };
                create_node(dir, &link)?;
                summary.hardlinks += 1;
                continue;
            }
            let by_path = files_by_path
                .get_or_insert_with(|| all.iter().filter(|n| n.kind == NodeKind::File).map(|n| (&n.path, n)).collect());
            let orig = by_path.get(first).ok_or_else(|| {
                RepoError::corrupt("tree metadata", format!("hard link to {}, which the tree lacks", first.display()))
            })?;
            // The first name is not restored: this one takes the content.
            let substitute = Node { path: node.path.clone(), ..(*orig).clone() };
            queue_tree_file(&mut queue, dir, substitute, &mut batch, summary).await?;
            placed.insert(first, node.path.clone());
            continue;
        }
        match node.kind {
            NodeKind::File => {
                queue_tree_file(&mut queue, dir, node.clone(), &mut batch, summary).await?;
                placed.insert(&node.path, node.path.clone());
            }
            NodeKind::Dir => {
                let (path, _) = create_node(dir, node)?;
                summary.dirs += 1;
                dirs.push((path, node));
            }
            NodeKind::Symlink => {
                let (path, _) = create_node(dir, node)?;
                summary.symlinks += 1;
                apply_metadata(&path, node, &mut summary.warnings)?;
            }
            NodeKind::Hardlink => {}
        }
    }
    flush(&mut queue, &mut batch, true, summary).await?;
    // Children first: writing into a directory changes its mtime.
    for (path, node) in dirs.iter().rev() {
        apply_metadata(path, node, &mut summary.warnings)?;
    }
    Ok(())
}

/// Create a file of the tree and add it to `batch`, handing the batch to the
/// queue once it is full.
async fn queue_tree_file(
    queue: &mut FillQueue,
    dir: &Path,
    node: Node,
    batch: &mut FileBatch,
    summary: &mut RestoreSummary,
) -> Result<(), JobError> {
    let (path, file) = create_node(dir, &node)?;
    let file = file.ok_or_else(|| RepoError::Pipeline("no file to restore into".into()))?;
    batch.push(PendingFile { path, file, node });
    if batch.is_full() {
        flush(queue, batch, false, summary).await?;
    }
    Ok(())
}

/// Hand `batch` to the queue (and with `all`, wait for every batch), then
/// apply the metadata of the files whose content is complete.
async fn flush(
    queue: &mut FillQueue,
    batch: &mut FileBatch,
    all: bool,
    summary: &mut RestoreSummary,
) -> Result<(), JobError> {
    let mut done = queue.push(std::mem::take(batch)).await?;
    if all {
        done.extend(queue.drain().await?);
    }
    for f in done {
        summary.bytes += f.size;
        summary.files += 1;
        apply_metadata(&f.path, &f.node, &mut summary.warnings)?;
    }
    Ok(())
}
