//! Consistent views of live file systems for the length of one backup:
//! btrfs, LVM and ZFS snapshots, and `fsfreeze` for short block-level copies.
//!
//! A [`SnapshotSet`] is a guard. It is taken before the source is read and
//! undone after, on every way out: [`SnapshotSet::finish`] when the read ended
//! (its failure is an error of the run), `Drop` on early returns, panics and
//! interruption (its failure is logged at error level with the command that
//! removes the leftover by hand). Only SIGKILL skips both; a frozen file system
//! is then still thawed by an out-of-process watchdog (see [`freeze`]).
//!
//! Snapshots are read through [`namespace::with_views`], which shows each one
//! at the path of the file system it copies, so the backup records the
//! original paths (and excludes, parents and restores behave as without one).
//!
//! Every command goes through a [`Runner`], so the command sequences of LVM
//! and ZFS (which need kernel support this project's test machines lack) are
//! tested with a recording fake.

pub mod btrfs;
pub mod freeze;
pub mod lvm;
pub mod namespace;
mod runner;
#[cfg(test)]
mod tests;
pub mod zfs;

pub use runner::{Runner, SystemRunner, Watchdog};

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How to get a consistent view of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotKind {
    /// Read the live files (as without this feature).
    #[default]
    None,
    Btrfs,
    Lvm,
    Zfs,
    Fsfreeze,
}

impl SnapshotKind {
    pub const NAMES: &'static str = "btrfs, lvm, zfs, fsfreeze or none";

    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::None => "none",
            SnapshotKind::Btrfs => "btrfs",
            SnapshotKind::Lvm => "lvm",
            SnapshotKind::Zfs => "zfs",
            SnapshotKind::Fsfreeze => "fsfreeze",
        }
    }
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SnapshotKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => SnapshotKind::None,
            "btrfs" => SnapshotKind::Btrfs,
            "lvm" => SnapshotKind::Lvm,
            "zfs" => SnapshotKind::Zfs,
            "fsfreeze" => SnapshotKind::Fsfreeze,
            other => return Err(format!("unknown snapshot kind {other:?}: expected {}", Self::NAMES)),
        })
    }
}

/// The longest a file system stays frozen unless configured otherwise.
pub const DEFAULT_FREEZE_TIMEOUT: Duration = Duration::from_secs(60);

/// A snapshot strategy and its settings (plain data, from a policy or the CLI).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotSpec {
    pub kind: SnapshotKind,
    /// LVM copy-on-write space: a size (`2G`, as `lvcreate --size`) or a share
    /// of the origin (`20%ORIGIN`, as `lvcreate --extents`). Default 10%ORIGIN.
    pub size: Option<String>,
    /// fsfreeze: the hard limit on how long a file system stays frozen.
    pub freeze_timeout: Option<Duration>,
}

impl SnapshotSpec {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_none(&self) -> bool {
        self.kind == SnapshotKind::None
    }
}

/// Where a snapshot shows the file system whose root is `original`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The live path: a file system's (or subvolume's) root, or a block device.
    pub original: PathBuf,
    /// The frozen copy of it: a directory, or a block device.
    pub snapshot: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{command} failed ({status}){}", super::stderr_suffix(.stderr))]
    Command { command: String, status: String, stderr: String },
    #[error("cannot start {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The path or device cannot be snapshotted this way.
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    /// The LVM snapshot ran out of copy-on-write space while it was read.
    #[error(
        "LVM snapshot {lv} overflowed (its copy-on-write space filled up) while it was read, so the copy is not \
         consistent and no snapshot was saved; give it more room with snapshot_size / --snapshot-size"
    )]
    Overflowed { lv: String },
    /// The watchdog thawed a file system before the copy finished.
    #[error(
        "{mountpoint} was thawed by the watchdog after {seconds} s, before the copy finished, so the copy is not \
         consistent and no snapshot was saved; raise freeze_timeout_seconds / --freeze-timeout or use an LVM snapshot"
    )]
    FreezeTimeout { mountpoint: String, seconds: u64 },
    /// A snapshot could not be removed; the message says how to remove it by hand.
    #[error("could not remove {what} (remove it by hand: {manual})")]
    Cleanup {
        what: String,
        manual: String,
        #[source]
        source: Box<SnapshotError>,
    },
    #[error("cannot show the snapshot at the original paths: {0}")]
    Namespace(String),
    #[error("{0}")]
    Usage(String),
}

impl SnapshotError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SnapshotError::Io { path: path.display().to_string(), source }
    }

    fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        SnapshotError::Unsupported { path: path.display().to_string(), message: message.into() }
    }
}

/// One thing taken that must be undone.
enum Taken {
    Btrfs(btrfs::BtrfsSnapshot),
    Lvm(lvm::LvmSnapshot),
    Zfs(zfs::ZfsSnapshot),
    Freeze(freeze::Frozen),
}

impl Taken {
    fn view(&self) -> Option<View> {
        match self {
            Taken::Btrfs(s) => Some(s.view()),
            Taken::Lvm(s) => Some(s.view()),
            Taken::Zfs(s) => Some(s.view()),
            Taken::Freeze(_) => None,
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            Taken::Btrfs(s) => s.details(),
            Taken::Lvm(s) => s.details(),
            Taken::Zfs(s) => s.details(),
            Taken::Freeze(f) => f.details(),
        }
    }

    /// Whether the copy is still whole; checked after reading, before anything is committed.
    fn verify(&mut self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        match self {
            Taken::Lvm(s) => s.verify(runner),
            Taken::Freeze(f) => f.verify(),
            Taken::Btrfs(_) | Taken::Zfs(_) => Ok(()),
        }
    }

    fn remove(self, runner: &dyn Runner) -> Result<(), SnapshotError> {
        match self {
            Taken::Btrfs(s) => s.remove(runner),
            Taken::Lvm(s) => s.remove(runner),
            Taken::Zfs(s) => s.remove(runner),
            Taken::Freeze(f) => f.thaw(runner),
        }
    }
}

/// A unique name part for this run's snapshots: time, process id and a
/// counter (`drtool-TIME-PID-N`), so a leftover says when and by whom it was made.
pub fn unique_name() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("drtool-{}-{}-{n}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), std::process::id())
}

/// Snapshots (or frozen file systems) held for one backup; undone on drop.
pub struct SnapshotSet {
    runner: Arc<dyn Runner>,
    kind: SnapshotKind,
    /// In the order taken; undone in reverse.
    taken: Vec<Taken>,
}

impl SnapshotSet {
    /// Nothing taken: the source is read live.
    pub fn none(runner: Arc<dyn Runner>) -> Self {
        Self { runner, kind: SnapshotKind::None, taken: Vec::new() }
    }

    /// Snapshot (or freeze) every file system holding one of `paths`, once each.
    /// On failure, whatever was already taken is undone before returning.
    pub fn for_paths(spec: &SnapshotSpec, paths: &[PathBuf], runner: Arc<dyn Runner>) -> Result<Self, SnapshotError> {
        let mut set = Self { runner: runner.clone(), kind: spec.kind, taken: Vec::new() };
        let name = unique_name();
        let paths = paths
            .iter()
            .map(|p| std::path::absolute(p).map_err(|e| SnapshotError::io(p, e)))
            .collect::<Result<Vec<_>, _>>()?;
        match spec.kind {
            SnapshotKind::None => {}
            SnapshotKind::Btrfs => {
                for root in btrfs::subvolume_roots(&paths, runner.as_ref())? {
                    set.taken.push(Taken::Btrfs(btrfs::BtrfsSnapshot::create(&root, &name, runner.as_ref())?));
                }
            }
            SnapshotKind::Lvm => {
                for m in distinct_mounts(&paths, runner.as_ref())? {
                    let lv = lvm::LvmSnapshot::create_mounted(&m, &name, spec.size.as_deref(), runner.as_ref());
                    set.taken.push(Taken::Lvm(lv?));
                }
            }
            SnapshotKind::Zfs => {
                for m in distinct_mounts(&paths, runner.as_ref())? {
                    set.taken.push(Taken::Zfs(zfs::ZfsSnapshot::create(&m, &name, runner.as_ref())?));
                }
            }
            SnapshotKind::Fsfreeze => {
                let timeout = spec.freeze_timeout.unwrap_or(DEFAULT_FREEZE_TIMEOUT);
                for m in distinct_mounts(&paths, runner.as_ref())? {
                    set.taken.push(Taken::Freeze(freeze::Frozen::freeze(&m.target, timeout, runner.as_ref())?));
                }
            }
        }
        Ok(set)
    }

    /// A consistent view of one block device (or image file): LVM snapshots
    /// the logical volume, fsfreeze freezes the file systems mounted from it.
    pub fn for_device(spec: &SnapshotSpec, device: &Path, runner: Arc<dyn Runner>) -> Result<Self, SnapshotError> {
        let mut set = Self { runner: runner.clone(), kind: spec.kind, taken: Vec::new() };
        match spec.kind {
            SnapshotKind::None => {}
            SnapshotKind::Lvm => {
                let lv = lvm::LvmSnapshot::create_device(device, &unique_name(), spec.size.as_deref(), runner.as_ref());
                set.taken.push(Taken::Lvm(lv?));
            }
            SnapshotKind::Fsfreeze => {
                let timeout = spec.freeze_timeout.unwrap_or(DEFAULT_FREEZE_TIMEOUT);
                let mounts = crate::source::device::mountpoints(device).map_err(|e| SnapshotError::io(device, e))?;
                if mounts.is_empty() {
                    tracing::info!("{}: no file system mounted from it; nothing to freeze", device.display());
                }
                for m in mounts {
                    set.taken.push(Taken::Freeze(freeze::Frozen::freeze(&m, timeout, runner.as_ref())?));
                }
            }
            SnapshotKind::Btrfs | SnapshotKind::Zfs => {
                return Err(SnapshotError::Usage(format!(
                    "snapshot = \"{}\" applies to paths; a device backup takes snapshot = \"lvm\" or \"fsfreeze\"",
                    spec.kind
                )));
            }
        }
        Ok(set)
    }

    pub fn kind(&self) -> SnapshotKind {
        self.kind
    }

    /// Frozen mount points (fsfreeze), so callers can refuse to write to them.
    pub fn frozen(&self) -> Vec<PathBuf> {
        self.taken.iter().filter_map(|t| if let Taken::Freeze(f) = t { Some(f.mountpoint()) } else { None }).collect()
    }

    /// When the first frozen file system will be thawed by its watchdog: the
    /// read must be over by then.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.taken.iter().filter_map(|t| if let Taken::Freeze(f) = t { Some(f.deadline()) } else { None }).min()
    }

    /// Where the snapshots show each copied file system.
    pub fn views(&self) -> Vec<View> {
        self.taken.iter().filter_map(Taken::view).collect()
    }

    /// What was taken, for the snapshot manifest.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "taken": self.taken.iter().map(Taken::details).collect::<Vec<_>>(),
        })
    }

    /// After the read: check every copy stayed whole, then undo everything.
    /// Returns the first problem; every removal is attempted regardless.
    pub fn finish(mut self) -> (Result<(), SnapshotError>, Result<(), SnapshotError>) {
        let mut verified = Ok(());
        for t in &mut self.taken {
            if let Err(e) = t.verify(self.runner.as_ref())
                && verified.is_ok()
            {
                verified = Err(e);
            }
        }
        (verified, self.remove_all())
    }

    fn remove_all(&mut self) -> Result<(), SnapshotError> {
        let mut first = Ok(());
        while let Some(t) = self.taken.pop() {
            if let Err(e) = t.remove(self.runner.as_ref()) {
                tracing::error!("{}", error_chain(&e));
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl Drop for SnapshotSet {
    fn drop(&mut self) {
        // Errors are logged by remove_all: a drop has no one to return them to.
        let _ = self.remove_all();
    }
}

/// A mounted file system, as `findmnt` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device, dataset (ZFS) or `device[/subvolume]` (btrfs).
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
}

/// The mount holding `path`.
pub fn mount_of(path: &Path, runner: &dyn Runner) -> Result<Mount, SnapshotError> {
    let p = path.to_string_lossy();
    let out = runner.run(&["findmnt", "--noheadings", "--raw", "--output", "SOURCE,TARGET,FSTYPE", "--target", &p])?;
    let line = out.lines().next().unwrap_or_default();
    let mut f = line.split(' ').map(unescape_findmnt);
    match (f.next(), f.next(), f.next()) {
        (Some(source), Some(target), Some(fstype)) if !target.is_empty() => {
            Ok(Mount { source, target: PathBuf::from(target), fstype })
        }
        _ => Err(SnapshotError::unsupported(path, format!("findmnt printed no mount for it: {out:?}"))),
    }
}

/// `findmnt --raw` writes spaces and other unsafe bytes as `\xHH`.
fn unescape_findmnt(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1] == b'x'
            && b[i + 2..i + 4].iter().all(u8::is_ascii_hexdigit)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[i + 2..i + 4]), 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The distinct mounts holding `paths`, outermost first.
fn distinct_mounts(paths: &[PathBuf], runner: &dyn Runner) -> Result<Vec<Mount>, SnapshotError> {
    let mut out: Vec<Mount> = Vec::new();
    for p in paths {
        let m = mount_of(p, runner)?;
        if !out.iter().any(|o| o.target == m.target) {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.target.components().count());
    Ok(out)
}


/// An error and its causes on one line (for logs, where `{:#}` is not applied).
pub use crate::repo::error::chain as error_chain;
