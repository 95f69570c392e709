//! Database targets: load a dump stream into a running server with the
//! engine's own restore tool (mariadb client, pg_restore, mongorestore).
//!
//! The job layer decides what goes where and asks for confirmation; a target
//! reports what is already on the server, prepares a database, and runs the
//! restore tool with the verified stream on its stdin.

use crate::engine::{DbUrl, Engine, EngineError, Password};
use crate::source::db::StreamFormat;
use std::io::{self, Write};
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
    #[error("{tool} failed ({status}){}", crate::source::stderr_suffix(.stderr))]
    Failed { tool: String, status: String, stderr: String },
    #[error("cannot start {tool}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
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
    /// For small SQL streams that must be edited: the whole stream is held
    /// and only lines the filter keeps reach the tool.
    filter: Option<(Vec<u8>, LineFilter)>,
    /// The tool stopped reading (it exited early, e.g. on an error).
    input_closed: bool,
}

/// Decides per line (without its newline) whether it reaches the tool.
pub type LineFilter = Box<dyn Fn(&str) -> bool + Send>;

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
        let output = child.stderr.take().map(crate::source::command::keep_tail);
        Ok(RunningRestore { tool: tool.to_string(), child, stdin, output, filter: None, input_closed: false })
    }

    /// Hold the stream and pass only the lines `keep` accepts (for globals).
    pub fn with_filter(mut self, keep: LineFilter) -> Self {
        self.filter = Some((Vec::new(), keep));
        self
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some((held, _)) = &mut self.filter {
            held.extend_from_slice(data);
            return Ok(());
        }
        let r = match &mut self.stdin {
            Some(s) => s.write_all(data),
            None => Err(io::Error::other("restore tool input already closed")),
        };
        if r.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
            self.input_closed = true;
        }
        r
    }

    /// Whether the tool has stopped reading its input; then its own exit
    /// status and stderr explain the failure better than the broken pipe.
    pub fn input_closed(&self) -> bool {
        self.input_closed
    }

    /// Close the input and wait: `Ok` only when the tool exits 0.
    pub fn finish(mut self) -> Result<(), RestoreError> {
        if let Some((held, keep)) = self.filter.take() {
            let text = String::from_utf8_lossy(&held);
            let kept: String = text.split_inclusive('\n').filter(|l| keep(l.trim_end_matches(['\n', '\r']))).collect();
            // A write error means the tool exited early; its status and stderr tell why.
            let _ = self.write(kept.as_bytes());
        }
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|source| RestoreError::Spawn { tool: self.tool.clone(), source })?;
        let out = self.output.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(RestoreError::Failed {
            tool: self.tool.clone(),
            status: crate::source::command::describe(status),
            stderr: String::from_utf8_lossy(&out).into_owned(),
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
