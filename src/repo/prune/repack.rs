//! Repacking: copy the blobs snapshots still need out of mostly-garbage packs
//! into new packs, then index the new packs.
//!
//! Every blob is verified as it is read (pack id, header, AEAD tag, chunk id;
//! DESIGN principle 4) and sealed again under the new pack's key. Nothing old
//! is touched here: the old packs are condemned by the caller only after the
//! new packs and their index file are stored.

use super::checkpoint;
use super::plan::Repack;
use crate::pipeline::{ChunkId, decompress};
use crate::repo::Repository;
use crate::repo::error::{RepoError, Result, chain};
use crate::repo::ids::PackId;
use crate::repo::index::IndexedPack;
use crate::repo::pack::{BLOB_AAD, FinishedPack, PackBuilder, read_header};
use crate::repo::writer::WriterOptions;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Repacked {
    /// Old packs whose keepers were all copied: (pack, stored size).
    pub done: Vec<(PackId, u64)>,
    /// Old packs that could not be read or verified; left alone.
    pub damaged: Vec<String>,
    pub blobs: u64,
    pub new_packs: usize,
    pub new_bytes: u64,
}

/// One verified blob, still encoded (codec byte || payload), ready to seal again.
struct OpenBlob {
    id: ChunkId,
    encoded: Vec<u8>,
    raw_len: u32,
}

pub async fn repack(repo: &Arc<Repository>, work: &[Repack]) -> Result<Repacked> {
    let target = WriterOptions::default().pack_target;
    let capacity = target + repo.settings().chunker.max_size as usize + 4096;
    let mut out = Repacked::default();
    let mut written: Vec<IndexedPack> = Vec::new();
    let mut builder: Option<PackBuilder> = None;
    for r in work {
        let blobs = match open_keepers(repo, r).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("not repacking pack {}: {}", r.pack, chain(&e));
                out.damaged.push(format!("pack {}: {}", r.pack, chain(&e)));
                continue;
            }
        };
        for b in blobs {
            let full = {
                let pb = match builder.as_mut() {
                    Some(pb) => pb,
                    None => builder.insert(PackBuilder::new(&repo.keys().data, capacity)?),
                };
                pb.add(b.id, &b.encoded, b.raw_len as usize)?;
                pb.len() >= target
            };
            out.blobs += 1;
            if full && let Some(pb) = builder.take() {
                written.push(upload(repo, pb.finish()?, &mut out).await?);
            }
        }
        out.done.push((r.pack, r.size));
    }
    if let Some(pb) = builder.take().filter(|pb| !pb.is_empty()) {
        written.push(upload(repo, pb.finish()?, &mut out).await?);
    }
    checkpoint("repack-uploaded");
    // Index after every new pack is stored (FORMAT.md section 7); the old
    // packs are condemned only after this, so a chunk never lacks a live copy.
    if !written.is_empty() {
        repo.write_index(&written).await?;
    }
    checkpoint("repack-indexed");
    Ok(out)
}

async fn upload(repo: &Repository, pack: FinishedPack, out: &mut Repacked) -> Result<IndexedPack> {
    out.new_packs += 1;
    out.new_bytes += pack.bytes.len() as u64;
    repo.store().put(&pack.id.object_name(), pack.bytes).await?;
    Ok(IndexedPack { id: pack.id, salt: pack.salt, blobs: pack.entries })
}

/// Read a whole pack and open its keeper blobs, verifying each.
async fn open_keepers(repo: &Arc<Repository>, r: &Repack) -> Result<Vec<OpenBlob>> {
    let bytes = repo.store().get(&r.pack.object_name()).await?;
    let (repo, r) = (repo.clone(), r.clone());
    tokio::task::spawn_blocking(move || {
        let object = format!("pack {}", r.pack);
        let (key, entries) = read_header(&repo.keys().data, &r.pack, &bytes)?;
        if bytes.get(..r.salt.len()) != Some(&r.salt[..]) {
            return Err(RepoError::corrupt(object, "salt differs from the index"));
        }
        let header: HashMap<ChunkId, _> = entries.iter().map(|e| (e.id, *e)).collect();
        let mut out = Vec::with_capacity(r.keep.len());
        for want in &r.keep {
            if header.get(&want.id) != Some(want) {
                return Err(RepoError::corrupt(object, format!("blob {} differs from the index", want.id)));
            }
            let start = want.offset as usize;
            let sealed = bytes
                .get(start..start.saturating_add(want.length as usize))
                .ok_or_else(|| RepoError::corrupt(object.clone(), "blob out of range"))?;
            let encoded =
                key.open(BLOB_AAD, sealed).map_err(|e| RepoError::seal(format!("{object} blob {}", want.id), e))?;
            let plain = decompress(&encoded, want.raw_len as usize)
                .map_err(|e| RepoError::corrupt(format!("{object} blob {}", want.id), e))?;
            if repo.keys().id.id_of(&plain) != want.id {
                return Err(RepoError::corrupt(
                    format!("{object} blob {}", want.id),
                    "content does not match its chunk id",
                ));
            }
            out.push(OpenBlob { id: want.id, encoded, raw_len: want.raw_len });
        }
        Ok(out)
    })
    .await
    .map_err(|e| RepoError::Pipeline(e.to_string()))?
}
