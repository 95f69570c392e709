//! LVM: a snapshot logical volume of the volume holding each path (mounted
//! read-only in a private directory), or of a device backed up block by block.
//!
//! `lvcreate --snapshot` suspends the origin for an instant, which freezes
//! the file system on it, so the snapshot is a clean point in time. The
//! snapshot stays writable, as LVM makes it: ext4 and XFS replay their
//! journal into it when it is mounted (`mount -o ro` still does that on a
//! writable device), which is what makes the copy mountable at all.
//!
//! A classic snapshot has fixed copy-on-write space; when writes to the origin
//! fill it, the snapshot becomes invalid and reads fail. It is checked after
//! the read and an overflow fails the backup before anything is committed.

use super::{Mount, Runner, SnapshotError, View};
use std::path::{Path, PathBuf};

/// Copy-on-write space when the policy names none: a tenth of the origin.
pub const DEFAULT_SIZE: &str = "10%ORIGIN";

pub struct LvmSnapshot {
    /// `vg/lv` of the origin.
    origin: String,
    /// `vg/name` of the snapshot.
    lv: String,
    /// The origin's device path and the snapshot's.
    origin_device: PathBuf,
    device: PathBuf,
    /// Paths backups: the origin's mount point, and the private directory the snapshot is mounted on.
    mounted: Option<(PathBuf, PathBuf)>,
}

/// `vg` and `lv` of a logical volume's device (any of its names).
fn lv_of(device: &str, runner: &dyn Runner) -> Result<(String, String), SnapshotError> {
    let out = runner.run(&["lvs", "--noheadings", "--options", "vg_name,lv_name", device])?;
    let mut f = out.split_whitespace();
    match (f.next(), f.next()) {
        (Some(vg), Some(lv)) => Ok((vg.to_string(), lv.to_string())),
        _ => Err(SnapshotError::Unsupported {
            path: device.to_string(),
            message: "not an LVM logical volume (lvs printed nothing)".into(),
        }),
    }
}

/// The `lvcreate` size arguments for `size`: `--extents` for a share of the origin, else `--size`.
fn size_args(size: Option<&str>) -> [&str; 2] {
    let size = size.unwrap_or(DEFAULT_SIZE);
    if size.contains('%') { ["--extents", size] } else { ["--size", size] }
}

impl LvmSnapshot {
    fn create(device: &str, name: &str, size: Option<&str>, runner: &dyn Runner) -> Result<Self, SnapshotError> {
        let (vg, lv) = lv_of(device, runner)?;
        let origin = format!("{vg}/{lv}");
        let snap_name = format!("{lv}-{name}");
        let [flag, value] = size_args(size);
        runner.run(&["lvcreate", "--snapshot", "--name", &snap_name, flag, value, &origin])?;
        tracing::info!("LVM snapshot {vg}/{snap_name} of {origin} created");
        Ok(Self {
            origin,
            lv: format!("{vg}/{snap_name}"),
            origin_device: PathBuf::from(device),
            device: PathBuf::from(format!("/dev/{vg}/{snap_name}")),
            mounted: None,
        })
    }

    /// Snapshot the volume mounted at `m` and mount the snapshot read-only in
    /// a private directory. On failure the snapshot is removed again.
    pub fn create_mounted(
        m: &Mount,
        name: &str,
        size: Option<&str>,
        runner: &dyn Runner,
    ) -> Result<Self, SnapshotError> {
        if !m.source.starts_with("/dev/") {
            return Err(SnapshotError::Unsupported {
                path: m.target.display().to_string(),
                message: format!("mounted from {}, not from an LVM logical volume", m.source),
            });
        }
        let mut snap = Self::create(&m.source, name, size, runner)?;
        let dir = std::env::temp_dir().join(snap.lv.replace('/', "-"));
        let mount = (|| {
            std::fs::create_dir(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
            // XFS refuses a second file system with the same UUID as the origin's.
            let opts = if m.fstype == "xfs" { "ro,nouuid" } else { "ro" };
            let r = runner.run(&["mount", "-o", opts, &snap.device.to_string_lossy(), &dir.to_string_lossy()]);
            if r.is_err() {
                let _ = std::fs::remove_dir(&dir);
            }
            r
        })();
        match mount {
            Ok(_) => {
                snap.mounted = Some((m.target.clone(), dir));
                Ok(snap)
            }
            Err(e) => {
                if let Err(e2) = snap.remove(runner) {
                    tracing::error!("{}", super::error_chain(&e2));
                }
                Err(e)
            }
        }
    }

    /// Snapshot the logical volume `device` for a block-level copy.
    pub fn create_device(
        device: &Path,
        name: &str,
        size: Option<&str>,
        runner: &dyn Runner,
    ) -> Result<Self, SnapshotError> {
        Self::create(&device.to_string_lossy(), name, size, runner)
    }

    pub fn view(&self) -> View {
        match &self.mounted {
            Some((target, dir)) => View { original: target.clone(), snapshot: dir.clone() },
            None => View { original: self.origin_device.clone(), snapshot: self.device.clone() },
        }
    }

    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "origin": self.origin,
            "snapshot": self.lv,
            "mounted_on": self.mounted.as_ref().map(|(_, d)| d),
        })
    }

    /// Fail when the snapshot overflowed while it was read (`lv_attr`'s fifth
    /// character is `I` for an invalid snapshot).
    pub fn verify(&self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        let out = runner.run(&["lvs", "--noheadings", "--options", "lv_attr,snap_percent", &self.lv])?;
        let mut f = out.split_whitespace();
        let attr = f.next().unwrap_or_default();
        let full = f.next().and_then(|p| p.parse::<f64>().ok()).is_some_and(|p| p >= 100.0);
        if attr.chars().nth(4) == Some('I') || full {
            return Err(SnapshotError::Overflowed { lv: self.lv.clone() });
        }
        Ok(())
    }

    /// Unmount (if mounted), then remove the snapshot volume.
    pub fn remove(self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        let cleanup = |what: String, manual: String, e: SnapshotError| SnapshotError::Cleanup {
            what,
            manual,
            source: Box::new(e),
        };
        if let Some((_, dir)) = &self.mounted {
            let d = dir.to_string_lossy();
            runner.run(&["umount", &d]).map_err(|e| {
                cleanup(
                    format!("LVM snapshot {} mounted on {d}", self.lv),
                    format!("umount {d} && lvremove -f {}", self.lv),
                    e,
                )
            })?;
            let _ = std::fs::remove_dir(dir);
        }
        runner
            .run(&["lvremove", "-f", &self.lv])
            .map_err(|e| cleanup(format!("LVM snapshot {}", self.lv), format!("lvremove -f {}", self.lv), e))?;
        tracing::info!("LVM snapshot {} removed", self.lv);
        Ok(())
    }
}
