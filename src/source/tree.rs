//! Walk file trees into [`Node`]s, handing each regular file to a content sink.
//!
//! Symlinks are recorded, never followed. Entries are visited in name order so
//! the same tree always yields the same metadata stream (and dedups).

use crate::pipeline::ChunkId;
use crate::repo::tree::{Node, NodeKind, RawPath};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Counts for one walked root.
#[derive(Debug, Default, Clone)]
pub struct WalkStats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Entries that could not be read, with the reason; they are left out.
    pub errors: Vec<String>,
    /// Sockets, fifos and device nodes, which this source does not record.
    pub special_skipped: u64,
    /// Files whose chunk list came from the parent snapshot without reading them.
    pub files_unchanged: u64,
}

/// Anything that turns an open file into a chunk list (the backup feeder).
pub trait ContentSink {
    type Error;
    fn file(&mut self, file: File) -> Result<(Vec<ChunkId>, u64), Self::Error>;
    /// The chunk list of `node` if the file is known unchanged (from a parent
    /// snapshot), so it need not be read. `node` carries the current metadata.
    fn unchanged(&mut self, node: &Node) -> Option<Vec<ChunkId>>;
}

fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec())
}

fn node(path: RawPath, kind: NodeKind, m: &Metadata) -> Node {
    Node { path, kind, mode: m.mode() & 0o7777, mtime_ns: mtime_ns(m), ..Default::default() }
}

fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec())
}

fn join(parent: &RawPath, name: &[u8]) -> RawPath {
    let mut p = parent.0.clone();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    RawPath(p)
}

/// Walk `root`, emitting nodes named relative to `root`'s parent (so the root
/// itself is the first node, named by its file name).
///
/// I/O errors on individual entries are collected in `WalkStats::errors`;
/// the sink's errors abort the walk.
pub fn walk<S: ContentSink>(
    root: &Path,
    sink: &mut S,
    emit: &mut dyn FnMut(Node),
) -> Result<WalkStats, WalkError<S::Error>> {
    let meta = fs::symlink_metadata(root).map_err(|e| WalkError::Root(root.display().to_string(), e))?;
    let ft = meta.file_type();
    if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
        let e = io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file, directory or symlink (use --stdin or a command for pipes and devices)",
        );
        return Err(WalkError::Root(root.display().to_string(), e));
    }
    let name = root.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_else(|| b"root".to_vec());
    let mut stats = WalkStats::default();
    visit(root.to_path_buf(), RawPath(name), &meta, sink, emit, &mut stats)?;
    Ok(stats)
}

#[derive(Debug)]
pub enum WalkError<E> {
    Root(String, io::Error),
    Sink(E),
}

fn visit<S: ContentSink>(
    path: PathBuf,
    rel: RawPath,
    meta: &Metadata,
    sink: &mut S,
    emit: &mut dyn FnMut(Node),
    stats: &mut WalkStats,
) -> Result<(), WalkError<S::Error>> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        match fs::read_link(&path) {
            Ok(t) => {
                let mut n = node(rel, NodeKind::Symlink, meta);
                n.target = Some(RawPath(t.as_os_str().as_bytes().to_vec()));
                emit(n);
            }
            Err(e) => stats.errors.push(format!("{}: {e}", path.display())),
        }
    } else if ft.is_file() {
        let mut n = node(rel, NodeKind::File, meta);
        n.size = meta.len();
        n.ino = meta.ino();
        n.ctime_ns = ctime_ns(meta);
        if let Some(chunks) = sink.unchanged(&n) {
            n.chunks = chunks;
            stats.files += 1;
            stats.files_unchanged += 1;
            stats.bytes += n.size;
            emit(n);
            return Ok(());
        }
        match File::open(&path) {
            Ok(f) => {
                let (chunks, size) = sink.file(f).map_err(WalkError::Sink)?;
                n.size = size;
                n.chunks = chunks;
                stats.files += 1;
                stats.bytes += size;
                emit(n);
            }
            Err(e) => stats.errors.push(format!("{}: {e}", path.display())),
        }
    } else if ft.is_dir() {
        let entries = match fs::read_dir(&path).and_then(|rd| rd.collect::<io::Result<Vec<_>>>()) {
            Ok(mut v) => {
                v.sort_by_key(|e| e.file_name());
                v
            }
            Err(e) => {
                stats.errors.push(format!("{}: {e}", path.display()));
                return Ok(());
            }
        };
        stats.dirs += 1;
        emit(node(rel.clone(), NodeKind::Dir, meta));
        for entry in entries {
            let child = entry.path();
            match fs::symlink_metadata(&child) {
                Ok(m) => visit(child, join(&rel, entry.file_name().as_bytes()), &m, sink, emit, stats)?,
                Err(e) => stats.errors.push(format!("{}: {e}", child.display())),
            }
        }
    } else {
        // Sockets, fifos and devices are not backed up by this source (see the volume issue).
        tracing::debug!("{}: special file skipped", path.display());
        stats.special_skipped += 1;
    }
    Ok(())
}
