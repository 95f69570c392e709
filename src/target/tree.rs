//! Restore a tree's nodes under a target directory.
//!
//! Safety: node paths are validated (relative, no `..`, no empty parts), and
//! every parent must be a real directory we created or found, never a
//! symlink, so a snapshot can never make restore write outside the target.
//! A hard link may only name a regular file inside the target, reached the
//! same way.

use crate::repo::tree::{Node, NodeKind};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("refusing unsafe path {0:?} from the snapshot")]
    UnsafePath(String),
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

/// Remove whatever is at `path` (not following symlinks) so a restored node
/// can take its place; directories are kept and merged into.
fn clear(path: &Path) -> Result<(), TargetError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Prepare the place of one node. Files are returned open for the caller to fill.
pub fn create_node(target: &Path, node: &Node) -> Result<(PathBuf, Option<File>), TargetError> {
    let path = safe_join(target, &node.path.0)?;
    check_parents(target, &path)?;
    clear(&path)?;
    match node.kind {
        NodeKind::Dir => {
            match fs::create_dir(&path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&path)(e)),
                _ => {}
            }
            // Owner-writable until finish_metadata sets the recorded mode.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(io_err(&path))?;
            Ok((path, None))
        }
        NodeKind::Symlink => {
            let t = node.target.as_ref().map(|t| t.as_os_str()).unwrap_or_default();
            symlink(t, &path).map_err(io_err(&path))?;
            Ok((path, None))
        }
        NodeKind::File => {
            let f = super::create_new_file(&path).map_err(io_err(&path))?;
            Ok((path, Some(f)))
        }
        NodeKind::Hardlink => {
            let first = node.target.as_ref().map(|t| &t.0[..]).unwrap_or_default();
            let first = safe_join(target, first)?;
            check_parents(target, &first)?;
            let m = fs::symlink_metadata(&first).map_err(io_err(&first))?;
            if !m.is_file() {
                return Err(TargetError::UnsafePath(first.display().to_string()));
            }
            fs::hard_link(&first, &path).map_err(io_err(&path))?;
            Ok((path, None))
        }
    }
}

/// Owner and group, when the snapshot has them and we run as root (only root
/// may give files away); a failure is a warning, not the end of the restore.
fn restore_owner(path: &Path, node: &Node, warnings: &mut Vec<String>) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if (node.uid.is_none() && node.gid.is_none()) || unsafe { libc::geteuid() } != 0 {
        return;
    }
    if let Err(e) = std::os::unix::fs::lchown(path, node.uid, node.gid) {
        warnings.push(format!("{}: owner {:?}:{:?}: {e}", path.display(), node.uid, node.gid));
    }
}

/// Apply owner, extended attributes, mode and mtime. Called for files as they
/// finish and for directories deepest-first at the end (writing children
/// changes a dir's mtime). Owner and xattrs that cannot be set are pushed to
/// `warnings`; mode and mtime failures are errors.
///
/// Order matters: chown clears setuid/setgid bits and `security.capability`,
/// so it comes first; xattrs come before the mode, which may take away the
/// write permission `user.*` attributes need; the mtime comes last.
pub fn apply_metadata(path: &Path, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
    if node.kind == NodeKind::Hardlink {
        // Same inode as the file it links to, which has its metadata already.
        return Ok(());
    }
    restore_owner(path, node, warnings);
    for x in &node.xattrs {
        if let Err(e) = xattr::set(path, x.name.as_os_str(), &x.value.0) {
            warnings.push(format!("{}: extended attribute {}: {e}", path.display(), x.name.display()));
        }
    }
    let secs = node.mtime_ns.div_euclid(1_000_000_000);
    let nanos = node.mtime_ns.rem_euclid(1_000_000_000) as u32;
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    match node.kind {
        NodeKind::Symlink => filetime::set_symlink_file_times(path, t, t).map_err(io_err(path)),
        NodeKind::Hardlink => Ok(()),
        _ => {
            fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).map_err(io_err(path))?;
            filetime::set_file_mtime(path, t).map_err(io_err(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::RawPath;

    #[test]
    fn unsafe_paths_are_refused() {
        let t = Path::new("/tmp/target");
        for bad in [&b"../x"[..], b"/etc/passwd", b"a/../../x", b"a//b", b"", b"a/./b"] {
            assert!(safe_join(t, bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(safe_join(t, b"a/b c").unwrap(), Path::new("/tmp/target/a/b c"));
    }

    #[test]
    fn symlinked_parent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let n = Node {
            path: crate::repo::tree::RawPath(b"link/evil".to_vec()),
            kind: NodeKind::File,
            mode: 0o644,
            ..Default::default()
        };
        assert!(matches!(create_node(dir.path(), &n), Err(TargetError::UnsafePath(_))));
        assert!(!outside.path().join("evil").exists());
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

    /// A crafted snapshot: `a -> <outside>` then `a/passwd`. The symlink is
    /// restored as a symlink; the file through it is refused.
    #[test]
    fn snapshot_symlink_then_file_below_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let out = outside.path().as_os_str().as_bytes();
        create_node(dir.path(), &n(b"a", NodeKind::Symlink, Some(out))).unwrap();
        for kind in [NodeKind::File, NodeKind::Dir, NodeKind::Symlink] {
            let r = create_node(dir.path(), &n(b"a/passwd", kind, Some(b"x")));
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
        create_node(dir.path(), &n(b"link", NodeKind::Symlink, Some(out.as_os_str().as_bytes()))).unwrap();
        create_node(dir.path(), &n(b"ln", NodeKind::Symlink, Some(outside.path().as_os_str().as_bytes()))).unwrap();
        for bad in [&b"link"[..], b"ln/secret", b"../x", b"missing"] {
            assert!(create_node(dir.path(), &n(b"h", NodeKind::Hardlink, Some(bad))).is_err(), "{bad:?}");
        }
        let (p, f) = create_node(dir.path(), &n(b"f", NodeKind::File, None)).unwrap();
        drop(f);
        let (h, _) = create_node(dir.path(), &n(b"h", NodeKind::Hardlink, Some(b"f"))).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&p).unwrap().ino(), fs::metadata(&h).unwrap().ino());
        assert_eq!(fs::metadata(&out).unwrap().nlink(), 1);
    }
}
