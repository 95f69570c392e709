//! Feeding a PostgreSQL physical base backup into one snapshot: one tree item
//! (the data directory, file by file) and the facts point-in-time recovery
//! needs in the manifest (docs/PITR.md).

use super::JobError;
use super::backup::FeedResult;
use crate::engine::pg_wal::{Lsn, segment_name, segno_of};
use crate::engine::postgres::PgConn;
use crate::engine::{DbUrl, Password};
use crate::repo::snapshot::{Item, SourceInfo};
use crate::repo::tree::Node;
use crate::repo::writer::Feeder;
use crate::repo::{RepoError, RepoError as R};
use crate::source::SourceError;
use crate::source::command::ChildHandle;
use crate::source::pg_physical::{self, SplitError, label_field, manifest_end_lsn};

/// The source kind of physical base backups.
pub const KIND: &str = "postgres-physical";

fn query_one(conn: &PgConn, sql: &str) -> Result<Vec<String>, JobError> {
    let rows = conn.query("postgres", sql).map_err(crate::source::db::DumpError::Engine)?;
    Ok(rows.into_iter().next().unwrap_or_default())
}

pub(super) fn feed_physical(
    feeder: &mut Feeder,
    url: &DbUrl,
    password: &Password,
    child: &ChildHandle,
) -> Result<FeedResult, JobError> {
    let conn = PgConn::new(url, password).map_err(crate::source::db::DumpError::Engine)?;
    let before = query_one(&conn, "SELECT current_setting('server_version'), current_setting('wal_segment_size')")?;
    let mut cmd = pg_physical::spawn(&conn, "drtool base backup", child)?;
    let stdout = cmd.take_stdout().ok_or_else(|| RepoError::Pipeline("pg_basebackup has no stdout".into()))?;
    let mut meta = Vec::new();
    let mut emit = |n: Node| {
        // Serialising plain structs to a Vec cannot fail.
        if serde_json::to_writer(&mut meta, &n).is_ok() {
            meta.push(b'\n');
        }
    };
    let mut sink = |r: &mut dyn std::io::Read| feeder.write_stream(r).map(|(s, _)| (s.chunks, s.size));
    let facts = match pg_physical::split(stdout, &mut sink, &mut emit) {
        Ok(f) => f,
        Err(e) => {
            // The child's own error explains a short stream best.
            let why = match e {
                SplitError::Sink(e) => {
                    cmd.kill();
                    return Err(e.into());
                }
                SplitError::Tar(e) => e,
            };
            cmd.finish()?;
            return Err(SourceError::Io { path: "pg_basebackup output".into(), source: why }.into());
        }
    };
    // The backup counts only if pg_basebackup says it completed.
    cmd.finish()?;
    let details = describe(&conn, url, &before, &facts)?;
    let (meta_ref, _) = feeder.write_stream(&meta[..])?;
    let item = Item::Tree {
        root: pg_physical::ROOT.to_string(),
        files: facts.files,
        dirs: facts.dirs,
        size: facts.bytes,
        meta_size: meta_ref.size,
        meta_chunks: meta_ref.chunks,
    };
    Ok(FeedResult {
        items: vec![item],
        source: SourceInfo { kind: KIND.into(), details },
        warnings: vec![],
        fingerprints: serde_json::Value::Null,
    })
}

/// The manifest's source details: what point-in-time recovery needs to know.
fn describe(
    conn: &PgConn,
    url: &DbUrl,
    before: &[String],
    facts: &pg_physical::BaseFacts,
) -> Result<serde_json::Value, JobError> {
    let stop_time = chrono::Utc::now();
    let label = &facts.backup_label;
    if label.is_empty() || facts.system_identifier.is_none() {
        return Err(R::Pipeline("pg_basebackup wrote no backup_label or pg_control; not a base backup".into()).into());
    }
    let seg_size: u64 = before.get(1).and_then(|s| s.parse().ok()).unwrap_or(16 << 20);
    let start_lsn = label_field(label, "START WAL LOCATION").and_then(|v| v.split_whitespace().next()).unwrap_or("");
    let timeline: u32 = label_field(label, "START TIMELINE").and_then(|t| t.parse().ok()).unwrap_or(1);
    let (stop_tli, stop_lsn) = match facts.manifest.as_ref().and_then(manifest_end_lsn) {
        Some(v) => v,
        // No manifest: the server's position after the backup is at or past its end.
        None => (timeline, query_one(conn, "SELECT pg_current_wal_lsn()")?.into_iter().next().unwrap_or_default()),
    };
    let wal = |lsn: &str, tli: u32| Lsn::parse(lsn).map(|l| segment_name(tli, segno_of(l, seg_size), seg_size));
    Ok(serde_json::json!({
        "server": url.server_url(),
        "server_version": before.first(),
        "major_version": facts.major_version,
        "system_identifier": facts.system_identifier.map(|s| s.to_string()),
        "timeline": timeline,
        "stop_timeline": stop_tli,
        "start_lsn": start_lsn,
        "start_wal": wal(start_lsn, timeline),
        "stop_lsn": stop_lsn,
        "stop_wal": wal(&stop_lsn, stop_tli),
        "stop_time": stop_time,
        "wal_segment_size": seg_size,
        "checkpoint_lsn": label_field(label, "CHECKPOINT LOCATION"),
        "backup_label": label,
        "tool": "pg_basebackup -F tar -X fetch",
    }))
}
