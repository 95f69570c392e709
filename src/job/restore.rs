//! A restore run: snapshot -> verified bytes -> stdout, a file, or a directory.
//!
//! Trees restore with their metadata (target/tree.rs), files sparse
//! (target/sparse.rs), hard links as hard links. `--include` narrows a
//! restore to some paths (job/include.rs); every include must match
//! something, checked before anything is written. A dry run only plans.
//!
//! Where trees land: under their root's name (`/srv/uploads` as
//! `DIR/uploads`), unless two trees of different roots share a name; those
//! land under their full original paths (`DIR/www/a/uploads`), so neither
//! overwrites the other (see [`tree_places`]). This is decided at restore
//! time from the manifest, so older snapshots restore the same way.
//!
//! `--stdout` writes one stream: a snapshot with several (one per database)
//! needs `--stream NAME`, never a concatenation of them all.

use super::JobError;
use super::include::{Includes, original_path};
use super::restore_batch::{FileBatch, FillQueue, PendingFile};
use crate::pipeline::ChunkId;
use crate::repo::index::Index;
use crate::repo::reader::{read_stream, read_tree};
use crate::repo::snapshot::{Item, Snapshot};
use crate::repo::tree::{Node, NodeKind, RawPath};
use crate::repo::{RepoError, Repository, lock};
use crate::target::create_new_file;
use crate::target::sparse::SparseWriter;
use crate::target::tree::{
    NewFile, TargetError, create_dir, create_hardlink, create_parents, create_symlink, finish_dir, safe_join,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
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
    /// Only the stream of this name (`--stream`); `--stdout` needs it when
    /// the snapshot holds several streams.
    pub stream: Option<String>,
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
    /// Where each tree lands under the target (`--target` restores).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trees: Vec<TreePlacement>,
}

/// Where one tree of the snapshot is restored.
#[derive(Debug, Serialize)]
pub struct TreePlacement {
    /// The path that was backed up.
    pub root: String,
    /// Where it lands.
    pub path: String,
    /// Under its full original path, because another tree has the same name.
    pub full_path: bool,
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
    Tree { nodes: Vec<Node>, all: Vec<Node>, root: &'a str, place: Vec<u8>, full_path: bool },
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
    let to_stdout = matches!(target, RestoreTarget::Stdout);
    if to_stdout && opts.stream.is_none() && snap.manifest.items.iter().any(|i| matches!(i, Item::Tree { .. })) {
        return Err(JobError::Usage("snapshot holds a file tree; restore it with --target DIR".into()));
    }
    if opts.dry_run && to_stdout {
        return Err(JobError::Usage("--dry-run needs --target DIR".into()));
    }
    check_stream_choice(snap, opts.stream.as_deref(), to_stdout)?;
    let plans = plan(repo, &index, snap, opts).await?;
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
    for p in &plans {
        if let Plan::Tree { root, place, full_path, .. } = p {
            let path = safe_join(dir, place)?.display().to_string();
            summary.trees.push(TreePlacement { root: root.to_string(), path, full_path: *full_path });
        }
    }
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
                summary.bytes += restore_new_file(repo, &index, chunks, &path).await?;
                summary.files += 1;
            }
            Plan::Tree { nodes, all, place, .. } => {
                if let Some(cut) = place.iter().rposition(|&b| b == b'/')
                    && !nodes.is_empty()
                {
                    create_parents(dir, &place[..cut])?;
                }
                restore_tree(repo, &index, nodes, all, dir, &mut summary).await?
            }
        }
    }
    Ok(summary)
}

fn stream_names(snap: &Snapshot) -> Vec<&str> {
    snap.manifest
        .items
        .iter()
        .filter_map(|i| if let Item::Stream { name, .. } = i { Some(name.as_str()) } else { None })
        .collect()
}

/// `--stream NAME` must name a stream of the snapshot; `--stdout` writes
/// exactly one stream, so with several it must be chosen.
fn check_stream_choice(snap: &Snapshot, stream: Option<&str>, to_stdout: bool) -> Result<(), JobError> {
    let names = stream_names(snap);
    let listed = if names.is_empty() { "none (it holds file trees)".to_string() } else { names.join(", ") };
    match stream {
        Some(want) if !names.contains(&want) => {
            Err(JobError::Usage(format!("snapshot {} has no stream {want:?}; its streams: {listed}", snap.id.short())))
        }
        None if to_stdout && names.len() > 1 => Err(JobError::Usage(format!(
            "snapshot {} holds {} streams ({listed}); --stdout writes one: choose it with --stream NAME \
             (or restore them all as files with --target DIR)",
            snap.id.short(),
            names.len()
        ))),
        _ => Ok(()),
    }
}

/// The first component of a relative path.
fn top(path: &[u8]) -> &[u8] {
    path.split(|&b| b == b'/').next().unwrap_or_default()
}

/// `root` as a relative path (`/www/a/uploads` -> `www/a/uploads`), with
/// `.` and `..` resolved by name; `None` for `/` itself.
fn full_place(root: &str) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in root.as_bytes().split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join(&b'/'))
}

/// Where each tree lands below the target, given `(root, name)` per tree
/// (`name` is what the tree's node paths start with): `None` keeps the name,
/// as restores always did; `Some(path)` is the full original path, taken by
/// every tree whose landing name another tree of a different root also
/// takes. Repeated until nothing clashes, since a full path's first part
/// (`www`) may clash with yet another tree's name. Trees of the same root
/// (given twice) land together: they hold the same files.
fn tree_places(trees: &[(&str, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, JobError> {
    let mut full: Vec<Option<Vec<u8>>> = vec![None; trees.len()];
    loop {
        let tops: Vec<Vec<u8>> =
            trees.iter().zip(&full).map(|((_, name), f)| top(f.as_deref().unwrap_or(name)).to_vec()).collect();
        let mut changed = false;
        for (i, (root, _)) in trees.iter().enumerate() {
            if full[i].is_some() || !(0..trees.len()).any(|j| trees[j].0 != *root && tops[j] == tops[i]) {
                continue;
            }
            full[i] = Some(full_place(root).ok_or_else(|| {
                JobError::Usage(format!(
                    "the tree of {root} cannot be restored beside another tree named {:?}; restore it with \
                     --include {root}",
                    String::from_utf8_lossy(&tops[i])
                ))
            })?);
            changed = true;
        }
        if !changed {
            return Ok(full);
        }
    }
}

/// `path` with its first component replaced by `place`.
fn relocate(path: &RawPath, place: &[u8]) -> RawPath {
    let rest = path.0.iter().position(|&b| b == b'/').map_or(&[][..], |i| &path.0[i..]);
    RawPath([place, rest].concat())
}

/// Read the trees and pick what `opts` selects; fail before anything is
/// written when an include matches nothing.
async fn plan<'a>(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    snap: &'a Snapshot,
    opts: &RestoreOptions,
) -> Result<Vec<Plan<'a>>, JobError> {
    let mut trees = Vec::new();
    for item in &snap.manifest.items {
        if let Item::Tree { root, meta_chunks, .. } = item
            && opts.stream.is_none()
        {
            let all = read_tree(repo, index, meta_chunks).await?;
            let name = all.first().map(|n| top(&n.path.0).to_vec()).unwrap_or_default();
            trees.push((root.as_str(), name, all));
        }
    }
    let keys: Vec<(&str, &[u8])> = trees.iter().map(|(r, n, _)| (*r, &n[..])).collect();
    let mut places = tree_places(&keys)?.into_iter();
    let mut trees = trees.into_iter();
    let mut includes = Includes::new(&opts.include);
    let mut plans = Vec::new();
    for item in &snap.manifest.items {
        match item {
            Item::Stream { name, chunks, size, .. } => {
                if opts.stream.as_ref().is_none_or(|s| s == name)
                    && includes.selects_path(name.as_bytes(), name.as_bytes())
                {
                    plans.push(Plan::Stream { name, chunks, size: *size });
                }
            }
            Item::Tree { .. } => {
                let (Some((root, name, all)), Some(full)) = (trees.next(), places.next()) else { continue };
                plans.push(tree_plan(&mut includes, root, name, all, full));
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

/// One tree's plan: its nodes renamed to where they land (hard link targets
/// too), and those `includes` select (by original path, or by the path as
/// restored).
fn tree_plan<'a>(
    includes: &mut Includes,
    root: &'a str,
    name: Vec<u8>,
    mut all: Vec<Node>,
    full: Option<Vec<u8>>,
) -> Plan<'a> {
    let full_path = full.is_some();
    let place = full.unwrap_or(name);
    let mut nodes = Vec::new();
    for n in &mut all {
        let original = original_path(root, &n.path.0);
        if full_path {
            n.path = relocate(&n.path, &place);
            if n.kind == NodeKind::Hardlink {
                n.target = n.target.as_ref().map(|t| relocate(t, &place));
            }
        }
        if includes.selects_path(&original, &n.path.0) {
            nodes.push(n.clone());
        }
    }
    // Without includes every node is selected: no need to keep a second copy.
    let all = if includes.is_empty() { Vec::new() } else { all };
    Plan::Tree { nodes, all, root, place, full_path }
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

/// Restore one chunk list into `file` (new and empty), leaving zero blocks
/// as holes. Every chunk is verified as it is read; the caller removes or
/// keeps the file depending on the result.
async fn write_content(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    chunks: &[ChunkId],
    file: &std::fs::File,
    path: &Path,
) -> Result<u64, JobError> {
    let io = |e| RepoError::io(path.display().to_string(), e);
    let mut out = SparseWriter::new(file.try_clone().map_err(io)?);
    read_stream(repo, index, chunks, |d| out.write(d)).await?;
    Ok(out.finish().map_err(io)?)
}

/// A stream restored as a new file (never over an existing one); on failure
/// the partial file is removed, so a damaged snapshot never leaves a
/// plausible-looking but wrong file.
async fn restore_new_file(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    chunks: &[ChunkId],
    path: &Path,
) -> Result<u64, JobError> {
    let file = create_new_file(path).map_err(|source| TargetError::Io { path: path.display().to_string(), source })?;
    let r = write_content(repo, index, chunks, &file, path).await;
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
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
    let (mut dirs, mut links) = (Vec::new(), PendingLinks::default());
    let (mut batch, mut queue) = (FileBatch::default(), FillQueue::new(repo, index));
    // Name a file was recorded under -> name it was restored under.
    let mut placed: HashMap<&RawPath, RawPath> = HashMap::new();
    let mut files_by_path: Option<HashMap<&RawPath, &Node>> = None;
    for node in nodes {
        if links.is_above(node) {
            flush(&mut queue, &mut batch, true, summary).await?;
            links.place(dir, summary)?;
        }
        match node.kind {
            NodeKind::Hardlink => {
                let first = node
                    .target
                    .as_ref()
                    .ok_or_else(|| RepoError::corrupt("tree metadata", "hard link without target"))?;
                if let Some(at) = placed.get(first) {
                    // The file linked to must be complete and in place before it gets a second name.
                    flush(&mut queue, &mut batch, true, summary).await?;
                    create_hardlink(dir, &Node { target: Some(at.clone()), ..node.clone() })?;
                    summary.hardlinks += 1;
                    continue;
                }
                let by_path = files_by_path.get_or_insert_with(|| {
                    all.iter().filter(|n| n.kind == NodeKind::File).map(|n| (&n.path, n)).collect()
                });
                let orig = by_path.get(first).ok_or_else(|| {
                    RepoError::corrupt(
                        "tree metadata",
                        format!("hard link to {}, which the tree lacks", first.display()),
                    )
                })?;
                // The first name is not restored: this one takes the content.
                let substitute = Node { path: node.path.clone(), ..(*orig).clone() };
                queue_tree_file(&mut queue, dir, substitute, &mut batch, summary).await?;
                placed.insert(first, node.path.clone());
            }
            NodeKind::File => {
                queue_tree_file(&mut queue, dir, node.clone(), &mut batch, summary).await?;
                placed.insert(&node.path, node.path.clone());
            }
            NodeKind::Dir => {
                create_dir(dir, node)?;
                summary.dirs += 1;
                dirs.push(node);
            }
            NodeKind::Symlink => links.push(node),
        }
    }
    flush(&mut queue, &mut batch, true, summary).await?;
    links.place(dir, summary)?;
    // Children first: writing into a directory changes its mtime.
    for node in dirs.iter().rev() {
        finish_dir(dir, node, &mut summary.warnings)?;
    }
    Ok(())
}

/// Symlinks wait until the files before them are verified and in place, so a
/// failed restore replaces no existing entry with a link (a link has no
/// content to verify first). A node below a waiting link, which only a
/// crafted snapshot has, puts the links in place first, so that its unsafe
/// parent is refused as such.
#[derive(Default)]
struct PendingLinks<'a> {
    nodes: Vec<&'a Node>,
    paths: HashSet<&'a [u8]>,
}

impl<'a> PendingLinks<'a> {
    fn push(&mut self, node: &'a Node) {
        self.paths.insert(&node.path.0);
        self.nodes.push(node);
    }

    fn is_above(&self, node: &Node) -> bool {
        let p = &node.path.0;
        !self.paths.is_empty() && (0..p.len()).any(|i| p[i] == b'/' && self.paths.contains(&p[..i]))
    }

    fn place(&mut self, dir: &Path, summary: &mut RestoreSummary) -> Result<(), JobError> {
        for node in self.nodes.drain(..) {
            create_symlink(dir, node, &mut summary.warnings)?;
            summary.symlinks += 1;
        }
        self.paths.clear();
        Ok(())
    }
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
    // Written under a temporary name; it replaces what is at its path only
    // once its content is complete and verified (target/tree.rs).
    let (file, place) = NewFile::create(dir, &node)?.split();
    batch.push(PendingFile { path: place.tmp_path().to_path_buf(), file, node, place });
    if batch.is_full() {
        flush(queue, batch, false, summary).await?;
    }
    Ok(())
}

/// Hand `batch` to the queue (and with `all`, wait for every batch), then
/// apply the metadata of the files whose content is complete and put them
/// in place.
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
        tokio::task::block_in_place(|| f.place.commit(&f.file, &f.node, &mut summary.warnings))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(trees: &[(&str, &str)]) -> Vec<Option<String>> {
        let t: Vec<(&str, &[u8])> = trees.iter().map(|(r, n)| (*r, n.as_bytes())).collect();
        tree_places(&t).unwrap().into_iter().map(|p| p.map(|p| String::from_utf8(p).unwrap())).collect()
    }

    #[test]
    fn unique_names_keep_their_place_and_shared_ones_take_full_paths() {
        assert_eq!(places(&[("/srv/uploads", "uploads"), ("/etc/app", "app")]), [None, None]);
        assert_eq!(
            places(&[("/www/a/uploads", "uploads"), ("/www/b/./uploads/", "uploads"), ("/etc/app", "app")]),
            [Some("www/a/uploads".into()), Some("www/b/uploads".into()), None]
        );
        // `www` is a full path's first part now: the tree named www moves too.
        assert_eq!(
            places(&[("/www/a/uploads", "uploads"), ("/data/www", "www"), ("/www/b/uploads", "uploads")]),
            [Some("www/a/uploads".into()), Some("data/www".into()), Some("www/b/uploads".into())]
        );
        // The same root twice holds the same files: it stays.
        assert_eq!(places(&[("/srv/x", "x"), ("/srv/x", "x")]), [None, None]);
        let t: Vec<(&str, &[u8])> = vec![("/", b"root"), ("/root", b"root")];
        assert!(matches!(tree_places(&t), Err(JobError::Usage(_))));
    }

    #[test]
    fn relocation_replaces_the_first_component() {
        assert_eq!(relocate(&RawPath(b"uploads".to_vec()), b"www/a/uploads").0, b"www/a/uploads");
        assert_eq!(relocate(&RawPath(b"uploads/x/y".to_vec()), b"www/a/uploads").0, b"www/a/uploads/x/y");
        assert_eq!(full_place("/a/../b/./c//"), Some(b"b/c".to_vec()));
        assert_eq!(full_place("/"), None);
    }
}
