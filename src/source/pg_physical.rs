//! PostgreSQL physical base backups: `pg_basebackup` in tar format on its
//! standard output, split file by file as it streams (no temporary copy), so
//! unchanged relation files deduplicate across days (docs/PITR.md).

use super::SourceError;
use super::command::{ChildHandle, CommandSource};
use super::tar_stream::{self, EntryKind};
use crate::engine::postgres::PgConn;
use crate::pipeline::ChunkId;
use crate::repo::tree::{Node, NodeKind, RawPath};
use std::io::{self, Read};

/// Name of the tree's top node (the data directory itself).
pub const ROOT: &str = "pgdata";
/// Entries whose content we also keep in memory to describe the backup.
const KEEP: [&str; 4] = ["backup_label", "backup_manifest", "global/pg_control", "PG_VERSION"];
const KEEP_LIMIT: u64 = 256 << 20;

/// Start `pg_basebackup` writing one tar to stdout, with the WAL it needs
/// fetched into the tar (`-X fetch`), so the base backup alone restores to a
/// consistent state; the password reaches it through the connection's pgpass file.
pub fn spawn(conn: &PgConn, label: &str, handle: &ChildHandle) -> Result<CommandSource, SourceError> {
    let tool = conn.tool("pg_basebackup").map_err(|e| SourceError::Spawn {
        command: "pg_basebackup".into(),
        source: io::Error::new(io::ErrorKind::NotFound, e.to_string()),
    })?;
    let mut cmd = conn.command(&tool);
    cmd.args(["-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast", "--no-password"]);
    cmd.arg(format!("--label={label}"));
    cmd.arg(format!("--dbname={}", conn.conninfo("postgres")));
    // The repository's secrets are none of the child's business.
    crate::child::scrub_tool(&mut cmd);
    CommandSource::spawn_command(cmd, "pg_basebackup -D - -F tar -X fetch", handle)
}

/// What the tar told us about the backup.
#[derive(Debug, Default)]
pub struct BaseFacts {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub backup_label: String,
    pub manifest: Option<serde_json::Value>,
    pub system_identifier: Option<u64>,
    pub major_version: Option<String>,
}

#[derive(Debug)]
pub enum SplitError<E> {
    Tar(io::Error),
    Sink(E),
}

/// Read the tar to its end: each file's content goes to `sink` (which returns
/// its chunk list), each entry becomes a node under [`ROOT`] for `emit`.
pub fn split<R: Read, E>(
    mut r: R,
    sink: &mut dyn FnMut(&mut dyn Read) -> Result<(Vec<ChunkId>, u64), E>,
    emit: &mut dyn FnMut(Node),
) -> Result<BaseFacts, SplitError<E>> {
    let mut facts = BaseFacts::default();
    emit(Node { path: RawPath(ROOT.into()), kind: NodeKind::Dir, mode: 0o700, ..Default::default() });
    while let Some(e) = tar_stream::next_entry(&mut r).map_err(SplitError::Tar)? {
        let path = RawPath([ROOT.as_bytes(), b"/", &e.path].concat());
        let mut node = Node {
            path,
            mode: e.mode,
            mtime_ns: e.mtime.saturating_mul(1_000_000_000),
            uid: Some(e.uid),
            gid: Some(e.gid),
            ..Default::default()
        };
        match e.kind {
            EntryKind::Dir => {
                node.kind = NodeKind::Dir;
                facts.dirs += 1;
            }
            EntryKind::Symlink => {
                node.kind = NodeKind::Symlink;
                node.target = Some(RawPath(e.link.clone()));
            }
            EntryKind::File => {
                let keep = std::str::from_utf8(&e.path).ok().filter(|p| KEEP.contains(p) && e.size <= KEEP_LIMIT);
                let mut content = (&mut r).take(e.size);
                let (chunks, size) = match keep {
                    Some(p) => {
                        let mut buf = Vec::with_capacity(e.size as usize);
                        content.read_to_end(&mut buf).map_err(SplitError::Tar)?;
                        remember(&mut facts, p, &buf);
                        sink(&mut &buf[..]).map_err(SplitError::Sink)?
                    }
                    None => sink(&mut content).map_err(SplitError::Sink)?,
                };
                if size != e.size {
                    return Err(SplitError::Tar(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tar stream: truncated file",
                    )));
                }
                node.size = size;
                node.chunks = chunks;
                facts.files += 1;
                facts.bytes += size;
            }
        }
        tar_stream::finish_entry(&mut r, &e).map_err(SplitError::Tar)?;
        emit(node);
    }
    // Whatever follows the end-of-archive marker (padding) is read so the child can exit.
    io::copy(&mut r, &mut io::sink()).map_err(SplitError::Tar)?;
    Ok(facts)
}

fn remember(facts: &mut BaseFacts, path: &str, data: &[u8]) {
    match path {
        "backup_label" => facts.backup_label = String::from_utf8_lossy(data).into_owned(),
        "backup_manifest" => facts.manifest = serde_json::from_slice(data).ok(),
        "global/pg_control" if data.len() >= 8 => {
            facts.system_identifier = Some(u64::from_le_bytes(data[..8].try_into().unwrap_or_default()));
        }
        "PG_VERSION" => facts.major_version = Some(String::from_utf8_lossy(data).trim().to_string()),
        _ => {}
    }
}

/// One `KEY: value` line of a backup_label.
pub fn label_field<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// The end LSN of the backup's WAL range, from the backup manifest.
pub fn manifest_end_lsn(manifest: &serde_json::Value) -> Option<(u32, String)> {
    let last = manifest.get("WAL-Ranges")?.as_array()?.last()?;
    Some((last.get("Timeline")?.as_u64()? as u32, last.get("End-LSN")?.as_str()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_manifest_fields() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n";
        assert_eq!(label_field(label, "START WAL LOCATION"), Some("0/2000028 (file 000000010000000000000002)"));
        assert_eq!(label_field(label, "START TIMELINE"), Some("1"));
        let m = serde_json::json!({"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100"}]});
        assert_eq!(manifest_end_lsn(&m), Some((1, "0/2000100".to_string())));
    }
}
