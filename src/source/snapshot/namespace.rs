//! Reading a snapshot at the original paths.
//!
//! The reader runs on a thread of its own that leaves the process's mount
//! namespace (`unshare(CLONE_NEWNS)`, which Linux allows a single thread),
//! marks every mount private (so nothing it does propagates back), and
//! bind-mounts each snapshot read-only over the root of the file system it
//! copies. To that thread, `/srv/data` *is* the snapshot; the rest of the
//! machine, including the application writing to `/srv/data`, sees nothing.
//! The backup therefore records the original paths, inode numbers and
//! times, so excludes, parent snapshots and restores work as without a
//! snapshot. The namespace, and the bind mounts in it, end with the thread.

use super::{SnapshotError, View};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Run `read` with every view's snapshot shown at its original path, on a
/// thread of its own. Without views, `read` runs on the calling thread.
pub fn with_views<T: Send>(views: &[View], read: impl FnOnce() -> T + Send) -> Result<T, SnapshotError> {
    if views.is_empty() {
        return Ok(read());
    }
    let mut views = views.to_vec();
    // Outer roots first, so a nested root is bound inside its parent's snapshot.
    views.sort_by_key(|v| v.original.components().count());
    std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("drtool-snapshot-reader".into())
            .spawn_scoped(s, move || {
                enter_private_namespace()?;
                for v in &views {
                    bind_read_only(&v.snapshot, &v.original)?;
                }
                Ok(read())
            })
            .map_err(|e| SnapshotError::Namespace(format!("cannot start the reader thread: {e}")))?;
        match reader.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn cstr(p: &Path) -> Result<CString, SnapshotError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SnapshotError::Usage(format!("{}: path contains a NUL byte", p.display())))
}

fn os_error(what: &str) -> SnapshotError {
    let e = std::io::Error::last_os_error();
    let hint = if e.raw_os_error() == Some(libc::EPERM) { " (needs root: CAP_SYS_ADMIN)" } else { "" };
    SnapshotError::Namespace(format!("{what}: {e}{hint}"))
}

fn enter_private_namespace() -> Result<(), SnapshotError> {
    // SAFETY: plain system calls on this thread; the strings are NUL-terminated literals.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(os_error("unshare(CLONE_NEWNS)"));
        }
        // Without this, mounts made here would propagate to shared peers,
        // i.e. appear on the host (systemd makes / shared).
        let root = c"/";
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(os_error("making mounts private"));
        }
    }
    Ok(())
}

fn bind_read_only(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let null = std::ptr::null();
    // SAFETY: mount(2) with NUL-terminated paths; affects only this thread's namespace.
    unsafe {
        if libc::mount(f.as_ptr(), t.as_ptr(), null, libc::MS_BIND, std::ptr::null()) != 0 {
            return Err(os_error(&format!("bind-mounting {} on {}", from.display(), to.display())));
        }
        // A bind mount ignores MS_RDONLY until remounted.
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        if libc::mount(null, t.as_ptr(), null, flags, std::ptr::null()) != 0 {
            return Err(os_error(&format!("making {} read-only", to.display())));
        }
    }
    Ok(())
}
