//! btrfs: a read-only snapshot of the subvolume holding each path.
//!
//! The snapshot is created inside the subvolume it copies, as
//! `SUBVOLUME/.drtool-TIME-PID` (a snapshot must live on the same file system,
//! and the subvolume is the one place on it that is surely writable and
//! visible). It does not contain itself, and is deleted after the read.
//! Snapshots are not recursive: subvolumes nested below a path appear as
//! empty directories, so list them as paths of their own.

use super::{Runner, SnapshotError, View};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOLUME_ROOT_INO: u64 = 256;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;

pub struct BtrfsSnapshot {
    subvolume: PathBuf,
    snapshot: PathBuf,
}

/// The distinct subvolume roots holding `paths` (absolute), outermost first.
pub fn subvolume_roots(paths: &[PathBuf], runner: &dyn Runner) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for p in paths {
        let root = subvolume_root(p)?;
        // Also a clear error from btrfs itself if this is not what we think.
        runner.run(&["btrfs", "subvolume", "show", &root.to_string_lossy()])?;
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    roots.sort_by_key(|r| r.components().count());
    Ok(roots)
}

/// The root of the subvolume holding `path`: the topmost ancestor on the same
/// device (each subvolume has a device number of its own), whose inode is 256.
pub fn subvolume_root(path: &Path) -> Result<PathBuf, SnapshotError> {
    // Resolve symlinks in the directories above (not the last component,
    // which the backup records as it is).
    let parent = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::canonicalize(parent).map_err(|e| SnapshotError::io(parent, e))?.join(name)
        }
        _ => path.to_path_buf(),
    };
    let meta = std::fs::symlink_metadata(&parent).map_err(|e| SnapshotError::io(&parent, e))?;
    if !is_btrfs(&parent)? {
        return Err(SnapshotError::Unsupported {
            path: path.display().to_string(),
            message: "not on a btrfs file system (snapshot = \"btrfs\" needs one)".into(),
        });
    }
    let dev = meta.dev();
    let mut cur = parent.clone();
    let mut cur_ino = meta.ino();
    while let Some(up) = cur.parent() {
        let m = std::fs::metadata(up).map_err(|e| SnapshotError::io(up, e))?;
        if m.dev() != dev {
            break;
        }
        cur = up.to_path_buf();
        cur_ino = m.ino();
    }
    if cur_ino != SUBVOLUME_ROOT_INO || !cur.is_dir() {
        return Err(SnapshotError::Unsupported {
            path: path.display().to_string(),
            message: format!(
                "cannot find its btrfs subvolume (topmost directory {} has inode {cur_ino})",
                cur.display()
            ),
        });
    }
    Ok(cur)
}

fn is_btrfs(path: &Path) -> Result<bool, SnapshotError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SnapshotError::Usage(format!("{}: path contains a NUL byte", path.display())))?;
    // SAFETY: statfs fills the zeroed struct it is given; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(SnapshotError::io(path, std::io::Error::last_os_error()));
    }
    Ok(st.f_type as i64 == BTRFS_SUPER_MAGIC)
}

impl BtrfsSnapshot {
    pub fn create(subvolume: &Path, name: &str, runner: &dyn Runner) -> Result<Self, SnapshotError> {
        warn_leftovers(subvolume);
        let snapshot = subvolume.join(format!(".{name}"));
        let (from, to) = (subvolume.to_string_lossy(), snapshot.to_string_lossy());
        runner.run(&["btrfs", "subvolume", "snapshot", "-r", &from, &to])?;
        tracing::info!("btrfs snapshot {to} of {from} created");
        Ok(Self { subvolume: subvolume.to_path_buf(), snapshot })
    }

    pub fn view(&self) -> View {
        View { original: self.subvolume.clone(), snapshot: self.snapshot.clone() }
    }

    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({ "subvolume": self.subvolume, "snapshot": self.snapshot })
    }

    pub fn remove(self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        let snap = self.snapshot.to_string_lossy();
        match runner.run(&["btrfs", "subvolume", "delete", &snap]) {
            Ok(_) => {
                tracing::info!("btrfs snapshot {snap} deleted");
                Ok(())
            }
            Err(e) => Err(SnapshotError::Cleanup {
                what: format!("btrfs snapshot {snap}"),
                manual: format!("btrfs subvolume delete {snap}"),
                source: Box::new(e),
            }),
        }
    }
}

/// Snapshots left by runs that were killed outright (SIGKILL, power loss) are
/// reported, not deleted: a pid that is gone may have been reused, and only a
/// person can be sure a snapshot is not someone's.
fn warn_leftovers(subvolume: &Path) {
    let Ok(rd) = std::fs::read_dir(subvolume) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // .drtool-TIME-PID-N
        let Some(pid) = name.strip_prefix(".drtool-").and_then(|r| r.split('-').nth(1)?.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            tracing::warn!(
                "leftover btrfs snapshot {} from an earlier run (process {pid} is gone); \
                 remove it with: btrfs subvolume delete {}",
                e.path().display(),
                e.path().display()
            );
        }
    }
}
