//! `drtool binlog POLICY`: capture a server's binary log into the repository.
//!
//! `mariadb-binlog` streams into a spool directory; this loop reads each file
//! as it grows, and stores the bytes up to the last complete event at least
//! every `flush_seconds` (and when a file ends) as a new version of that
//! file's catalog record (repo/binlogcat.rs). A version is written only after
//! the index file for its chunks; its predecessor is deleted only after it.
//! So a capture killed at any instant resumes from the newest stored version:
//! it reads that file again from the server, skips what is stored, and goes
//! on, without a gap or a duplicated byte. A file purged on the server before
//! it was copied is reported as a gap, loudly, and capture continues with the
//! oldest file the server still has (docs/PITR.md).

use super::{JobError, shutdown_signal};
use crate::engine::EngineError;
use crate::repo::binlogcat::{self, BinlogRecord, Stored};
use crate::repo::index::Index;
use crate::repo::lock::{self, LockKind};
use crate::repo::snapshot::Snapshot;
use crate::repo::writer::{BackupWriter, WriterOptions};
use crate::repo::{RepoError, Repository};
use crate::source::binlog::{FileScan, next_name, split_name};
use crate::source::binlog_stream::{BinlogServer, ServerLogs, Streamer};
use crate::source::db::DumpError;
use chrono::{DateTime, TimeZone, Utc};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the spool is looked at (cheap: one stat and read per file).
const POLL: Duration = Duration::from_millis(200);
/// Read the spool in blocks of this size.
const READ_BLOCK: usize = 8 << 20;
/// Store early when this much is waiting, so a catch-up stores as it goes.
const STORE_EARLY: u64 = 64 << 20;
/// How long a capture waits for the repository lock before giving up on a round.
const LOCK_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// The capture's name: the policy name, which its base snapshots carry too.
    pub name: String,
    pub flush: Duration,
    pub spool: Option<PathBuf>,
}

/// Binlog coordinates a snapshot's dump streams recorded: (database, file, position, gtid).
pub fn base_coords(s: &Snapshot) -> Vec<(Option<String>, String, u64, Option<String>)> {
    let streams = s.manifest.source.details.get("streams").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    streams
        .iter()
        .filter_map(|st| {
            let f = st.get("facts")?;
            Some((
                st.get("database").and_then(|d| d.as_str()).map(str::to_string),
                f.get("binlog_file")?.as_str()?.to_string(),
                f.get("binlog_position")?.as_u64()?,
                f.get("gtid").and_then(|g| g.as_str()).map(str::to_string),
            ))
        })
        .collect()
}

fn engine(e: EngineError) -> JobError {
    match e {
        EngineError::Usage(m) => JobError::Usage(m),
        other => JobError::Dump(DumpError::Engine(other)),
    }
}

/// Capture until SIGINT/SIGTERM. Server and network failures are retried
/// with backoff; only bad settings (no binary log) and a repository that
/// cannot be opened end it with an error.
pub async fn capture(repo: Arc<Repository>, server: BinlogServer, opts: CaptureOptions) -> Result<(), JobError> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let result = session(&repo, &server, &opts).await;
        match result {
            Ok(()) => return Ok(()),
            Err(e @ JobError::Usage(_)) => return Err(e),
            Err(e) => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!("binlog capture of {}: {e}; starting again in {} s", opts.name, backoff.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown_signal() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// The file being captured.
struct Open {
    file: String,
    seq: u64,
    scan: FileScan,
    /// Bytes read past `scan.end` that do not yet form a complete event.
    carry: Vec<u8>,
    stored: Option<Stored>,
    last_store: Instant,
    last_verify: Instant,
}

impl Open {
    fn new(file: String, stored: Option<Stored>) -> Result<Self, JobError> {
        let seq = split_name(&file).map(|(_, n)| n).ok_or_else(|| bad_name(&file))?;
        let scan = match &stored {
            Some(s) => serde_json::from_value(s.record.scan.clone())
                .map_err(|e| RepoError::corrupt(&s.object, format!("scanner state: {e}")))?,
            None => FileScan::default(),
        };
        Ok(Open { file, seq, scan, carry: Vec::new(), stored, last_store: Instant::now(), last_verify: Instant::now() })
    }

    fn stored_size(&self) -> u64 {
        self.stored.as_ref().map_or(0, |s| s.record.size)
    }

    /// Read what the spool file gained; feed complete events to the scanner.
    fn read_spool(&mut self, path: &Path) -> Result<(), JobError> {
        let Ok(mut f) = std::fs::File::open(path) else { return Ok(()) };
        let io = |e| JobError::Repo(RepoError::io(path.display().to_string(), e));
        loop {
            let from = self.scan.end + self.carry.len() as u64;
            f.seek(SeekFrom::Start(from)).map_err(io)?;
            let mut block = Vec::with_capacity(READ_BLOCK);
            let n = (&mut f).take(READ_BLOCK as u64).read_to_end(&mut block).map_err(io)?;
            self.carry.extend_from_slice(&block);
            let before = self.scan.end;
            self.scan.feed(&self.carry).map_err(|e| JobError::Usage(format!("{}: {e}", self.file)))?;
            self.carry.drain(..(self.scan.end - before) as usize);
            if n < READ_BLOCK || self.scan.complete || self.scan.end - self.stored_size() >= STORE_EARLY {
                return Ok(());
            }
        }
    }
}

fn bad_name(file: &str) -> JobError {
    JobError::Usage(format!("binlog file name {file:?} does not end in a number"))
}

fn time(ts: Option<u32>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| Utc.timestamp_opt(i64::from(t), 0).single())
}

async fn session(repo: &Arc<Repository>, server: &BinlogServer, opts: &CaptureOptions) -> Result<(), JobError> {
    let all = binlogcat::load_all(repo).await?;
    let (files, old) = binlogcat::current(&all, &opts.name);
    for o in &old {
        binlogcat::delete(repo, o).await?;
    }
    let logs = tokio::task::block_in_place(|| server.logs()).map_err(engine)?;
    let bases = repo.list_snapshots().await?;
    let (start, stored) = start_point(&files, &logs, &bases, opts, &server.server());
    let spool_parent = opts.spool.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&spool_parent).map_err(|e| RepoError::io(spool_parent.display().to_string(), e))?;
    let spool = tempfile::Builder::new()
        .prefix("drtool-binlog-")
        .tempdir_in(&spool_parent)
        .map_err(|e| RepoError::io(spool_parent.display().to_string(), e))?;
    tracing::info!(file = %start, resume_at = stored.as_ref().map_or(0, |s| s.record.size), "binlog capture starting");
    let mut streamer = tokio::task::block_in_place(|| server.stream(&start, spool.path())).map_err(engine)?;
    let mut open = Open::new(start, stored)?;
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(POLL) => None,
            sig = shutdown_signal() => Some(sig),
        };
        let exited = streamer.exited();
        tokio::task::block_in_place(|| open.read_spool(&streamer.path_of(&open.file)))?;
        let pending = open.scan.end > open.stored_size();
        let due = open.last_store.elapsed() >= opts.flush || open.scan.end - open.stored_size() >= STORE_EARLY;
        if pending && (due || stop.is_some() || exited.is_some() || open.scan.complete) {
            store(repo, server, &mut open, &streamer, opts).await?;
        } else if !pending && open.stored.is_some() && open.last_verify.elapsed() >= opts.flush {
            // Idle: note that nothing was missing, so restores may target the time since.
            open.last_verify = Instant::now();
            store(repo, server, &mut open, &streamer, opts).await?;
        }
        if let Some(sig) = stop {
            tracing::info!("binlog capture stopped by {sig}");
            return Ok(());
        }
        if let Some(why) = exited {
            return Err(engine(EngineError::Connect { server: server.server(), cause: why }));
        }
        if open.scan.complete && open.scan.end == open.stored_size() {
            let _ = std::fs::remove_file(streamer.path_of(&open.file));
            let next =
                open.scan.next_file.clone().or_else(|| next_name(&open.file)).ok_or_else(|| bad_name(&open.file))?;
            open = Open::new(next, None)?;
        }
    }
}

/// Where to start, and the stored version to resume from. Reports gaps.
fn start_point(
    files: &[Stored],
    logs: &ServerLogs,
    bases: &[Snapshot],
    opts: &CaptureOptions,
    server: &str,
) -> (String, Option<Stored>) {
    let on_server = |f: &str| logs.files.iter().any(|(n, _)| n == f);
    let after =
        |seq: u64| logs.files.iter().find(|(n, _)| split_name(n).is_some_and(|(_, s)| s > seq)).map(|(n, _)| n.clone());
    let Some(last) = files.last() else {
        // A new capture starts at the oldest file a base of this name needs, if the server has it.
        let base = bases
            .iter()
            .filter(|s| s.manifest.name == opts.name)
            .flat_map(base_coords)
            .map(|(_, f, _, _)| f)
            .filter(|f| on_server(f))
            .min_by_key(|f| split_name(f).map_or(u64::MAX, |(_, n)| n));
        return (base.unwrap_or_else(|| logs.current.0.clone()), None);
    };
    let r = &last.record;
    let (want, resume) = if r.complete {
        (r.next_file.clone().or_else(|| next_name(&r.file)).unwrap_or_default(), None)
    } else {
        (r.file.clone(), Some(last.clone()))
    };
    if on_server(&want) {
        return (want, resume);
    }
    let resume_from = after(r.seq).unwrap_or_else(|| logs.current.0.clone());
    let mut missing = vec![if r.complete { want.clone() } else { format!("{} after position {}", r.file, r.size) }];
    let mut next = next_name(&r.file);
    let stop_seq = split_name(&resume_from).map_or(0, |(_, n)| n);
    while let Some(n) = next.filter(|n| split_name(n).is_some_and(|(_, q)| q < stop_seq) && missing.len() < 1000) {
        if n != want {
            missing.push(n.clone());
        }
        next = next_name(&n);
    }
    tracing::error!(
        "BINLOG GAP for {}: {} purged on {server} before it was copied; restores cannot cross this gap: \
         take a new base backup. Capture continues with {resume_from}.",
        opts.name,
        missing.join(", "),
    );
    (resume_from, None)
}

/// Store the bytes read since the last version, as a new version of the file's record.
async fn store(
    repo: &Arc<Repository>,
    server: &BinlogServer,
    open: &mut Open,
    streamer: &Streamer,
    opts: &CaptureOptions,
) -> Result<(), JobError> {
    let from = open.stored_size();
    let len = open.scan.end - from;
    let guard = lock::acquire_wait(repo, LockKind::Shared, "binlog capture", LOCK_WAIT).await?;
    let result = store_locked(repo, server, open, streamer, opts, from, len).await;
    let released = guard.release().await;
    result?;
    released?;
    open.last_store = Instant::now();
    open.last_verify = Instant::now();
    Ok(())
}

async fn store_locked(
    repo: &Arc<Repository>,
    server: &BinlogServer,
    open: &mut Open,
    streamer: &Streamer,
    opts: &CaptureOptions,
    from: u64,
    len: u64,
) -> Result<(), JobError> {
    let mut chunks = open.stored.as_ref().map(|s| s.record.chunks.clone()).unwrap_or_default();
    if len > 0 {
        let wopts = WriterOptions { workers: 1, ..WriterOptions::default() };
        // Binlog bytes are new by nature: no deduplication against the repository,
        // so a chunk a prune has condemned is never reused (docs/PRUNE.md).
        let (writer, mut feeder) = BackupWriter::start(repo.clone(), Arc::new(Index::default()), &wopts)?;
        let path = streamer.path_of(&open.file);
        let fed = tokio::task::block_in_place(|| -> Result<_, RepoError> {
            let mut f = std::fs::File::open(&path).map_err(|e| RepoError::io(path.display().to_string(), e))?;
            f.seek(SeekFrom::Start(from)).map_err(|e| RepoError::io(path.display().to_string(), e))?;
            Ok(feeder.write_stream(f.take(len))?.0)
        });
        let part = match fed {
            Ok(p) if p.size == len => p,
            Ok(p) => {
                writer.abort(Some(feeder)).await;
                return Err(RepoError::Pipeline(format!("{}: read {} of {len} bytes", open.file, p.size)).into());
            }
            Err(e) => {
                writer.abort(Some(feeder)).await;
                return Err(e.into());
            }
        };
        // After this the chunks are stored and indexed; only then does a record name them.
        writer.commit(feeder).await?;
        chunks.extend(part.chunks);
    }
    let checked = Utc::now();
    let logs = tokio::task::block_in_place(|| server.logs()).ok();
    let caught_up = logs.as_ref().is_some_and(|l| l.current == (open.file.clone(), open.scan.end));
    let s = &open.scan;
    let record = BinlogRecord {
        version: binlogcat::RECORD_VERSION,
        name: opts.name.clone(),
        server: server.server(),
        server_id: s.server_id.or(logs.as_ref().map(|l| l.server_id)).unwrap_or(0),
        file: open.file.clone(),
        seq: open.seq,
        size: s.end,
        safe_end: s.safe_end,
        first_time: time(s.first_time),
        last_time: time(s.last_time),
        gtid_start: s.gtid_start.clone().unwrap_or_default(),
        gtid_end: s.gtid_end.clone(),
        first_gtid: s.first_gtid,
        last_gtid: s.last_gtid,
        complete: s.complete,
        next_file: s.next_file.clone(),
        chunks,
        stored_at: Utc::now(),
        verified_at: if caught_up { Some(checked) } else { open.stored.as_ref().and_then(|p| p.record.verified_at) },
        scan: serde_json::to_value(s).map_err(|e| RepoError::Pipeline(e.to_string()))?,
    };
    let object = binlogcat::save(repo, &record).await?;
    // The successor exists: the predecessor may go (readers that miss it list again).
    if let Some(prev) = &open.stored {
        binlogcat::delete(repo, &prev.object).await?;
    }
    tracing::debug!(file = %record.file, size = record.size, "binlog stored");
    open.stored = Some(Stored { object, record });
    Ok(())
}
