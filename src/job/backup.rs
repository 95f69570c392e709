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
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum BackupSource {
    Stdin,
    Command(Vec<String>),
    Paths(Vec<PathBuf>),
    /// A database server, dumped with the engine's own tools.
    Database(DbUrl, Password),
}

#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub name: String,
    pub source: BackupSource,
    pub tags: Vec<String>,
    /// Snapshot time to record instead of now (imports, tests).
    pub time: Option<DateTime<Utc>>,
    pub writer: WriterOptions,
    /// Read every file even if the parent snapshot says it is unchanged.
    pub force: bool,
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
    let result = backup_locked(&repo, &req, time, started, observe).await;
    let released = guard.release().await;
    let outcome = result?;
    released?;
    Ok(outcome)
}

async fn backup_locked(
    repo: &Arc<Repository>,
    req: &BackupRequest,
    time: DateTime<Utc>,
    started: Instant,
    observe: &dyn Fn(Arc<WriteStats>),
) -> Result<BackupOutcome, JobError> {
    let index = Arc::new(repo.load_index().await?);
    let (parent, parents) = match (&req.source, req.force) {
        (BackupSource::Paths(_), false) => super::paths::parent_trees(repo, &index, &req.name).await,
        _ => (None, ParentTrees::default()),
    };
    let (writer, feeder) = BackupWriter::start(repo.clone(), index, &req.writer)?;
    observe(writer.stats().clone());
    let child = ChildHandle::default();
    let (source, name, child2) = (req.source.clone(), req.name.clone(), child.clone());
    let mut feed = tokio::task::spawn_blocking(move || {
        let mut feeder = feeder;
        let r = feed(&mut feeder, &source, &name, &child2, &parents);
        (feeder, r)
    });
    let (feeder, fed) = tokio::select! {
        r = &mut feed => r.map_err(|e| RepoError::Pipeline(e.to_string()))?,
        sig = shutdown_signal() => {
            child.terminate();
            // The blocking reader may never return (stdin): exit without committing.
            return Err(JobError::Interrupted(sig));
        }
    };
    let fed = match fed {
        Ok(f) => f,
        Err(e) => {
            writer.abort(Some(feeder)).await;
            return Err(e);
        }
    };
    let (_, stats) = writer.commit(feeder).await?;
    let g = |c: &std::sync::atomic::AtomicU64| WriteStats::get(c);
    let manifest = SnapshotManifest {
        version: MANIFEST_VERSION,
        time,
        host: lock::hostname(),
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
    let id = repo.save_snapshot(&manifest).await?;
    Ok(BackupOutcome { id, manifest, warnings: fed.warnings })
}

fn feed(
    feeder: &mut Feeder,
    source: &BackupSource,
    name: &str,
    child: &ChildHandle,
    parents: &ParentTrees,
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
        BackupSource::Paths(paths) => super::paths::feed_paths(feeder, paths, parents),
        BackupSource::Database(url, password) => super::dbbackup::feed_database(feeder, url, password, child),
    }
}
