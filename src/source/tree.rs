//! Walk file trees into [`Node`]s, handing each regular file to a content sink.
//!
//! Symlinks are recorded, never followed. Entries are visited in name order so
//! the same tree always yields the same metadata stream (and dedups). Each
//! entry keeps its kind, permission bits (with setuid, setgid and sticky),
//! owner, group, mtime (ns) and extended attributes. A file met again under
//! another name (same device and inode) becomes a `hardlink` node naming the
//! first one, so its content is read once and restore links it again.
//! Entries that cannot be read are reported in [`WalkStats::errors`] and left
//! out; the walk goes on.

use super::exclude::Exclusions;
use crate::pipeline::ChunkId;
use crate::repo::tree::{Node, NodeKind, RawPath, Xattr};
use std::collections::HashMap;
use std::fmt::Display;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    /// Names recorded as hard links to a file recorded earlier (counted in `files` too).
    pub hardlinks: u64,
    /// Entries left out by `--exclude`, `--exclude-caches` or `--one-file-system`.
    pub excluded: u64,
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

fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec())
}

fn node(path: RawPath, kind: NodeKind, m: &Metadata) -> Node {
    Node {
        path,
        kind,
        mode: m.mode() & 0o7777,
        mtime_ns: mtime_ns(m),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        ..Default::default()
    }
}

fn join(parent: &RawPath, name: &[u8]) -> RawPath {
    let mut p = parent.0.clone();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    RawPath(p)
}

/// The extended attributes of `path` (not following symlinks), by name.
/// A file system without xattr support has none.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::ENOSYS)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        // `None`: removed between listing and reading.
        if let Some(value) = xattr::get(path, &name)? {
            out.push(Xattr { name: RawPath(name.as_bytes().to_vec()), value: RawPath(value) });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Open a file for reading only if it is still a regular file: never follow a
/// symlink or block on a fifo that replaced it since it was listed.
fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no longer a regular file"));
    }
    Ok(f)
}

/// Walk `root`, emitting nodes named relative to `root`'s parent (so the root
/// itself is the first node, named by its file name). `exclusions` apply
/// below the root, never to the root itself.
///
/// I/O errors on individual entries are collected in `WalkStats::errors`;
/// the sink's errors abort the walk.
pub fn walk<S: ContentSink>(
    root: &Path,
    exclusions: &Exclusions,
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
    let mut w =
        Walker { sink, emit, exclusions, root_dev: meta.dev(), links: HashMap::new(), stats: WalkStats::default() };
    w.visit(root.to_path_buf(), RawPath(name), &meta, true)?;
    Ok(w.stats)
}

#[derive(Debug)]
pub enum WalkError<E> {
    Root(String, io::Error),
    Sink(E),
}

struct Walker<'a, S> {
    sink: &'a mut S,
    emit: &'a mut dyn FnMut(Node),
    exclusions: &'a Exclusions,
    root_dev: u64,
    /// (device, inode) of files with several links -> the name recorded first.
    links: HashMap<(u64, u64), RawPath>,
    stats: WalkStats,
}

impl<S: ContentSink> Walker<'_, S> {
    fn warn(&mut self, path: &Path, what: impl Display) {
        tracing::debug!("{}: {what}", path.display());
        self.stats.errors.push(format!("{}: {what}", path.display()));
    }

    /// A node with its extended attributes; an unreadable attribute list is
    /// reported and the node kept without it.
    fn full_node(&mut self, path: &Path, rel: RawPath, kind: NodeKind, meta: &Metadata) -> Node {
        let mut n = node(rel, kind, meta);
        match read_xattrs(path) {
            Ok(x) => n.xattrs = x,
            Err(e) => self.warn(path, format_args!("extended attributes: {e}")),
        }
        n
    }

    fn visit(
        &mut self,
        path: PathBuf,
        rel: RawPath,
        meta: &Metadata,
        is_root: bool,
    ) -> Result<(), WalkError<S::Error>> {
        let ft = meta.file_type();
        if !is_root && !ft.is_dir() && self.exclusions.other_file_system(meta.dev(), self.root_dev) {
            self.stats.excluded += 1;
        } else if ft.is_symlink() {
            match fs::read_link(&path) {
                Ok(t) => {
                    let mut n = self.full_node(&path, rel, NodeKind::Symlink, meta);
                    n.target = Some(RawPath(t.as_os_str().as_bytes().to_vec()));
                    (self.emit)(n);
                }
                Err(e) => self.warn(&path, e),
            }
        } else if ft.is_file() {
            self.file(&path, rel, meta)?;
        } else if ft.is_dir() {
            self.dir(path, rel, meta, is_root)?;
        } else {
            // Sockets, fifos and devices are not backed up by this source (docs/VOLUMES.md).
            tracing::debug!("{}: special file skipped", path.display());
            self.stats.special_skipped += 1;
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: RawPath, meta: &Metadata) -> Result<(), WalkError<S::Error>> {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1
            && let Some(first) = self.links.get(&key)
        {
            let mut n = node(rel, NodeKind::Hardlink, meta);
            n.target = Some(first.clone());
            self.stats.files += 1;
            self.stats.hardlinks += 1;
            (self.emit)(n);
            return Ok(());
        }
        let mut n = self.full_node(path, rel, NodeKind::File, meta);
        n.size = meta.len();
        n.ino = meta.ino();
        n.ctime_ns = ctime_ns(meta);
        if let Some(chunks) = self.sink.unchanged(&n) {
            n.chunks = chunks;
            self.stats.files_unchanged += 1;
        } else {
            match open_regular(path) {
                Ok(f) => (n.chunks, n.size) = self.sink.file(f).map_err(WalkError::Sink)?,
                Err(e) => {
                    self.warn(path, e);
                    return Ok(());
                }
            }
        }
        self.stats.files += 1;
        self.stats.bytes += n.size;
        if meta.nlink() > 1 {
            // Only a name whose content was recorded may be linked to.
            self.links.insert(key, n.path.clone());
        }
        (self.emit)(n);
        Ok(())
    }

    fn dir(&mut self, path: PathBuf, rel: RawPath, meta: &Metadata, is_root: bool) -> Result<(), WalkError<S::Error>> {
        if !is_root && self.exclusions.cache_excluded(&path) {
            tracing::debug!("{}: cache directory left out", path.display());
            self.stats.excluded += 1;
            return Ok(());
        }
        // A mount point is kept (empty), as tar and restic do; its content is not.
        let other_fs = !is_root && self.exclusions.other_file_system(meta.dev(), self.root_dev);
        let entries = if other_fs {
            self.stats.excluded += 1;
            Vec::new()
        } else {
            match fs::read_dir(&path).and_then(|rd| rd.collect::<io::Result<Vec<_>>>()) {
                Ok(mut v) => {
                    v.sort_by_key(|e| e.file_name());
                    v
                }
                Err(e) => {
                    self.warn(&path, e);
                    return Ok(());
                }
            }
        };
        self.stats.dirs += 1;
        let n = self.full_node(&path, rel.clone(), NodeKind::Dir, meta);
        (self.emit)(n);
        for entry in entries {
            let child = entry.path();
            if self.exclusions.glob_excluded(&child) {
                self.stats.excluded += 1;
                continue;
            }
            match fs::symlink_metadata(&child) {
                Ok(m) => self.visit(child, join(&rel, entry.file_name().as_bytes()), &m, false)?,
                Err(e) => self.warn(&child, e),
            }
        }
        Ok(())
    }
}
