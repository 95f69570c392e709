//! Reading chunks back: fetch, verify (AEAD tag, then chunk id), decode.
//!
//! Chunks of a stream are fetched several at a time but delivered in order,
//! so restore throughput does not wait on one request at a time.

use super::Repository;
use super::error::{RepoError, Result};
use super::index::Index;
use super::pack::open_blob;
use crate::pipeline::ChunkId;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::sync::Arc;

/// How many chunks are fetched and decoded ahead of the writer.
pub const READ_AHEAD: usize = 8;

/// Fetch and verify one chunk.
pub async fn read_chunk(repo: &Arc<Repository>, index: &Arc<Index>, id: ChunkId) -> Result<Vec<u8>> {
    let (pack, salt, entry) = index.locate(&id).ok_or_else(|| RepoError::MissingChunk { chunk: id.to_hex() })?;
    let sealed = repo.store().get_range(&pack.object_name(), entry.offset, entry.length as u64).await.map_err(|e| {
        if e.is_not_found() { RepoError::corrupt(format!("pack {pack}"), "missing from the store") } else { e.into() }
    })?;
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        let key = repo.keys().data.derive(&salt);
        open_blob(&key, &repo.keys().id, &entry, &sealed, &pack)
    })
    .await
    .map_err(|e| RepoError::Pipeline(e.to_string()))?
}

/// Deliver the plaintext of `chunks`, in order, to `sink`. The sink runs on
/// a blocking-capable thread (it usually writes to a file or stdout).
pub async fn read_stream<F>(repo: &Arc<Repository>, index: &Arc<Index>, chunks: &[ChunkId], mut sink: F) -> Result<u64>
where
    F: FnMut(&[u8]) -> std::io::Result<()>,
{
    let mut total = 0u64;
    let mut s = stream::iter(chunks.iter().copied()).map(|id| read_chunk(repo, index, id)).buffered(READ_AHEAD);
    while let Some(data) = s.try_next().await? {
        total += data.len() as u64;
        tokio::task::block_in_place(|| sink(&data)).map_err(|e| RepoError::io("writing restored data", e))?;
    }
    Ok(total)
}

/// Read a whole (small) stream into memory, e.g. a tree's metadata.
pub async fn read_to_vec(repo: &Arc<Repository>, index: &Arc<Index>, chunks: &[ChunkId]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    read_stream(repo, index, chunks, |d| {
        out.extend_from_slice(d);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Parse a tree's metadata stream into nodes.
pub async fn read_tree(
    repo: &Arc<Repository>,
    index: &Arc<Index>,
    meta_chunks: &[ChunkId],
) -> Result<Vec<super::tree::Node>> {
    let bytes = read_to_vec(repo, index, meta_chunks).await?;
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).map_err(|e| RepoError::corrupt("tree metadata", e)))
        .collect()
}
