//! A backup run: lock, feed the source through the pipeline, commit, write the snapshot.
//!
//! Commit order (DESIGN principle 1): the source has been read to its end and
//! has exited 0, then every pack is stored, then the index, then the manifest.

use super::paths::ParentTrees;
use super::{JobError, shutdown_signal};
use crate::engine::{DbUrl, Password};
use crate::repo::snapshot::{
    BackupSummary, Item, MANIFEST_VERSION, SnapshotManifest, SourceInfo, validate_stream_name,
};
use crate::repo::writer::{BackupWriter, Feeder, WriteStats, WriterOptions};
use crate::repo::{RepoError, Repository, ids::SnapshotId, lock};
use crate::source::command::{ChildHandle, CommandSource};
use crate::source::exclude::TreeOptions;
use crate::source::snapshot::{SnapshotSpec, View};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum BackupSource {
    Stdin,
    Command(Vec<String>),
    /// Files and directories, with what to leave out.
    Paths(Vec<PathBuf>, TreeOptions),
    /// A database server, dumped with the engine's own tools.
    Database(DbUrl, Password),
    /// A block device or disk image, as one stream (docs/VOLUMES.md).
    Device(PathBuf),
    /// A PostgreSQL physical base backup (docs/PITR.md).
    PgPhysical(DbUrl, Password),
}

#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub name: String,
    pub source: BackupSource,
    pub tags: Vec<String>,
    /// Host name to record instead of the machine's (retention groups by host).
    pub host: Option<String>,
    /// Snapshot time to record instead of now (imports, tests).
    pub time: Option<DateTime<Utc>>,
    pub writer: WriterOptions,
    /// Read every file even if the parent snapshot says it is unchanged.
    pub force: bool,
    /// Read paths or a device from a file-system snapshot (docs/VOLUMES.md).
    pub snapshot: SnapshotSpec,
}

#[derive(Debug)]
pub struct BackupOutcome {
    pub id: SnapshotId,
    pub manifest: SnapshotManifest,
    /// Entries that could not be read (the snapshot is then marked partial).
    pub warnings: Vec<String>,
}

pub(super) struct FeedResult {
    pub items: Vec<Item>,
    pub source: SourceInfo,
    pub warnings: Vec<String>,
    /// Facts for drills to compare against (row counts, ...).
    pub fingerprints: serde_json::Value,
}

/// Run a backup. `observe` is called once with live counters (for progress display).
pub async fn run(
    repo: Arc<Repository>,
    req: BackupRequest,
    observe: &dyn Fn(Arc<WriteStats>),
) -> Result<BackupOutcome, JobError> {
    if matches!(req.source, BackupSource::Stdin | BackupSource::Command(_)) {
        validate_stream_name(&req.name).map_err(JobError::Usage)?;
    }
    let started = Instant::now();
    let time = req.time.unwrap_or_else(Utc::now);
    let guard = lock::acquire(&repo, false, &format!("backup {}", req.name)).await?;
    let result = backup_locked(&repo, &guard, &req, time, started, observe).await;
    let released = guard.release().await;
    let outcome = result?;
    released?;
    Ok(outcome)
}

async fn backup_locked(
    repo: &Arc<Repository>,
    guard: &lock::LockGuard,
    req: &BackupRequest,
    time: DateTime<Utc>,
    started: Instant,
    observe: &dyn Fn(Arc<WriteStats>),
) -> Result<BackupOutcome, JobError> {
    let index = Arc::new(repo.load_index().await?);
    let (parent, parents) = match (&req.source, req.force) {
        (BackupSource::Paths(..), false) => {
            // The parent is the host's own: `backup --host` names the host the snapshot is recorded under.
            let host = req.host.clone().unwrap_or_else(crate::repo::lock::hostname);
            super::paths::parent_trees(repo, &index, &req.name, &host).await
        }
        _ => (None, ParentTrees::default()),
    };
    // Held until the read ends; every early return drops (removes) it.
    let mut volume = super::volume::Volume::prepare(repo, &req.source, &req.snapshot).await?;
    let (writer, feeder) = BackupWriter::start(repo.clone(), index, &req.writer)?;
    observe(writer.stats().clone());
    let child = ChildHandle::default();
    let cancel = feeder.canceller();
    volume.stop_reading_at_deadline(&cancel);
    let (source, name, child2, views) = (req.source.clone(), req.name.clone(), child.clone(), volume.views());
    let mut feed = tokio::task::spawn_blocking(move || {
        let mut feeder = feeder;
        let r = feed(&mut feeder, &source, &name, &child2, &parents, &views);
        (feeder, r)
    });
    let (feeder, fed) = tokio::select! {
        r = &mut feed => r.map_err(|e| RepoError::Pipeline(e.to_string()))?,
        sig = shutdown_signal() => {
            child.terminate();
            volume.interrupted(&cancel, feed).await;
            // The blocking reader may never return (stdin): exit without committing.
            return Err(JobError::Interrupted(sig));
        }
    };
    let (fed, snapshot_left) = volume.finish(fed).await;
    let fed = match fed {
        Ok(f) => f,
        Err(e) => {
            writer.abort(Some(feeder)).await;
            return Err(e);
        }
    };
    // A run whose lock was taken for stale must not index packs a prune may
    // have deleted meanwhile; `save_snapshot` checks again before the manifest.
    if let Err(e) = guard.ensure_held().await {
        writer.abort(Some(feeder)).await;
        return Err(e.into());
    }
    let (_, stats) = writer.commit(feeder).await?;
    let g = |c: &std::sync::atomic::AtomicU64| WriteStats::get(c);
    let manifest = SnapshotManifest {
        version: MANIFEST_VERSION,
        time,
        host: req.host.clone().unwrap_or_else(lock::hostname),
        name: req.name.clone(),
        source: fed.source,
        items: fed.items,
        summary: BackupSummary {
            bytes_read: g(&stats.bytes_read),
            bytes_new: g(&stats.bytes_new),
            bytes_stored: g(&stats.bytes_stored),
            chunks: g(&stats.chunks),
            chunks_new: g(&stats.chunks_new),
            packs: g(&stats.packs),
            duration_ms: started.elapsed().as_millis() as u64,
            bytes_unchanged: g(&stats.bytes_unchanged),
        },
        tags: req.tags.clone(),
        partial: !fed.warnings.is_empty(),
        fingerprints: fed.fingerprints,
        drtool_version: env!("CARGO_PKG_VERSION").to_string(),
        parent,
    };
    // Written last: only now does the backup exist.
    let id = repo.save_snapshot(&manifest, guard).await?;
    if let Some(source) = snapshot_left {
        return Err(JobError::SnapshotLeft { saved: id.short(), source });
    }
    Ok(BackupOutcome { id, manifest, warnings: fed.warnings })
}

fn feed(
    feeder: &mut Feeder,
    source: &BackupSource,
    name: &str,
    child: &ChildHandle,
    parents: &ParentTrees,
    views: &[View],
) -> Result<FeedResult, JobError> {
    match source {
        BackupSource::Stdin => {
            let (stream, _) = feeder.write_stream(std::io::stdin().lock())?;
            Ok(FeedResult {
                items: vec![Item::plain_stream(name, stream.size, stream.chunks)],
                source: SourceInfo { kind: "stdin".into(), details: serde_json::Value::Null },
                warnings: vec![],
                fingerprints: serde_json::Value::Null,
            })
        }
        BackupSource::Command(argv) => {
            let mut cmd = CommandSource::spawn(argv, child)?;
            let stdout = cmd.take_stdout().ok_or_else(|| RepoError::Pipeline("child has no stdout".into()))?;
            let stream = match feeder.write_stream(stdout) {
                Ok((s, stdout)) => {
                    drop(stdout);
                    s
                }
                Err(e) => {
                    cmd.kill();
                    return Err(e.into());
                }
            };
            // The stream counts only if the command succeeded.
            cmd.finish()?;
            Ok(FeedResult {
                items: vec![Item::plain_stream(name, stream.size, stream.chunks)],
                source: SourceInfo { kind: "command".into(), details: serde_json::json!({ "argv": argv }) },
                warnings: vec![],
                fingerprints: serde_json::Value::Null,
            })
        }
        BackupSource::Paths(paths, options) => {
            super::volume::read_at(views, || super::paths::feed_paths(feeder, paths, options, parents))
        }
        BackupSource::Device(device) => super::volume::feed_device(feeder, device, views),
        BackupSource::Database(url, password) => super::dbbackup::feed_database(feeder, url, password, child),
        BackupSource::PgPhysical(url, password) => super::pgbase::feed_physical(feeder, url, password, child),
    }
}
