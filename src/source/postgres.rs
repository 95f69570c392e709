//! PostgreSQL source: `pg_dumpall --globals-only` for roles, then one
//! `pg_dump -Fc -Z0` stream per database.
//!
//! Custom format keeps selective restore with pg_restore; no compression
//! keeps unchanged rows byte-identical between nights so chunks deduplicate.
//! For each database drtool opens its own REPEATABLE READ transaction,
//! exports its snapshot, counts every table's rows in it, and hands the
//! snapshot to pg_dump (`--snapshot`): the recorded counts are exactly what
//! the dump holds.

use super::command::ChildHandle;
use super::db::{Consumer, DatabaseSource, DumpError, DumpStream, StreamFacts, StreamFormat, run_dump};
use crate::engine::postgres::PgConn;
use crate::engine::{DbUrl, EngineError, Password, tool_version};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Exact row counts of every user table, in the session's snapshot.
const COUNT_ROWS: &str = "SELECT n.nspname || '.' || c.relname, \
 (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM ONLY %I.%I', n.nspname, c.relname), \
 false, true, '')))[1]::text \
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
 AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
 ORDER BY 1";

/// The key under which a database's large-object count is recorded.
pub const LARGE_OBJECTS: &str = "<large objects>";

pub struct PostgresSource {
    conn: PgConn,
    pg_dump: PathBuf,
    pg_dumpall: PathBuf,
    tool_version: Option<String>,
    server_version: String,
    superuser: bool,
    /// database -> (encoding, collate, ctype)
    settings: BTreeMap<String, (String, String, String)>,
    streams: Vec<DumpStream>,
}

impl PostgresSource {
    pub fn prepare(url: &DbUrl, password: &Password) -> Result<Self, DumpError> {
        let conn = PgConn::new(url, password)?;
        let pg_dump = conn.tool("pg_dump")?;
        let pg_dumpall = conn.tool("pg_dumpall")?;
        // Connect to a database we are backing up when named, else the maintenance database.
        let first = url.databases.first().map_or("postgres", String::as_str);
        let rows = conn.query(
            first,
            "SELECT current_setting('server_version'), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
        )?;
        let row = rows.first().cloned().unwrap_or_default();
        let server_version = row.first().cloned().unwrap_or_default();
        let superuser = row.get(1).is_some_and(|v| v == "t");
        let mut settings = BTreeMap::new();
        for r in conn.query(
            first,
            "SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database \
             WHERE datallowconn AND NOT datistemplate ORDER BY 1",
        )? {
            if let [db, enc, coll, ctype] = r.as_slice() {
                settings.insert(db.clone(), (enc.clone(), coll.clone(), ctype.clone()));
            }
        }
        let databases: Vec<String> = if url.databases.is_empty() {
            settings.keys().cloned().collect()
        } else {
            for db in &url.databases {
                if !settings.contains_key(db) {
                    return Err(DumpError::Engine(EngineError::Query {
                        server: url.server_url(),
                        what: "listing databases".into(),
                        cause: format!("database {db:?} does not exist or does not allow connections"),
                    }));
                }
            }
            url.databases.clone()
        };
        let mut streams =
            vec![DumpStream { name: "globals.sql".into(), database: None, format: StreamFormat::PgGlobals }];
        streams.extend(databases.iter().map(|db| DumpStream {
            name: format!("{db}.pgdump"),
            database: Some(db.clone()),
            format: StreamFormat::PgCustom,
        }));
        let tool_version = tool_version(&pg_dump);
        Ok(PostgresSource { conn, pg_dump, pg_dumpall, tool_version, server_version, superuser, settings, streams })
    }

    fn dump_database(
        &self,
        db: &str,
        child: &ChildHandle,
        consume: &mut Consumer<'_>,
    ) -> Result<StreamFacts, DumpError> {
        let mut session = self.conn.session(db)?;
        session.query("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY;")?;
        let snapshot = first_value(session.query("SELECT pg_export_snapshot();")?);
        let lsn = first_value(session.query(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END;",
        )?);
        let mut counts = BTreeMap::new();
        for r in session.query(COUNT_ROWS)? {
            if let [t, n] = r.as_slice() {
                counts.insert(format!("{db}.{t}"), n.parse().unwrap_or(0));
            }
        }
        let lo = first_value(session.query("SELECT count(*) FROM pg_largeobject_metadata;")?);
        counts.insert(format!("{db}.{LARGE_OBJECTS}"), lo.parse().unwrap_or(0));
        let mut cmd = self.conn.command(&self.pg_dump);
        cmd.args(["--format=custom", "--compress=0"])
            .arg(format!("--snapshot={snapshot}"))
            .arg(format!("--dbname={}", self.conn.conninfo(db)));
        let display = format!("pg_dump of database {db:?} on {}", self.conn.url.server());
        // The session holds the snapshot open until pg_dump has finished.
        let inspector = run_dump(cmd, &display, child, consume, CustomFormatCheck::new)?;
        session.close();
        inspector.finish().map_err(|reason| DumpError::Invalid { what: display, reason })?;
        let details = serde_json::json!({ "snapshot": snapshot, "wal_lsn": lsn });
        Ok(StreamFacts { details, counts })
    }
}

fn first_value(rows: Vec<Vec<String>>) -> String {
    rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or_default()
}

impl DatabaseSource for PostgresSource {
    fn streams(&self) -> &[DumpStream] {
        &self.streams
    }

    fn details(&self) -> serde_json::Value {
        let dbs: BTreeMap<&String, serde_json::Value> = self
            .streams
            .iter()
            .filter_map(|s| s.database.as_ref())
            .filter_map(|db| {
                self.settings.get(db).map(|(enc, coll, ctype)| {
                    (db, serde_json::json!({ "encoding": enc, "collate": coll, "ctype": ctype }))
                })
            })
            .collect();
        serde_json::json!({
            "url": self.conn.url.to_string(),
            "server_version": self.server_version,
            "dump_tool": self.pg_dump.display().to_string(),
            "dump_tool_version": self.tool_version,
            "role_passwords": self.superuser,
            "databases": dbs,
        })
    }

    fn dump(&mut self, i: usize, child: &ChildHandle, consume: &mut Consumer<'_>) -> Result<StreamFacts, DumpError> {
        let stream = self.streams[i].clone();
        if let Some(db) = &stream.database {
            return self.dump_database(db, child, consume);
        }
        let mut cmd = self.conn.command(&self.pg_dumpall);
        cmd.arg("--globals-only");
        if !self.superuser {
            // pg_authid is superuser-only; without it roles are dumped without passwords.
            cmd.arg("--no-role-passwords");
        }
        cmd.arg(format!("--dbname={}", self.conn.conninfo("postgres")));
        let display = format!("pg_dumpall --globals-only on {}", self.conn.url.server());
        let check = run_dump(cmd, &display, child, consume, SqlTrailerCheck::new)?;
        check.finish().map_err(|reason| DumpError::Invalid { what: display, reason })?;
        Ok(StreamFacts { details: serde_json::json!({ "role_passwords": self.superuser }), counts: BTreeMap::new() })
    }
}

/// Checks that a custom-format dump starts with its magic ("PGDMP").
struct CustomFormatCheck<R> {
    inner: R,
    head: Vec<u8>,
    total: u64,
}

impl<R: std::io::Read> CustomFormatCheck<R> {
    fn new(inner: R) -> Self {
        CustomFormatCheck { inner, head: Vec::new(), total: 0 }
    }

    fn finish(self) -> Result<(), String> {
        if !self.head.starts_with(b"PGDMP") {
            return Err(format!("not a pg_dump custom-format archive ({} bytes)", self.total));
        }
        Ok(())
    }
}

impl<R: std::io::Read> std::io::Read for CustomFormatCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.head.len() < 5 {
            let take = (5 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        self.total += n as u64;
        Ok(n)
    }
}

/// Checks that pg_dumpall's SQL ran to its closing comment.
struct SqlTrailerCheck<R> {
    inner: R,
    tail: Vec<u8>,
}

impl<R: std::io::Read> SqlTrailerCheck<R> {
    fn new(inner: R) -> Self {
        SqlTrailerCheck { inner, tail: Vec::new() }
    }

    fn finish(self) -> Result<(), String> {
        let tail = String::from_utf8_lossy(&self.tail);
        if !tail.contains("PostgreSQL database cluster dump complete") {
            return Err("pg_dumpall output lacks its \"dump complete\" trailer: it is truncated".into());
        }
        Ok(())
    }
}

impl<R: std::io::Read> std::io::Read for SqlTrailerCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tail.extend_from_slice(&buf[..n]);
        if self.tail.len() > 4096 {
            self.tail.drain(..self.tail.len() - 256);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn format_checks() {
        let mut c = CustomFormatCheck::new(&b"PGDMP\x01\x0e rest"[..]);
        std::io::copy(&mut c, &mut std::io::sink()).unwrap();
        assert!(c.finish().is_ok());
        let c = CustomFormatCheck::new(&b""[..]);
        assert!(c.finish().is_err());
        let body = "--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE x;\n".repeat(200);
        let done = format!("{body}--\n-- PostgreSQL database cluster dump complete\n--\n\n");
        let mut c = SqlTrailerCheck::new(done.as_bytes());
        let mut buf = [0u8; 7];
        while c.read(&mut buf).unwrap() > 0 {}
        assert!(c.finish().is_ok());
        let mut c = SqlTrailerCheck::new(body.as_bytes());
        std::io::copy(&mut c, &mut std::io::sink()).unwrap();
        assert!(c.finish().unwrap_err().contains("truncated"));
    }
}
