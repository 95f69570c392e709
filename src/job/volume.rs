//! Consistent snapshots and block devices in a backup run (docs/VOLUMES.md).
//!
//! Order, and why:
//! 1. the snapshot is taken after the repository is open and locked, so a
//!    run that could not store anything never freezes or snapshots anything;
//! 2. the source is read from it (at the original paths, see
//!    `source::snapshot::namespace`);
//! 3. it is checked (an overflowed LVM snapshot or a freeze cut short by its
//!    watchdog fails the run) and removed as soon as the read ends, before
//!    the commit, so it lives no longer than the read;
//! 4. a removal that fails does not discard a good backup: the snapshot is
//!    committed and the run then fails, naming the leftover to remove.

use super::JobError;
use super::backup::{BackupSource, FeedResult};
use crate::repo::snapshot::{Item, SourceInfo, validate_stream_name};
use crate::repo::writer::Feeder;
use crate::repo::{RepoError, Repository};
use crate::source::device::{DeviceReader, stream_name};
use crate::source::snapshot::{SnapshotError, SnapshotSet, SnapshotSpec, SystemRunner, View, namespace};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long an interrupted run waits for its reader to let go of a snapshot
/// before removing it anyway (LVM cannot unmount a file system in use).
const READER_STOP: Duration = Duration::from_secs(30);

/// The snapshot (if any) a backup reads from; removed on drop.
pub(super) struct Volume {
    set: Option<SnapshotSet>,
    /// Stops the reader when a freeze reaches its time limit.
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

impl Volume {
    /// Take the snapshot `spec` asks for, of the file systems `source` reads.
    pub(super) async fn prepare(
        repo: &Repository,
        source: &BackupSource,
        spec: &SnapshotSpec,
    ) -> Result<Self, JobError> {
        if spec.is_none() {
            return Ok(Self { set: None, timer: None });
        }
        let (source, spec) = (source.clone(), spec.clone());
        let set = tokio::task::spawn_blocking(move || {
            let runner = Arc::new(SystemRunner);
            match &source {
                BackupSource::Paths(paths, ..) => SnapshotSet::for_paths(&spec, paths, runner),
                BackupSource::Device(device) => SnapshotSet::for_device(&spec, device, runner),
                _ => Err(SnapshotError::Usage(format!(
                    "snapshot = \"{}\" applies to paths and device sources only",
                    spec.kind
                ))),
            }
        })
        .await
        .map_err(|e| RepoError::Pipeline(e.to_string()))??;
        let volume = Self { set: Some(set), timer: None };
        volume.refuse_frozen_repository(repo)?;
        Ok(volume)
    }

    /// Writing packs to a frozen file system would block until the watchdog
    /// thaws it, and then the backup would fail: refuse at once instead.
    fn refuse_frozen_repository(&self, repo: &Repository) -> Result<(), JobError> {
        let Some(set) = &self.set else { return Ok(()) };
        let location = repo.store().location();
        let Ok(repo_dev) = std::fs::metadata(&location).map(|m| m.dev()) else { return Ok(()) };
        for m in set.frozen() {
            if std::fs::metadata(&m).is_ok_and(|f| f.dev() == repo_dev) {
                return Err(JobError::Usage(format!(
                    "the repository {location} is on {}, the file system to be frozen; keep it elsewhere",
                    m.display()
                )));
            }
        }
        Ok(())
    }

    /// Where the snapshots show the file systems they copy (for the reader).
    pub(super) fn views(&self) -> Vec<View> {
        self.set.as_ref().map(SnapshotSet::views).unwrap_or_default()
    }

    /// A read still going when a freeze's watchdog thaws the file system
    /// cannot give a consistent copy: stop it then rather than read on.
    pub(super) fn stop_reading_at_deadline(&mut self, cancel: &Arc<AtomicBool>) {
        let Some(deadline) = self.set.as_ref().and_then(SnapshotSet::deadline) else { return };
        let cancel = cancel.clone();
        self.timer = Some(tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            cancel.store(true, Ordering::Relaxed);
        }));
    }

    /// After an interrupt: stop the reader (bounded), then remove the snapshot.
    pub(super) async fn interrupted<T>(self, cancel: &AtomicBool, reader: tokio::task::JoinHandle<T>) {
        if self.set.is_none() {
            return;
        }
        cancel.store(true, Ordering::Relaxed);
        if tokio::time::timeout(READER_STOP, reader).await.is_err() {
            tracing::warn!("the reader did not stop within {} s; removing the snapshot anyway", READER_STOP.as_secs());
        }
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    /// After the read: check the snapshot held, remove it, and record it in
    /// the source details. The second value is a failed removal, reported
    /// after the commit (the backup itself is good).
    pub(super) async fn finish(
        mut self,
        fed: Result<FeedResult, JobError>,
    ) -> (Result<FeedResult, JobError>, Option<SnapshotError>) {
        let Some(set) = self.set.take() else { return (fed, None) };
        let details = set.details();
        let (verified, removed) = match tokio::task::spawn_blocking(move || set.finish()).await {
            Ok(r) => r,
            Err(e) => (Err(SnapshotError::Namespace(format!("snapshot removal panicked: {e}"))), Ok(())),
        };
        // A broken snapshot explains a failed read (a read cancelled at the
        // freeze limit, I/O errors from an overflowed LVM snapshot): it wins.
        let fed = match (fed, verified) {
            (_, Err(e)) => Err(e.into()),
            (Ok(mut f), Ok(())) => {
                if let Some(d) = f.source.details.as_object_mut() {
                    d.insert("snapshot".into(), details);
                }
                Ok(f)
            }
            (Err(e), Ok(())) => Err(e),
        };
        (fed, removed.err())
    }
}

/// Run a tree read with the snapshots shown at the original paths.
pub(super) fn read_at(
    views: &[View],
    read: impl FnOnce() -> Result<FeedResult, JobError> + Send,
) -> Result<FeedResult, JobError> {
    namespace::with_views(views, read)?
}

/// Read a block device or image file as one stream, from its LVM snapshot
/// when `views` has one.
pub(super) fn feed_device(feeder: &mut Feeder, device: &Path, views: &[View]) -> Result<FeedResult, JobError> {
    let name = stream_name(device);
    validate_stream_name(&name).map_err(JobError::Usage)?;
    let from = views.iter().find(|v| v.original == device).map_or(device, |v| v.snapshot.as_path());
    let mut reader = DeviceReader::open(from)?;
    let block = std::fs::metadata(from).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    });
    let (stream, _) = feeder.write_stream(&mut reader)?;
    let size = reader.finish()?;
    Ok(FeedResult {
        items: vec![Item::plain_stream(&name, stream.size, stream.chunks)],
        source: SourceInfo {
            kind: "device".into(),
            details: serde_json::json!({
                "device": device,
                "read_from": from,
                "size": size,
                "block_device": block,
            }),
        },
        warnings: vec![],
        fingerprints: serde_json::Value::Null,
    })
}
