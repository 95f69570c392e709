//! Restore a tree's nodes under a target directory.
//!
//! Safety: node paths are validated (relative, no `..`, no empty parts), and
//! every parent must be a real directory we created or found, never a
//! symlink, so a snapshot can never make restore write outside the target.
//! A hard link may only name a regular file inside the target, reached the
//! same way.
//!
//! Nothing is destroyed before its replacement is known good: files,
//! symlinks and hard links are made under a temporary name in the same
//! directory (`.drtool-restore-*`), complete with their metadata, and then
//! renamed over what is there; directories are merged into. Metadata is
//! applied without following symlinks (target/treemeta.rs).

use super::treemeta::{self, open_dir_below};
use crate::repo::tree::Node;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Names of the temporary entries a restore creates next to the ones it
/// replaces; one left behind (only by a crash) can be deleted.
pub const TEMP_PREFIX: &str = ".drtool-restore-";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("refusing unsafe path {0:?} from the snapshot")]
    UnsafePath(String),
    #[error("{0} is no longer a directory (replaced during the restore?): its metadata was not applied")]
    Replaced(String),
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TargetError + '_ {
    move |source| TargetError::Io { path: path.display().to_string(), source }
}

/// Resolve a node path under `target`, checking every component.
pub fn safe_join(target: &Path, node_path: &[u8]) -> Result<PathBuf, TargetError> {
    let unsafe_path = || TargetError::UnsafePath(String::from_utf8_lossy(node_path).into_owned());
    if node_path.is_empty() || node_path[0] == b'/' || node_path.contains(&0) {
        return Err(unsafe_path());
    }
    let mut out = target.to_path_buf();
    for part in node_path.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(unsafe_path());
        }
        out.push(OsStr::from_bytes(part));
    }
    Ok(out)
}

/// Ensure the parent of `path` (below `target`) contains no symlinks.
fn check_parents(target: &Path, path: &Path) -> Result<(), TargetError> {
    let mut cur = path.parent();
    while let Some(p) = cur {
        if p == target || !p.starts_with(target) {
            break;
        }
        let m = fs::symlink_metadata(p).map_err(io_err(p))?;
        if !m.file_type().is_dir() {
            return Err(TargetError::UnsafePath(p.display().to_string()));
        }
        cur = p.parent();
    }
    Ok(())
}

/// Remove whatever is at `path` (not following symlinks) so a directory can
/// take its place; directories are kept and merged into. Only directories
/// are placed this way: files, symlinks and hard links replace what is there
/// by a rename once they are complete (see [`NewFile`]).
fn clear_for_dir(path: &Path) -> Result<bool, TargetError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => fs::remove_file(path).map(|_| false).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The checked path of `node` below `target` and its parent directory.
fn place(target: &Path, node_path: &[u8]) -> Result<(PathBuf, PathBuf), TargetError> {
    let path = safe_join(target, node_path)?;
    check_parents(target, &path)?;
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_else(|| target.to_path_buf());
    Ok((path, parent))
}

fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(TEMP_PREFIX).rand_bytes(10);
    b
}

/// Rename a finished temporary entry over `path`. Renaming one hard link of
/// an inode over another of the same inode succeeds without doing anything,
/// so the temporary name is removed afterwards if it is still there.
fn commit(tmp: tempfile::TempPath, path: &Path) -> Result<(), TargetError> {
    let kept = tmp.to_path_buf();
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    match fs::remove_file(&kept) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&kept)(e)),
        _ => Ok(()),
    }
}

/// Create (or merge into) the directory of `node`, owner-writable until
/// [`finish_dir`] sets the recorded metadata; returns its path.
pub fn create_dir(target: &Path, node: &Node) -> Result<PathBuf, TargetError> {
    let (path, _) = place(target, &node.path.0)?;
    if !clear_for_dir(&path)? {
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&path)(e)),
            _ => {}
        }
    }
    let dir = open_dir_below(target, &node.path.0)?;
    dir.set_permissions(fs::Permissions::from_mode(0o700)).map_err(io_err(&path))?;
    Ok(path)
}

/// Set a directory's recorded metadata. Called deepest first at the end:
/// writing children changes a directory's mtime.
pub fn finish_dir(target: &Path, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
    treemeta::apply_to_dir(target, node, warnings)
}

/// Create the directories of `rel` (a checked relative path) that do not
/// exist, mode 0700, refusing anything on the way that is not a directory.
/// For the parents of a tree restored under its full original path: they
/// are not in the snapshot, so nothing more is known about them.
pub fn create_parents(target: &Path, rel: &[u8]) -> Result<(), TargetError> {
    let mut cur = target.to_path_buf();
    for part in rel.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(TargetError::UnsafePath(String::from_utf8_lossy(rel).into_owned()));
        }
        cur.push(OsStr::from_bytes(part));
        match fs::DirBuilder::new().mode(0o700).create(&cur) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&cur)(e)),
            _ => {}
        }
        if !fs::symlink_metadata(&cur).map_err(io_err(&cur))?.is_dir() {
            return Err(TargetError::UnsafePath(cur.display().to_string()));
        }
    }
    Ok(())
}

/// A regular file being restored: its content goes to a temporary file in
/// the same directory, which replaces `path` only in [`NewFile::commit`],
/// once every byte was read back and verified. Dropped uncommitted (a
/// damaged chunk, any error), the temporary file is removed and whatever was
/// at `path` before is left as it was.
pub struct NewFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl NewFile {
    pub fn create(target: &Path, node: &Node) -> Result<Self, TargetError> {
        let (path, parent) = place(target, &node.path.0)?;
        let tmp = temp_builder().tempfile_in(&parent).map_err(io_err(&parent))?;
        Ok(Self { tmp, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file to write the content through.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Apply the node's metadata through the open file, then put it in place.
    pub fn commit(self, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
        treemeta::apply_to_fd(self.tmp.as_file(), &self.path, node, warnings)?;
        commit(self.tmp.into_temp_path(), &self.path)
    }

    /// The open file apart from its placement, for writers that hold many
    /// files at once (job/restore_batch.rs). Dropping the placement removes
    /// the temporary file.
    pub fn split(self) -> (File, Placement) {
        let (file, tmp) = self.tmp.into_parts();
        (file, Placement { tmp, path: self.path })
    }
}

/// A restored file's temporary name and the path it will replace.
pub struct Placement {
    tmp: tempfile::TempPath,
    path: PathBuf,
}

impl Placement {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Like [`NewFile::commit`], for `file` (the one [`NewFile::split`] gave).
    pub fn commit(self, file: &File, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
        treemeta::apply_to_fd(file, &self.path, node, warnings)?;
        commit(self.tmp, &self.path)
    }
}

/// Create the symlink of `node` (its metadata applied to the link itself)
/// under a temporary name, then rename it over whatever is at its path.
pub fn create_symlink(target: &Path, node: &Node, warnings: &mut Vec<String>) -> Result<PathBuf, TargetError> {
    let (path, parent) = place(target, &node.path.0)?;
    let to = node.target.as_ref().map(|t| t.as_os_str()).unwrap_or_default();
    let tmp = temp_builder().make_in(&parent, |p| symlink(to, p)).map_err(io_err(&path))?.into_temp_path();
    treemeta::apply_to_symlink(&tmp, &path, node, warnings)?;
    commit(tmp, &path)?;
    Ok(path)
}

/// Link `node`'s path to the regular file restored at its `target` name
/// (inside `target`, reached without symlinks), replacing what is there.
pub fn create_hardlink(target: &Path, node: &Node) -> Result<PathBuf, TargetError> {
    let (path, parent) = place(target, &node.path.0)?;
    let first = node.target.as_ref().map(|t| &t.0[..]).unwrap_or_default();
    let first = safe_join(target, first)?;
    check_parents(target, &first)?;
    let m = fs::symlink_metadata(&first).map_err(io_err(&first))?;
    if !m.is_file() {
        return Err(TargetError::UnsafePath(first.display().to_string()));
    }
    let tmp = temp_builder().make_in(&parent, |p| fs::hard_link(&first, p)).map_err(io_err(&path))?.into_temp_path();
    commit(tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::{NodeKind, RawPath};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn unsafe_paths_are_refused() {
        let t = Path::new("/tmp/target");
        for bad in [&b"../x"[..], b"/etc/passwd", b"a/../../x", b"a//b", b"", b"a/./b"] {
            assert!(safe_join(t, bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(safe_join(t, b"a/b c").unwrap(), Path::new("/tmp/target/a/b c"));
    }

    fn n(path: &[u8], kind: NodeKind, target: Option<&[u8]>) -> Node {
        Node {
            path: RawPath(path.to_vec()),
            kind,
            mode: 0o644,
            target: target.map(|t| RawPath(t.to_vec())),
            ..Default::default()
        }
    }

    /// Create `node` the way a restore does; files are committed empty.
    fn create(dir: &Path, node: &Node) -> Result<PathBuf, TargetError> {
        match node.kind {
            NodeKind::Dir => create_dir(dir, node),
            NodeKind::Symlink => create_symlink(dir, node, &mut Vec::new()),
            NodeKind::Hardlink => create_hardlink(dir, node),
            NodeKind::File => {
                let f = NewFile::create(dir, node)?;
                let p = f.path().to_path_buf();
                f.commit(node, &mut Vec::new())?;
                Ok(p)
            }
        }
    }

    #[test]
    fn symlinked_parent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let r = create(dir.path(), &n(b"link/evil", NodeKind::File, None));
        assert!(matches!(r, Err(TargetError::UnsafePath(_))), "{r:?}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    /// A crafted snapshot: `a -> <outside>` then `a/passwd`. The symlink is
    /// restored as a symlink; the file through it is refused.
    #[test]
    fn snapshot_symlink_then_file_below_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let out = outside.path().as_os_str().as_bytes();
        create(dir.path(), &n(b"a", NodeKind::Symlink, Some(out))).unwrap();
        for kind in [NodeKind::File, NodeKind::Dir, NodeKind::Symlink] {
            let r = create(dir.path(), &n(b"a/passwd", kind, Some(b"x")));
            assert!(matches!(r, Err(TargetError::UnsafePath(_))), "{kind:?}: {r:?}");
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing may be written outside");
    }

    #[test]
    fn hard_links_only_to_regular_files_inside_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let out = outside.path().join("secret");
        create(dir.path(), &n(b"link", NodeKind::Symlink, Some(out.as_os_str().as_bytes()))).unwrap();
        create(dir.path(), &n(b"ln", NodeKind::Symlink, Some(outside.path().as_os_str().as_bytes()))).unwrap();
        for bad in [&b"link"[..], b"ln/secret", b"../x", b"missing"] {
            assert!(create(dir.path(), &n(b"h", NodeKind::Hardlink, Some(bad))).is_err(), "{bad:?}");
        }
        let p = create(dir.path(), &n(b"f", NodeKind::File, None)).unwrap();
        let h = create(dir.path(), &n(b"h", NodeKind::Hardlink, Some(b"f"))).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().ino(), fs::metadata(&h).unwrap().ino());
        assert_eq!(fs::metadata(&out).unwrap().nlink(), 1);
        // Linking again over the same inode leaves no temporary name behind.
        create(dir.path(), &n(b"h", NodeKind::Hardlink, Some(b"f"))).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().nlink(), 2);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().starts_with(TEMP_PREFIX)), "{names:?}");
    }

    #[test]
    fn an_uncommitted_file_leaves_the_old_one_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"old").unwrap();
        let f = NewFile::create(dir.path(), &n(b"f", NodeKind::File, None)).unwrap();
        use std::io::Write;
        let mut w = f.file();
        w.write_all(b"new, never verified").unwrap();
        drop(f);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
