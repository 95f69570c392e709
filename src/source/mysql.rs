//! MySQL / MariaDB source: mariadb-dump or mysqldump, one stream per database.
//!
//! Each database is its own stream, dumped without CREATE DATABASE / USE so
//! it can be restored under another name and on its own. Each is consistent
//! in itself (`--single-transaction`); like pg_dump, consistency across
//! databases is not promised (docs/DATABASES.md). With binary logging on,
//! every stream records the binlog coordinates (and MariaDB GTID) of its own
//! snapshot, read from the dump itself.

use super::command::ChildHandle;
use super::db::{Consumer, DatabaseSource, DumpError, DumpStream, StreamFacts, StreamFormat, run_dump};
use super::mysql_dump::DumpInspector;
use crate::engine::mysql::{MysqlConn, SYSTEM_SCHEMAS};
use crate::engine::{DbUrl, EngineError, Password, find_tool, tool_version};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct MysqlSource {
    conn: MysqlConn,
    dump_tool: PathBuf,
    tool_version: Option<String>,
    server_version: String,
    mariadb: bool,
    log_bin: bool,
    /// database -> (character set, collation)
    charsets: BTreeMap<String, (String, String)>,
    /// Base tables not in a transactional engine: not consistent under --single-transaction.
    non_transactional: Vec<String>,
    streams: Vec<DumpStream>,
}

impl MysqlSource {
    pub fn prepare(url: &DbUrl, password: &Password) -> Result<Self, DumpError> {
        let conn = MysqlConn::new(url, password)?;
        let dump_tool = find_tool(
            url.bin_dir(),
            &["mariadb-dump", "mysqldump"],
            "install the MariaDB or MySQL client tools (Debian: apt install mariadb-client)",
        )?;
        let row = conn.query(None, "SELECT VERSION(), @@log_bin")?;
        let row = row.first().ok_or_else(|| query_err(url, "server version", "no result"))?;
        let server_version = row.first().cloned().flatten().unwrap_or_default();
        let log_bin = row.get(1).cloned().flatten().is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("ON"));
        let mariadb = server_version.contains("MariaDB");
        let mut charsets = BTreeMap::new();
        for r in conn.query(
            None,
            "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA",
        )? {
            if let [Some(db), Some(cs), Some(co)] = r.as_slice() {
                charsets.insert(db.clone(), (cs.clone(), co.clone()));
            }
        }
        let databases: Vec<String> = if url.databases.is_empty() {
            charsets.keys().filter(|d| !SYSTEM_SCHEMAS.contains(&d.as_str())).cloned().collect()
        } else {
            for db in &url.databases {
                if !charsets.contains_key(db) {
                    return Err(query_err(url, "listing databases", &format!("database {db:?} does not exist")));
                }
            }
            url.databases.clone()
        };
        let mut non_transactional = Vec::new();
        for r in conn.query(
            None,
            "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND ENGINE NOT IN ('InnoDB', 'Aria', 'ROCKSDB', 'TokuDB')",
        )? {
            if let [Some(db), Some(t), ..] = r.as_slice() {
                if databases.contains(db) {
                    non_transactional.push(format!("{db}.{t}"));
                }
            }
        }
        let mut streams: Vec<DumpStream> = databases
            .iter()
            .map(|db| DumpStream {
                name: format!("{db}.sql"),
                database: Some(db.clone()),
                format: StreamFormat::MysqlSql,
            })
            .collect();
        // Accounts matter when the whole server is backed up; only mariadb-dump can write them as SQL.
        let is_mariadb_dump = dump_tool.file_name().is_some_and(|n| n == "mariadb-dump");
        if url.databases.is_empty() && is_mariadb_dump {
            streams.push(DumpStream { name: "users.sql".into(), database: None, format: StreamFormat::MysqlUsers });
        }
        if streams.is_empty() {
            return Err(query_err(url, "listing databases", "the server has no user databases to back up"));
        }
        let tool_version = tool_version(&dump_tool);
        Ok(MysqlSource {
            conn,
            dump_tool,
            tool_version,
            server_version,
            mariadb,
            log_bin,
            charsets,
            non_transactional,
            streams,
        })
    }

    fn dump_command(&self, stream: &DumpStream) -> std::process::Command {
        let mut c = self.conn.command(&self.dump_tool);
        match (&stream.format, &stream.database) {
            (StreamFormat::MysqlSql, Some(db)) => {
                c.args([
                    "--single-transaction",
                    "--quick",
                    "--routines",
                    "--triggers",
                    "--events",
                    "--hex-blob",
                    "--default-character-set=utf8mb4",
                ]);
                if self.log_bin {
                    c.arg("--master-data=2");
                    if self.mariadb {
                        c.arg("--gtid");
                    }
                }
                // `--` keeps a database named like an option from being read as one.
                c.arg("--").arg(db);
            }
            _ => {
                c.args(["--system=users", "--default-character-set=utf8mb4"]);
            }
        }
        c
    }
}

fn query_err(url: &DbUrl, what: &str, cause: &str) -> DumpError {
    DumpError::Engine(EngineError::Query { server: url.server_url(), what: what.into(), cause: cause.into() })
}

impl DatabaseSource for MysqlSource {
    fn streams(&self) -> &[DumpStream] {
        &self.streams
    }

    fn details(&self) -> serde_json::Value {
        let charsets: BTreeMap<&String, serde_json::Value> = self
            .streams
            .iter()
            .filter_map(|s| s.database.as_ref())
            .filter_map(|db| {
                self.charsets.get(db).map(|(cs, co)| (db, serde_json::json!({ "character_set": cs, "collation": co })))
            })
            .collect();
        serde_json::json!({
            "url": self.conn.url.to_string(),
            "server_version": self.server_version,
            "flavor": if self.mariadb { "mariadb" } else { "mysql" },
            "dump_tool": self.dump_tool.display().to_string(),
            "dump_tool_version": self.tool_version,
            "binary_log": self.log_bin,
            "databases": charsets,
            "non_transactional_tables": self.non_transactional,
        })
    }

    fn dump(&mut self, i: usize, child: &ChildHandle, consume: &mut Consumer<'_>) -> Result<StreamFacts, DumpError> {
        let stream = self.streams[i].clone();
        let display = format!(
            "{} of {} on {}",
            self.dump_tool.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            stream.database.as_deref().map_or("accounts".to_string(), |d| format!("database {d:?}")),
            self.conn.url.server()
        );
        let cmd = self.dump_command(&stream);
        let inspector = run_dump(cmd, &display, child, consume, DumpInspector::new)?;
        let summary = inspector.finish().map_err(|reason| DumpError::Invalid { what: display.clone(), reason })?;
        let counts = match &stream.database {
            Some(db) => summary.tables.iter().map(|(t, n)| (format!("{db}.{t}"), *n)).collect(),
            None => BTreeMap::new(),
        };
        let details = serde_json::json!({
            "tool": summary.tool,
            "server_version": summary.server_version,
            "binlog_file": summary.binlog_file,
            "binlog_position": summary.binlog_position,
            "gtid": summary.gtid,
        });
        Ok(StreamFacts { details, counts })
    }
}
