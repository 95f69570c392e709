//! The parallel backup pipeline.
//!
//! ```text
//! feeder (caller's blocking thread): read -> chunk -> id -> dedup
//!    --bounded--> workers (one per core): compress -> seal -> own PackBuilder
//!    --bounded--> uploader (async): put packs, at most N at once
//! ```
//! Every channel is bounded, so a slow store stalls the reader instead of
//! growing memory. Each worker owns its pack, so blobs are sealed with their
//! pack's key without any cross-thread hand-off. Index entries exist only for
//! packs whose `put` returned, and the index file is written by `commit` after
//! all uploads finished; the caller writes the snapshot after that.

use super::Repository;
use super::error::{RepoError, Result};
use super::ids::IndexId;
use super::index::{Index, IndexedPack};
use super::pack::{FinishedPack, PackBuilder};
use crate::pipeline::{ChunkId, Chunker, compress};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub compression_level: i32,
    pub workers: usize,
    pub pack_target: usize,
    /// Packs uploaded at once; `None` asks the store.
    pub upload_concurrency: Option<usize>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Level 3: see docs/DECISIONS.md for the measurements behind it.
        Self { compression_level: 3, workers: cores, pack_target: 16 << 20, upload_concurrency: None }
    }
}

/// Live counters, readable while the backup runs (progress bars, summaries).
#[derive(Debug, Default)]
pub struct WriteStats {
    pub bytes_read: AtomicU64,
    pub bytes_new: AtomicU64,
    pub bytes_stored: AtomicU64,
    pub chunks: AtomicU64,
    pub chunks_new: AtomicU64,
    pub packs: AtomicU64,
    /// File bytes not read because the parent snapshot vouched for them.
    pub bytes_unchanged: AtomicU64,
}

impl WriteStats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Result of feeding one stream: its chunk list in order.
#[derive(Debug, Clone, Default)]
pub struct StreamRef {
    pub chunks: Vec<ChunkId>,
    pub size: u64,
}

struct Job {
    id: ChunkId,
    data: Vec<u8>,
}

/// The part of the pipeline that runs on the caller's blocking thread.
pub struct Feeder {
    repo: Arc<Repository>,
    known: Arc<Index>,
    seen: HashSet<ChunkId>,
    tx: Option<Sender<Job>>,
    stats: Arc<WriteStats>,
    failed: Arc<AtomicBool>,
    /// Set from outside to make the reading stop at the next chunk.
    cancelled: Arc<AtomicBool>,
    /// The chunker's buffer, kept between streams.
    buf: Vec<u8>,
}

impl Feeder {
    /// Read `source` to its end, chunk it and queue new chunks. Always reads
    /// the whole stream: streams are never skipped on metadata.
    pub fn write_stream<R: Read>(&mut self, source: R) -> Result<(StreamRef, R)> {
        let buf = std::mem::take(&mut self.buf);
        let mut chunker =
            Chunker::with_buffer(source, self.repo.settings().chunker, self.repo.keys().chunker_seed, buf);
        let mut out = StreamRef::default();
        while let Some(data) = chunker.next_chunk().map_err(|e| RepoError::io("reading input", e))? {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(RepoError::Pipeline("reading was cancelled".into()));
            }
            out.size += data.len() as u64;
            out.chunks.push(self.add_chunk(data)?);
        }
        let (source, buf) = chunker.into_parts();
        self.buf = buf;
        Ok((out, source))
    }

    /// Store one chunk (deduplicated) and return its id.
    pub fn add_chunk(&mut self, data: Vec<u8>) -> Result<ChunkId> {
        let id = self.repo.keys().id.id_of(&data);
        WriteStats::add(&self.stats.bytes_read, data.len() as u64);
        WriteStats::add(&self.stats.chunks, 1);
        // `reusable`, not `contains`: a chunk whose only copies a prune has
        // condemned is stored again (docs/PRUNE.md, hazard 1).
        if !self.known.reusable(&id) && self.seen.insert(id) {
            WriteStats::add(&self.stats.chunks_new, 1);
            WriteStats::add(&self.stats.bytes_new, data.len() as u64);
            let tx = self.tx.as_ref().ok_or_else(|| RepoError::Pipeline("feeder closed".into()))?;
            if tx.send(Job { id, data }).is_err() || self.failed.load(Ordering::Relaxed) {
                return Err(RepoError::Pipeline("a pipeline stage failed".into()));
            }
        }
        Ok(id)
    }

    pub fn stats(&self) -> &Arc<WriteStats> {
        &self.stats
    }

    /// A flag that, once set, makes `write_stream` fail at the next chunk, so
    /// an interrupted run can stop a reader that holds a file-system snapshot.
    pub fn canceller(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    /// Whether every chunk is already stored (so a chunk list may be reused as is).
    pub fn has_all(&self, chunks: &[ChunkId]) -> bool {
        chunks.iter().all(|c| self.known.reusable(c) || self.seen.contains(c))
    }

    /// Account for file contents reused from a parent snapshot without reading.
    pub fn note_unchanged(&self, bytes: u64) {
        WriteStats::add(&self.stats.bytes_unchanged, bytes);
    }
}

/// Owns the worker threads and the uploader; `commit` or `abort` consumes it.
pub struct BackupWriter {
    repo: Arc<Repository>,
    workers: Vec<std::thread::JoinHandle<Result<()>>>,
    uploader: tokio::task::JoinHandle<Result<Vec<IndexedPack>>>,
    stats: Arc<WriteStats>,
}

impl BackupWriter {
    /// Start the pipeline. Must be called inside the tokio runtime.
    pub fn start(repo: Arc<Repository>, known: Arc<Index>, opts: &WriterOptions) -> Result<(Self, Feeder)> {
        let stats = Arc::new(WriteStats::default());
        let failed = Arc::new(AtomicBool::new(false));
        let workers_n = opts.workers.max(1);
        let (job_tx, job_rx) = bounded::<Job>(2 * workers_n);
        let (pack_tx, pack_rx) = mpsc::channel::<FinishedPack>(1);
        let concurrency = opts.upload_concurrency.unwrap_or_else(|| repo.store().upload_concurrency()).max(1);
        let uploader = tokio::spawn(upload_loop(repo.clone(), pack_rx, concurrency, stats.clone(), failed.clone()));
        let mut workers = Vec::with_capacity(workers_n);
        for i in 0..workers_n {
            let (rx, tx, repo, failed) = (job_rx.clone(), pack_tx.clone(), repo.clone(), failed.clone());
            let (level, target) = (opts.compression_level, opts.pack_target);
            let h = std::thread::Builder::new()
                .name(format!("drtool-pack-{i}"))
                .spawn(move || {
                    let r = pack_worker(&repo, rx, tx, level, target);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .map_err(|e| RepoError::io("starting worker thread", e))?;
            workers.push(h);
        }
        let feeder = Feeder {
            repo: repo.clone(),
            known,
            seen: HashSet::new(),
            tx: Some(job_tx),
            stats: stats.clone(),
            failed,
            cancelled: Arc::new(AtomicBool::new(false)),
            buf: Vec::new(),
        };
        Ok((Self { repo, workers, uploader, stats }, feeder))
    }

    pub fn stats(&self) -> &Arc<WriteStats> {
        &self.stats
    }

    /// Wait for workers and uploads (the feeder must have been dropped).
    async fn drain(self) -> Result<(Arc<Repository>, Vec<IndexedPack>)> {
        let workers = self.workers;
        let worker_result = tokio::task::spawn_blocking(move || {
            let mut first = Ok(());
            for w in workers {
                let r = w.join().unwrap_or_else(|_| Err(RepoError::Pipeline("worker thread panicked".into())));
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
        .await
        .map_err(|e| RepoError::Pipeline(e.to_string()))?;
        let uploaded = self.uploader.await.map_err(|e| RepoError::Pipeline(e.to_string()))?;
        // An upload error explains a worker's "uploader gone" error, so report it first.
        let packs = uploaded?;
        worker_result?;
        Ok((self.repo, packs))
    }

    /// Finish all packs and write the index file for them. After this returns,
    /// every chunk the feeder handed out is durably stored and indexed.
    pub async fn commit(self, feeder: Feeder) -> Result<(Option<IndexId>, Arc<WriteStats>)> {
        drop(feeder);
        let stats = self.stats.clone();
        let (repo, packs) = self.drain().await?;
        let index = if packs.is_empty() { None } else { Some(repo.write_index(&packs).await?) };
        Ok((index, stats))
    }

    /// Stop without writing an index: stored packs become garbage for prune.
    pub async fn abort(self, feeder: Option<Feeder>) {
        drop(feeder);
        if let Err(e) = self.drain().await {
            tracing::debug!("pipeline error during abort: {e}");
        }
    }
}

fn pack_worker(
    repo: &Repository,
    rx: Receiver<Job>,
    tx: mpsc::Sender<FinishedPack>,
    level: i32,
    target: usize,
) -> Result<()> {
    let data_key = &repo.keys().data;
    let capacity = target + (repo.settings().chunker.max_size as usize) + 4096;
    let mut pack: Option<PackBuilder> = None;
    let send = |p: PackBuilder| -> Result<()> {
        tx.blocking_send(p.finish()?).map_err(|_| RepoError::Pipeline("uploader stopped".into()))
    };
    for job in rx {
        let encoded = compress(level, &job.data);
        let builder = match pack.as_mut() {
            Some(b) => b,
            None => pack.insert(PackBuilder::new(data_key, capacity)?),
        };
        builder.add(job.id, &encoded, job.data.len())?;
        if builder.len() >= target {
            if let Some(full) = pack.take() {
                send(full)?;
            }
        }
    }
    match pack {
        Some(p) if !p.is_empty() => send(p),
        _ => Ok(()),
    }
}

async fn upload_loop(
    repo: Arc<Repository>,
    mut rx: mpsc::Receiver<FinishedPack>,
    concurrency: usize,
    stats: Arc<WriteStats>,
    failed: Arc<AtomicBool>,
) -> Result<Vec<IndexedPack>> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut inflight: JoinSet<Result<()>> = JoinSet::new();
    let result = async {
        while let Some(pack) = rx.recv().await {
            while inflight.len() >= concurrency {
                if let Some(r) = inflight.join_next().await {
                    r.map_err(|e| RepoError::Pipeline(e.to_string()))??;
                }
            }
            let (repo, done, stats) = (repo.clone(), done.clone(), stats.clone());
            inflight.spawn(async move {
                let size = pack.bytes.len() as u64;
                repo.store().put(&pack.id.object_name(), pack.bytes).await?;
                WriteStats::add(&stats.bytes_stored, size);
                WriteStats::add(&stats.packs, 1);
                // Recorded only after the put returned: the index never names a missing pack.
                if let Ok(mut d) = done.lock() {
                    d.push(IndexedPack { id: pack.id, salt: pack.salt, blobs: pack.entries });
                }
                Ok(())
            });
        }
        while let Some(r) = inflight.join_next().await {
            r.map_err(|e| RepoError::Pipeline(e.to_string()))??;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        failed.store(true, Ordering::Relaxed);
        // Dropping rx makes workers' sends fail, which stops the feeder.
        return Err(e);
    }
    let packs = done.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default();
    Ok(packs)
}
