//! Database sources: one backup run's dumps of one server, as a list of
//! streams each produced by the engine's own dump tool.
//!
//! A source is prepared first (connect, list databases, read settings: every
//! connection or permission problem surfaces here, before any data moves),
//! then each stream is dumped in turn through a caller-supplied consumer (the
//! job's repository feeder). A stream counts only if its tool exited 0 and the
//! stream passed its format check (a truncated dump is a failed dump).

use super::SourceError;
use super::command::ChildHandle;
use crate::engine::{DbUrl, Engine, EngineError, Password};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// How a stream is restored; recorded per stream in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// One database's SQL, without CREATE DATABASE/USE, so it restores under any name.
    MysqlSql,
    /// Accounts and grants (`mariadb-dump --system=users`).
    MysqlUsers,
    /// `pg_dump -Fc -Z0` of one database.
    PgCustom,
    /// `pg_dumpall --globals-only`: roles and tablespaces.
    PgGlobals,
    /// `mongodump --archive`.
    MongoArchive,
}

impl StreamFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamFormat::MysqlSql => "mysql-sql",
            StreamFormat::MysqlUsers => "mysql-users",
            StreamFormat::PgCustom => "pg-custom",
            StreamFormat::PgGlobals => "pg-globals",
            StreamFormat::MongoArchive => "mongodb-archive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::MysqlSql, Self::MysqlUsers, Self::PgCustom, Self::PgGlobals, Self::MongoArchive]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// One stream a source will produce.
#[derive(Debug, Clone)]
pub struct DumpStream {
    pub name: String,
    pub database: Option<String>,
    pub format: StreamFormat,
}

/// What dumping one stream established.
#[derive(Debug, Clone, Default)]
pub struct StreamFacts {
    /// Per-stream details for the manifest (tool, positions, ...).
    pub details: serde_json::Value,
    /// Row or document counts keyed `database.table` / `database.collection`.
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The dump ran but its output is not a complete, well-formed dump.
    #[error("dump of {what} is not valid: {reason}")]
    Invalid { what: String, reason: String },
    /// The consumer failed; the caller holds the real error.
    #[error("storing the dump failed")]
    Consumer,
}

/// Receives a stream's bytes. An `Err` stops the dump; the consumer keeps
/// its own error for the caller.
pub type Consumer<'a> = dyn FnMut(&mut dyn Read) -> io::Result<()> + 'a;

pub trait DatabaseSource: Send {
    /// The streams this run will produce, in order.
    fn streams(&self) -> &[DumpStream];
    /// Engine-wide details for the manifest (server version, settings).
    fn details(&self) -> serde_json::Value;
    /// Dump stream `i` into `consume`. The child is registered in `child` so an
    /// interrupted run can stop it.
    fn dump(&mut self, i: usize, child: &ChildHandle, consume: &mut Consumer<'_>) -> Result<StreamFacts, DumpError>;
}

/// Connect to the server `url` names and plan its dump.
pub fn prepare(url: &DbUrl, password: &Password) -> Result<Box<dyn DatabaseSource>, DumpError> {
    Ok(match url.engine {
        Engine::Mysql => Box::new(super::mysql::MysqlSource::prepare(url, password)?),
        Engine::Postgres => Box::new(super::postgres::PostgresSource::prepare(url, password)?),
        Engine::Mongodb => Box::new(super::mongodb::MongoSource::prepare(url, password)?),
    })
}

/// Run `cmd` as a dump: its stdout goes through `wrap` (an inspector) into
/// `consume`; then the tool must exit 0. Returns the inspector.
pub(crate) fn run_dump<W: Read>(
    cmd: std::process::Command,
    display: &str,
    child: &ChildHandle,
    consume: &mut Consumer<'_>,
    wrap: impl FnOnce(std::process::ChildStdout) -> W,
) -> Result<W, DumpError> {
    let mut src = super::command::CommandSource::spawn_command(cmd, display, child)?;
    let stdout = src
        .take_stdout()
        .ok_or_else(|| DumpError::Invalid { what: display.to_string(), reason: "the tool has no stdout".into() })?;
    let mut reader = wrap(stdout);
    if consume(&mut reader).is_err() {
        src.kill();
        return Err(DumpError::Consumer);
    }
    // The stream counts only if the tool succeeded; its stderr explains a failure.
    src.finish()?;
    Ok(reader)
}
