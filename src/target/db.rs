//! Database targets: load a dump stream into a running server with the
//! engine's own restore tool (mariadb client, pg_restore, mongorestore).
//!
//! The job layer decides what goes where and asks for confirmation; a target
//! reports what is already on the server, prepares a database, and runs the
//! restore tool with the verified stream on its stdin.

use crate::engine::{DbUrl, Engine, EngineError, Password};
use crate::source::db::StreamFormat;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

/// What a target database holds before the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    Missing,
    /// Exists and holds this many tables / objects (0: empty).
    Exists(u64),
    /// The engine gives no cheap way to tell (MongoDB without a driver).
    Unknown,
}

/// One stream to load.
#[derive(Debug, Clone)]
pub struct StreamLoad {
    pub format: StreamFormat,
    /// Database in the snapshot (None: a whole-deployment or global stream).
    pub from: Option<String>,
    /// Database on the target (None: as in the stream).
    pub to: Option<String>,
    /// Replace objects that exist (`--clean`).
    pub clean: bool,
    /// Create `to` first (it is missing).
    pub create: bool,
    /// Engine settings recorded at backup time (character set, encoding, ...).
    pub settings: serde_json::Value,
    /// Other databases of a whole-deployment stream to include, and renames.
    pub include: Vec<String>,
    pub renames: Vec<(String, String)>,
    /// Replay a MongoDB archive's oplog.
    pub oplog_replay: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{tool} failed ({status}){}", suffix(.stderr))]
    Failed { tool: String, status: String, stderr: String },
    #[error("cannot start {tool}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
}

fn suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() { String::new() } else { format!("; its stderr:\n{t}") }
}

pub trait DatabaseTarget: Send {
    fn engine(&self) -> Engine;
    /// The server, as shown in plans and errors.
    fn server(&self) -> String;
    fn state(&self, db: &str) -> Result<TargetState, EngineError>;
    /// Prepare the database (create, or drop and create for a clean MySQL
    /// restore) and start the restore tool reading the stream from stdin.
    fn start(&mut self, load: &StreamLoad) -> Result<RunningRestore, RestoreError>;
    /// Drop a database this run created, after its restore failed.
    fn drop_database(&self, db: &str) -> Result<(), EngineError>;
}

pub fn connect(url: &DbUrl, password: &Password) -> Result<Box<dyn DatabaseTarget>, EngineError> {
    Ok(match url.engine {
        Engine::Mysql => Box::new(super::mysql::MysqlTarget::connect(url, password)?),
        Engine::Postgres => Box::new(super::postgres::PostgresTarget::connect(url, password)?),
        Engine::Mongodb => Box::new(super::mongodb::MongoTarget::connect(url, password)?),
    })
}

/// A restore tool running with the stream on its stdin.
pub struct RunningRestore {
    tool: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: Option<JoinHandle<Vec<u8>>>,
}

const OUTPUT_KEEP: usize = 64 * 1024;

impl RunningRestore {
    /// Start `cmd`; `tool` names it in errors. Its stdout and stderr are kept
    /// (the tail) for the error message.
    pub fn spawn(mut cmd: Command, tool: &str) -> Result<Self, RestoreError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RestoreError::Spawn { tool: tool.to_string(), source })?;
        let stdin = child.stdin.take();
        let output = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    keep.extend_from_slice(&buf[..n]);
                    if keep.len() > 2 * OUTPUT_KEEP {
                        keep.drain(..keep.len() - OUTPUT_KEEP);
                    }
                }
                keep
            })
        });
        Ok(RunningRestore { tool: tool.to_string(), child, stdin, output })
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.stdin {
            Some(s) => s.write_all(data),
            None => Err(io::Error::other("restore tool input already closed")),
        }
    }

    /// Close the input and wait: `Ok` only when the tool exits 0.
    pub fn finish(mut self) -> Result<(), RestoreError> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|source| RestoreError::Spawn { tool: self.tool.clone(), source })?;
        let out = self.output.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => status.to_string(),
        };
        let start = out.len().saturating_sub(OUTPUT_KEEP);
        Err(RestoreError::Failed {
            tool: self.tool.clone(),
            status,
            stderr: String::from_utf8_lossy(&out[start..]).into_owned(),
        })
    }

    /// Stop the tool without letting it act on a partial stream: it is
    /// killed before its input is closed, so no truncated statement runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
