//! MongoDB source: `mongodump --archive`, uncompressed so chunks deduplicate.
//!
//! No database in the URL: one archive of the whole deployment, with the
//! oplog when `?oplog=true` (replica-set members; a point-in-time consistent
//! dump). Databases named: one archive per database (mongodump's --oplog
//! cannot be combined with --db). Every archive is validated as it streams
//! past (see `mongo_archive`): a truncated or malformed archive fails the
//! backup even when mongodump exits 0.

use super::command::ChildHandle;
use super::db::{Consumer, DatabaseSource, DumpError, DumpStream, StreamFacts, StreamFormat, run_dump};
use super::mongo_archive::ArchiveValidator;
use crate::engine::mongodb::MongoConn;
use crate::engine::{DbUrl, EngineError, Password, tool_version};
use std::path::PathBuf;

pub struct MongoSource {
    conn: MongoConn,
    mongodump: PathBuf,
    tool_version: Option<String>,
    oplog: bool,
    streams: Vec<DumpStream>,
    /// From the first archive's header.
    server_version: Option<String>,
}

impl MongoSource {
    pub fn prepare(url: &DbUrl, password: &Password) -> Result<Self, DumpError> {
        let oplog = url.flag("oplog")?;
        if oplog && !url.databases.is_empty() {
            return Err(DumpError::Engine(EngineError::Usage(
                "?oplog=true needs the whole deployment: mongodump cannot combine --oplog with a database list".into(),
            )));
        }
        let conn = MongoConn::new(url, password)?;
        let mongodump = conn.tool("mongodump")?;
        let streams = if url.databases.is_empty() {
            vec![DumpStream { name: "all.archive".into(), database: None, format: StreamFormat::MongoArchive }]
        } else {
            url.databases
                .iter()
                .map(|db| DumpStream {
                    name: format!("{db}.archive"),
                    database: Some(db.clone()),
                    format: StreamFormat::MongoArchive,
                })
                .collect()
        };
        let tool_version = tool_version(&mongodump);
        Ok(MongoSource { conn, mongodump, tool_version, oplog, streams, server_version: None })
    }
}

impl DatabaseSource for MongoSource {
    fn streams(&self) -> &[DumpStream] {
        &self.streams
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.conn.url.to_string(),
            "server_version": self.server_version,
            "dump_tool": self.mongodump.display().to_string(),
            "dump_tool_version": self.tool_version,
            "oplog": self.oplog,
        })
    }

    fn dump(&mut self, i: usize, child: &ChildHandle, consume: &mut Consumer<'_>) -> Result<StreamFacts, DumpError> {
        let stream = self.streams[i].clone();
        let cmd = self.conn.dump_command(&self.mongodump, stream.database.as_deref(), self.oplog);
        let display = format!(
            "mongodump of {} on {}",
            stream.database.as_deref().map_or("all databases".to_string(), |d| format!("database {d:?}")),
            self.conn.url.server()
        );
        let validator = run_dump(cmd, &display, child, consume, ArchiveValidator::new)?;
        let summary =
            validator.finish().map_err(|e| DumpError::Invalid { what: display.clone(), reason: e.to_string() })?;
        self.server_version.get_or_insert_with(|| summary.server_version.clone());
        let details = serde_json::json!({
            "server_version": summary.server_version,
            "tool_version": summary.tool_version,
            "archive_format": summary.format_version,
            "collections": summary.collections,
        });
        Ok(StreamFacts { details, counts: summary.documents })
    }
}
