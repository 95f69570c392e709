//! A backup run: lock, feed the source through the pipeline, commit, write the snapshot.
//!
//! Commit order (DESIGN principle 1): the source has been read to its end and
//! has exited 0, then every pack is stored, then the index, then the manifest.

use super::{JobError, shutdown_signal};
use crate::pipeline::ChunkId;
use crate::repo::snapshot::{
    BackupSummary, Item, MANIFEST_VERSION, SnapshotManifest, SourceInfo, validate_stream_name,
};
use crate::repo::writer::{BackupWriter, Feeder, WriteStats, WriterOptions};
use crate::repo::{RepoError, Repository, ids::SnapshotId, lock};
use crate::source::command::{ChildHandle, CommandSource};
use crate::source::tree::{ContentSink, WalkError, walk};
use chrono::{DateTime, Utc};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum BackupSource {
    Stdin,
    Command(Vec<String>),
    Paths(Vec<PathBuf>),
}

#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub name: String,
    pub source: BackupSource,
    pub tags: Vec<String>,
    /// Snapshot time to record instead of now (imports, tests).
    pub time: Option<DateTime<Utc>>,
    pub writer: WriterOptions,
}

#[derive(Debug)]
pub struct BackupOutcome {
    pub id: SnapshotId,
    pub manifest: SnapshotManifest,
    /// Entries that could not be read (the snapshot is then marked partial).
    pub warnings: Vec<String>,
}

struct FeedResult {
    items: Vec<Item>,
    source: SourceInfo,
    warnings: Vec<String>,
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
    let (writer, feeder) = BackupWriter::start(repo.clone(), index, &req.writer)?;
    observe(writer.stats().clone());
    let child = ChildHandle::default();
    let (source, name, child2) = (req.source.clone(), req.name.clone(), child.clone());
    let mut feed = tokio::task::spawn_blocking(move || {
        let mut feeder = feeder;
        let r = feed(&mut feeder, &source, &name, &child2);
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
        },
        tags: req.tags.clone(),
        partial: !fed.warnings.is_empty(),
        fingerprints: serde_json::Value::Null,
        drtool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // Written last: only now does the backup exist.
    let id = repo.save_snapshot(&manifest).await?;
    Ok(BackupOutcome {
        id,
        manifest,
        warnings: fed.warnings,
    })
}

fn feed(
    feeder: &mut Feeder,
    source: &BackupSource,
    name: &str,
    child: &ChildHandle,
) -> Result<FeedResult, JobError> {
    match source {
        BackupSource::Stdin => {
            let (stream, _) = feeder.write_stream(std::io::stdin().lock())?;
            Ok(FeedResult {
                items: vec![Item::Stream {
                    name: name.to_string(),
                    size: stream.size,
                    chunks: stream.chunks,
                }],
                source: SourceInfo {
                    kind: "stdin".into(),
                    details: serde_json::Value::Null,
                },
                warnings: vec![],
            })
        }
        BackupSource::Command(argv) => {
            let mut cmd = CommandSource::spawn(argv, child)?;
            let stdout = cmd
                .take_stdout()
                .ok_or_else(|| RepoError::Pipeline("child has no stdout".into()))?;
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
                items: vec![Item::Stream {
                    name: name.to_string(),
                    size: stream.size,
                    chunks: stream.chunks,
                }],
                source: SourceInfo {
                    kind: "command".into(),
                    details: serde_json::json!({ "argv": argv }),
                },
                warnings: vec![],
            })
        }
        BackupSource::Paths(paths) => feed_paths(feeder, paths),
    }
}

struct FeederSink<'a>(&'a mut Feeder);

impl ContentSink for FeederSink<'_> {
    type Error = RepoError;
    fn file(&mut self, file: File) -> Result<(Vec<ChunkId>, u64), RepoError> {
        let (s, _) = self.0.write_stream(file)?;
        Ok((s.chunks, s.size))
    }
}

fn feed_paths(feeder: &mut Feeder, paths: &[PathBuf]) -> Result<FeedResult, JobError> {
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    for path in paths {
        let mut abs =
            std::path::absolute(path).map_err(|e| RepoError::io(path.display().to_string(), e))?;
        if abs.file_name().is_none() {
            // `..` or `/x/..`: name the root by what it really is.
            abs = std::fs::canonicalize(&abs)
                .map_err(|e| RepoError::io(path.display().to_string(), e))?;
        }
        let mut meta = Vec::new();
        let mut emit = |n: crate::repo::tree::Node| {
            // Serialising plain structs to a Vec cannot fail.
            if serde_json::to_writer(&mut meta, &n).is_ok() {
                meta.push(b'\n');
            }
        };
        let stats = walk(&abs, &mut FeederSink(feeder), &mut emit).map_err(|e| match e {
            WalkError::Root(p, source) => {
                JobError::Source(crate::source::SourceError::Io { path: p, source })
            }
            WalkError::Sink(e) => JobError::Repo(e),
        })?;
        let (meta_ref, _) = feeder.write_stream(&meta[..])?;
        warnings.extend(stats.errors);
        items.push(Item::Tree {
            root: abs.display().to_string(),
            files: stats.files,
            dirs: stats.dirs,
            size: stats.bytes,
            meta_size: meta_ref.size,
            meta_chunks: meta_ref.chunks,
        });
    }
    let roots: Vec<String> = items
        .iter()
        .filter_map(|i| {
            if let Item::Tree { root, .. } = i {
                Some(root.clone())
            } else {
                None
            }
        })
        .collect();
    Ok(FeedResult {
        items,
        source: SourceInfo {
            kind: "paths".into(),
            details: serde_json::json!({ "paths": roots }),
        },
        warnings,
    })
}
