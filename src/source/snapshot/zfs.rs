//! ZFS: a snapshot of the dataset holding each path, read through the
//! dataset's `.zfs/snapshot/NAME` directory (ZFS mounts it on first access,
//! whatever the `snapdir` property: it only hides the directory from listings).
//! Datasets mounted below a path are not part of its snapshot.

use super::{Mount, Runner, SnapshotError, View};
use std::path::PathBuf;

pub struct ZfsSnapshot {
    dataset: String,
    /// `dataset@name`
    snapshot: String,
    mountpoint: PathBuf,
    dir: PathBuf,
}

impl ZfsSnapshot {
    pub fn create(m: &Mount, name: &str, runner: &dyn Runner) -> Result<Self, SnapshotError> {
        if m.fstype != "zfs" {
            return Err(SnapshotError::Unsupported {
                path: m.target.display().to_string(),
                message: format!("on a {} file system, not ZFS (snapshot = \"zfs\" needs a ZFS dataset)", m.fstype),
            });
        }
        let snapshot = format!("{}@{name}", m.source);
        runner.run(&["zfs", "snapshot", &snapshot])?;
        tracing::info!("ZFS snapshot {snapshot} created");
        let dir = m.target.join(".zfs/snapshot").join(name);
        Ok(Self { dataset: m.source.clone(), snapshot, mountpoint: m.target.clone(), dir })
    }

    pub fn view(&self) -> View {
        View { original: self.mountpoint.clone(), snapshot: self.dir.clone() }
    }

    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({ "dataset": self.dataset, "snapshot": self.snapshot })
    }

    pub fn remove(self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        // `zfs destroy` unmounts the snapshot's automount first.
        runner.run(&["zfs", "destroy", &self.snapshot]).map_err(|e| SnapshotError::Cleanup {
            what: format!("ZFS snapshot {}", self.snapshot),
            manual: format!("zfs destroy {}", self.snapshot),
            source: Box::new(e),
        })?;
        tracing::info!("ZFS snapshot {} destroyed", self.snapshot);
        Ok(())
    }
}
