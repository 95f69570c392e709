//! `restore SNAPSHOT --to-device /dev/X`: write a one-stream snapshot (a
//! device backup) onto a block device, after a plan the caller shows.
//!
//! Nothing is written unless the plan has no refusal: the device must be a
//! block device nobody holds (not mounted), at least as large as the stream.

use super::JobError;
use crate::pipeline::ChunkId;
use crate::repo::reader::read_stream;
use crate::repo::snapshot::{Item, Snapshot};
use crate::repo::{RepoError, Repository, lock};
use crate::target::device::{BlockDevice, DeviceTargetError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct DevicePlan {
    pub snapshot: String,
    pub name: String,
    pub time: DateTime<Utc>,
    /// The stream to write and its size.
    pub stream: String,
    pub size: u64,
    pub device: String,
    pub device_size: u64,
    /// Why the restore will not go ahead, if it will not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceRestoreSummary {
    pub bytes: u64,
    pub duration_ms: u64,
}

/// The snapshot's one stream, or a usage error naming what it holds instead.
fn only_stream(snap: &Snapshot) -> Result<(&str, u64, &[ChunkId]), JobError> {
    match snap.manifest.items.as_slice() {
        [Item::Stream { name, size, chunks, .. }] => Ok((name, *size, chunks)),
        items => Err(JobError::Usage(format!(
            "snapshot {} holds {} items; --to-device restores a snapshot of one stream (a device backup)",
            snap.id.short(),
            items.len()
        ))),
    }
}

/// Open the device exclusively and say what would happen. The open device
/// is returned only when the restore may go ahead.
pub fn plan(snap: &Snapshot, device: &Path) -> Result<(DevicePlan, Option<BlockDevice>), JobError> {
    let (stream, size, _) = only_stream(snap)?;
    let mut plan = DevicePlan {
        snapshot: snap.id.to_string(),
        name: snap.manifest.name.clone(),
        time: snap.manifest.time,
        stream: stream.to_string(),
        size,
        device: device.display().to_string(),
        device_size: 0,
        refusal: None,
    };
    let dev = match BlockDevice::open(device) {
        Ok(d) => d,
        Err(e @ (DeviceTargetError::NotBlockDevice { .. } | DeviceTargetError::InUse { .. })) => {
            plan.refusal = Some(e.to_string());
            return Ok((plan, None));
        }
        Err(DeviceTargetError::Io { path, source }) => return Err(RepoError::io(path, source).into()),
    };
    plan.device_size = dev.size();
    if size > dev.size() {
        plan.refusal =
            Some(format!("{} holds {} bytes, the stream {size}: it does not fit", device.display(), dev.size()));
        return Ok((plan, None));
    }
    Ok((plan, Some(dev)))
}

/// Write the stream onto the device (opened by [`plan`]) and flush it.
pub async fn execute(
    repo: Arc<Repository>,
    snap: &Snapshot,
    dev: BlockDevice,
) -> Result<DeviceRestoreSummary, JobError> {
    let (_, size, chunks) = only_stream(snap)?;
    let started = Instant::now();
    let guard = lock::acquire(&repo, false, "restore").await?;
    let result = async {
        let index = Arc::new(repo.load_index().await?);
        let path = dev.path().display().to_string();
        let mut out = dev.writer();
        let n = read_stream(&repo, &index, chunks, |d| out.write(d)).await?;
        let written = tokio::task::block_in_place(|| out.finish()).map_err(|e| match e {
            DeviceTargetError::Io { path, source } => RepoError::io(path, source),
            other => RepoError::io(path.clone(), std::io::Error::other(other.to_string())),
        })?;
        if n != size || written != size {
            return Err(JobError::Repo(RepoError::Pipeline(format!(
                "wrote {written} of {size} bytes to {path}: the snapshot's stream is shorter than recorded"
            ))));
        }
        Ok(DeviceRestoreSummary { bytes: written, duration_ms: started.elapsed().as_millis() as u64 })
    }
    .await;
    let released = guard.release().await;
    let summary = result?;
    released?;
    Ok(summary)
}
