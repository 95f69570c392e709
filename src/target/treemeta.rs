//! Applying a restored node's metadata without ever following a symlink.
//!
//! Owner, extended attributes, mode and mtime go through an open file
//! descriptor (fchown, fsetxattr, fchmod, futimens): a regular file's is the
//! one its content was written through, a directory's is opened component by
//! component from the target with `O_NOFOLLOW`, so a directory replaced by a
//! symlink while the restore runs (by whoever may write to its parent) is an
//! error, never a chmod of the symlink's target. Symlinks get `l*` calls,
//! which act on the link itself.
//!
//! Order matters: chown clears setuid/setgid bits and `security.capability`,
//! so it comes first; xattrs come before the mode, which may take away the
//! write permission `user.*` attributes need; the mtime comes last.

use super::tree::TargetError;
use crate::repo::tree::Node;
use std::ffi::CString;
use std::fs::{File, Permissions};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use xattr::FileExt;

fn io_err(path: &Path, source: io::Error) -> TargetError {
    TargetError::Io { path: path.display().to_string(), source }
}

fn mtime(node: &Node) -> filetime::FileTime {
    let secs = node.mtime_ns.div_euclid(1_000_000_000);
    let nanos = node.mtime_ns.rem_euclid(1_000_000_000) as u32;
    filetime::FileTime::from_unix_time(secs, nanos)
}

/// Only root may give files away; without recorded ids there is nothing to do.
fn restores_owner(node: &Node) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    (node.uid.is_some() || node.gid.is_some()) && unsafe { libc::geteuid() } == 0
}

fn owner_warning(path: &Path, node: &Node, e: io::Error) -> String {
    format!("{}: owner {:?}:{:?}: {e}", path.display(), node.uid, node.gid)
}

/// Apply everything to an open regular file or directory. `shown` names it in
/// errors and warnings. Owners and xattrs that cannot be set are warnings;
/// mode and mtime failures are errors.
pub fn apply_to_fd(file: &File, shown: &Path, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
    if restores_owner(node)
        && let Err(e) = std::os::unix::fs::fchown(file, node.uid, node.gid)
    {
        warnings.push(owner_warning(shown, node, e));
    }
    for x in &node.xattrs {
        if let Err(e) = file.set_xattr(x.name.as_os_str(), &x.value.0) {
            warnings.push(format!("{}: extended attribute {}: {e}", shown.display(), x.name.display()));
        }
    }
    file.set_permissions(Permissions::from_mode(node.mode)).map_err(|e| io_err(shown, e))?;
    filetime::set_file_handle_times(file, None, Some(mtime(node))).map_err(|e| io_err(shown, e))
}

/// Apply owner, xattrs and mtime to the symlink at `path` itself (a symlink
/// has no mode of its own on Linux).
pub fn apply_to_symlink(path: &Path, shown: &Path, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
    if restores_owner(node)
        && let Err(e) = std::os::unix::fs::lchown(path, node.uid, node.gid)
    {
        warnings.push(owner_warning(shown, node, e));
    }
    for x in &node.xattrs {
        // xattr::set is lsetxattr: it never follows the link.
        if let Err(e) = xattr::set(path, x.name.as_os_str(), &x.value.0) {
            warnings.push(format!("{}: extended attribute {}: {e}", shown.display(), x.name.display()));
        }
    }
    let t = mtime(node);
    filetime::set_symlink_file_times(path, t, t).map_err(|e| io_err(shown, e))
}

fn openat_dir(parent: Option<&OwnedFd>, name: &[u8], follow: bool) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let dirfd = parent.map_or(libc::AT_FDCWD, |p| p.as_raw_fd());
    // SAFETY: `c` is a valid NUL-terminated string and `dirfd` an open
    // directory (or AT_FDCWD) for the duration of the call.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `rel` (already checked by `safe_join`) below `target`
/// without following a symlink at any level below `target`. A component that
/// is no longer a directory is [`TargetError::Replaced`].
pub fn open_dir_below(target: &Path, rel: &[u8]) -> Result<File, TargetError> {
    let mut fd = openat_dir(None, target.as_os_str().as_bytes(), true).map_err(|e| io_err(target, e))?;
    let mut shown = target.to_path_buf();
    for part in rel.split(|&b| b == b'/') {
        shown.push(std::ffi::OsStr::from_bytes(part));
        fd = openat_dir(Some(&fd), part, false).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => TargetError::Replaced(shown.display().to_string()),
            _ => io_err(&shown, e),
        })?;
    }
    Ok(File::from(fd))
}

/// Apply a directory node's metadata through a descriptor opened safely.
pub fn apply_to_dir(target: &Path, node: &Node, warnings: &mut Vec<String>) -> Result<(), TargetError> {
    let dir = open_dir_below(target, &node.path.0)?;
    let shown = target.join(node.path.as_os_str());
    apply_to_fd(&dir, &shown, node, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::RawPath;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn a_directory_replaced_by_a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"v").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        symlink(&victim, dir.path().join("a/d")).unwrap();
        symlink(outside.path(), dir.path().join("up")).unwrap();
        for p in [&b"a/d"[..], b"up/victim"] {
            let node = Node { path: RawPath(p.to_vec()), mode: 0o777, mtime_ns: 1, ..Default::default() };
            let r = apply_to_dir(dir.path(), &node, &mut Vec::new());
            assert!(matches!(r, Err(TargetError::Replaced(_))), "{r:?}");
        }
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_ne!(m.mtime(), 0);
    }
}
