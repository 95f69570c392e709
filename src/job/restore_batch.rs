//! The files of a tree restore, filled a batch at a time.
//!
//! Restoring file by file costs one store request per small file, in series
//! (44 ms each against a Garage server on loopback, hours for a large tree
//! from a remote store). A batch gathers up to [`MAX_FILES`] created files (or
//! [`MAX_BYTES`] of content), plans the reads of all their chunks by pack
//! (repo/restore_plan.rs: neighbouring blobs in one request, several requests
//! in flight, each blob verified before it is written) and writes each chunk
//! where it belongs with positioned writes, leaving zero blocks as holes.
//! A [`FillQueue`] fills up to [`DEPTH`] batches at once while the caller
//! creates the files of the next: a request's latency (and a server's Nagle
//! stall) is then paid once per several batches. Only when every file of a
//! batch is complete does the caller get them back to apply metadata; if
//! anything fails (or the restore is abandoned), every file of the batch is
//! removed, so a damaged snapshot never leaves a plausible-looking but wrong
//! file.

use super::JobError;
use crate::repo::index::Index;
use crate::repo::restore_plan::{Place, ReadPlan};
use crate::repo::tree::Node;
use crate::repo::{RepoError, Repository};
use crate::target::sparse::write_sparse_at;
use crate::target::tree::Placement;
use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Files in a batch. With [`DEPTH`] batches being filled and one being
/// gathered, at most 512 files are open: far below the usual 1024 descriptors.
pub const MAX_FILES: usize = 128;
/// A batch is closed once its files hold this much content (one larger file
/// makes a batch of its own; memory is bounded by the reads, not by this).
pub const MAX_BYTES: u64 = 32 << 20;
/// Batches being filled at once.
pub const DEPTH: usize = 3;

/// A created, still empty file and the node it restores. `path` is the
/// file's temporary name (what a failure removes); `place` puts it at its
/// real name once complete (target/tree.rs: verify first, then replace).
pub struct PendingFile {
    pub path: PathBuf,
    pub file: File,
    pub node: Node,
    pub place: Placement,
}

/// A file whose content is complete and verified, ready for its metadata.
pub struct FilledFile {
    pub path: PathBuf,
    pub file: File,
    pub node: Node,
    pub place: Placement,
    /// Bytes of content (the file's length).
    pub size: u64,
}

#[derive(Default)]
pub struct FileBatch {
    files: Vec<PendingFile>,
    bytes: u64,
}

impl FileBatch {
    pub fn push(&mut self, f: PendingFile) {
        self.bytes += f.node.size;
        self.files.push(f);
    }

    pub fn is_full(&self) -> bool {
        self.files.len() >= MAX_FILES || self.bytes >= MAX_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Write the content of every file of the batch, `permits` limiting the
    /// store reads in flight. On error, or if this future is dropped before it
    /// finishes, every file of the batch is removed.
    async fn fill(
        mut self,
        repo: Arc<Repository>,
        index: Arc<Index>,
        permits: Arc<Semaphore>,
    ) -> Result<Vec<FilledFile>, JobError> {
        let files = std::mem::take(&mut self.files);
        let mut guard = RemoveOnDrop(files.iter().map(|f| f.path.clone()).collect());
        let filled = write_all(&repo, &index, &permits, files).await?;
        guard.0.clear();
        Ok(filled)
    }
}

/// A batch dropped unfilled (the restore failed elsewhere) holds empty files
/// that must not pass for restored ones.
impl Drop for FileBatch {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(&f.path);
        }
    }
}

/// Removes the files of a batch unless their content was completed.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Batches being filled in the background, oldest first. Dropping the queue
/// abandons them (their files are removed).
pub struct FillQueue {
    repo: Arc<Repository>,
    index: Arc<Index>,
    /// Store reads in flight across all batches (memory stays bounded).
    permits: Arc<Semaphore>,
    running: VecDeque<JoinHandle<Result<Vec<FilledFile>, JobError>>>,
}

impl FillQueue {
    pub fn new(repo: &Arc<Repository>, index: &Arc<Index>) -> Self {
        let permits = Arc::new(Semaphore::new(repo.store().read_concurrency().max(1)));
        Self { repo: repo.clone(), index: index.clone(), permits, running: VecDeque::new() }
    }

    /// Start filling `batch`. While more than [`DEPTH`] batches are being
    /// filled, wait for the oldest; returns the files of those that finished.
    pub async fn push(&mut self, batch: FileBatch) -> Result<Vec<FilledFile>, JobError> {
        if !batch.is_empty() {
            let fill = batch.fill(self.repo.clone(), self.index.clone(), self.permits.clone());
            self.running.push_back(tokio::spawn(fill));
        }
        let mut done = Vec::new();
        while self.running.len() > DEPTH {
            done.extend(self.wait_oldest().await?);
        }
        Ok(done)
    }

    /// Wait for every batch; their files, oldest batch first.
    pub async fn drain(&mut self) -> Result<Vec<FilledFile>, JobError> {
        let mut done = Vec::new();
        while !self.running.is_empty() {
            done.extend(self.wait_oldest().await?);
        }
        Ok(done)
    }

    async fn wait_oldest(&mut self) -> Result<Vec<FilledFile>, JobError> {
        match self.running.pop_front() {
            Some(task) => task.await.map_err(|e| RepoError::Pipeline(format!("restore writer: {e}")))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for FillQueue {
    fn drop(&mut self) {
        // An aborted fill drops its RemoveOnDrop guard: no half-written file stays.
        for task in &self.running {
            task.abort();
        }
    }
}

async fn write_all(
    repo: &Arc<Repository>,
    index: &Index,
    permits: &Arc<Semaphore>,
    files: Vec<PendingFile>,
) -> Result<Vec<FilledFile>, JobError> {
    let chunks: Vec<&[crate::pipeline::ChunkId]> = files.iter().map(|f| &f.node.chunks[..]).collect();
    let plan = ReadPlan::new(index, &chunks)?;
    let sizes = plan.sizes().to_vec();
    let (handles, rest): (Vec<(PathBuf, File)>, Vec<(Node, Placement)>) =
        files.into_iter().map(|f| ((f.path, f.file), (f.node, f.place))).unzip();
    let handles = Arc::new(handles);
    let targets = handles.clone();
    let sink = Arc::new(move |place: Place, data: &[u8]| {
        let (path, file) = &targets[place.dest];
        write_sparse_at(file, place.offset, data).map_err(|e| RepoError::io(path.display().to_string(), e))
    });
    plan.execute(repo, permits, sink).await?;
    // Every read has finished, so the sink and its references to the files are gone.
    let handles = Arc::try_unwrap(handles).map_err(|_| RepoError::Pipeline("restore writer still busy".into()))?;
    let mut out = Vec::with_capacity(handles.len());
    tokio::task::block_in_place(|| {
        for (((path, file), (node, place)), size) in handles.into_iter().zip(rest).zip(sizes) {
            // The length is set last: it also creates a trailing hole (and sizes an empty file).
            file.set_len(size).map_err(|e| RepoError::io(place.path().display().to_string(), e))?;
            out.push(FilledFile { path, file, node, place, size });
        }
        Ok::<_, RepoError>(())
    })?;
    Ok(out)
}
