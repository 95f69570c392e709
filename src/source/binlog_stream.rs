//! Streaming a server's binary log into a local spool directory with
//! `mariadb-binlog --read-from-remote-server --raw --stop-never`.
//!
//! In raw mode the tool writes each binlog file under its own name, byte for
//! byte as the server has it (only the "file in use" flag of the first event
//! differs), so offsets in the spool are the server's positions. It always
//! starts at the beginning of a file: asked to start mid-file it would write a
//! new header and shift every offset, so a resumed capture reads the file again
//! from its start and skips what is already stored.

use crate::engine::mysql::MysqlConn;
use crate::engine::{DbUrl, EngineError, Password, find_tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What the server says about its binary logs.
#[derive(Debug, Clone)]
pub struct ServerLogs {
    /// SHOW BINARY LOGS: name and size, oldest first.
    pub files: Vec<(String, u64)>,
    /// SHOW MASTER STATUS: the file being written and its end.
    pub current: (String, u64),
    pub server_id: u32,
}

pub struct BinlogServer {
    conn: MysqlConn,
    tool: PathBuf,
}

impl BinlogServer {
    /// Connect and make sure the server writes a binary log.
    pub fn connect(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let conn = MysqlConn::new(url, password)?;
        let tool = find_tool(
            url.bin_dir(),
            &["mariadb-binlog", "mysqlbinlog"],
            "install the MariaDB client tools (Debian: apt install mariadb-client)",
        )?;
        let rows = conn.query(None, "SELECT @@log_bin")?;
        let on = rows.first().and_then(|r| r.first()).cloned().flatten().is_some_and(|v| v == "1" || v == "ON");
        if !on {
            return Err(EngineError::Usage(format!(
                "binary logging is off on {}: start the server with log_bin (e.g. log_bin = mysql-bin in \
                 [mariadbd]), a unique server_id, and restart it; point-in-time recovery needs the binary log",
                url.server_url()
            )));
        }
        Ok(Self { conn, tool })
    }

    pub fn server(&self) -> String {
        self.conn.url.server_url()
    }

    pub fn logs(&self) -> Result<ServerLogs, EngineError> {
        let files = self
            .conn
            .query(None, "SHOW BINARY LOGS")?
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.as_deref()?.parse().ok()?)))
            .collect();
        let status = self.conn.query(None, "SHOW MASTER STATUS")?;
        let row = status.first().ok_or_else(|| EngineError::Query {
            server: self.server(),
            what: "SHOW MASTER STATUS".into(),
            cause: "no result: is binary logging on?".into(),
        })?;
        let current = (
            row.first().cloned().flatten().unwrap_or_default(),
            row.get(1).cloned().flatten().and_then(|p| p.parse().ok()).unwrap_or(0),
        );
        let id = self.conn.query(None, "SELECT @@server_id")?;
        let server_id = id.first().and_then(|r| r.first()).cloned().flatten().and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(ServerLogs { files, current, server_id })
    }

    /// Start streaming from the beginning of `file` into `spool` (a directory).
    pub fn stream(&self, file: &str, spool: &Path) -> Result<Streamer, EngineError> {
        let mut c: Command = self.conn.command(&self.tool);
        c.args(["--read-from-remote-server", "--raw", "--stop-never"])
            .arg(format!("--result-file={}/", spool.display()))
            .arg("--")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The password is in the defaults file; nothing secret goes to the child's environment.
        crate::child::scrub_tool(&mut c);
        let mut child = c.spawn().map_err(|e| EngineError::io(format!("cannot run {}", self.tool.display()), e))?;
        let stderr = child.stderr.take();
        // Collected on a thread so a chatty tool never blocks on a full pipe.
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = std::io::Read::read_to_string(&mut e, &mut s);
            }
            s
        });
        Ok(Streamer { child, errors: Some(errors), spool: spool.to_path_buf() })
    }
}

/// A running `mariadb-binlog`; killed on drop.
pub struct Streamer {
    child: Child,
    errors: Option<std::thread::JoinHandle<String>>,
    spool: PathBuf,
}

impl Streamer {
    pub fn path_of(&self, file: &str) -> PathBuf {
        self.spool.join(file)
    }

    /// `Some(description)` once the tool has exited (it never does on its own
    /// while the server is up: --stop-never).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => {
                let err = self.errors.take().and_then(|h| h.join().ok()).unwrap_or_default();
                Some(format!("mariadb-binlog exited ({status}): {}", err.trim()))
            }
            Err(e) => Some(format!("cannot wait for mariadb-binlog: {e}")),
        }
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
