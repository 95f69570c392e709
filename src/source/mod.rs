//! What produces bytes to back up. Sources never touch the store: they hand
//! readers to the caller's feeder.

pub mod binlog;
pub mod binlog_stream;
pub mod command;
pub mod db;
pub mod device;
pub mod exclude;
pub mod mongo_archive;
pub mod mongodb;
pub mod mysql;
pub mod mysql_dump;
pub mod pg_physical;
pub mod postgres;
pub mod snapshot;
pub mod tar_stream;
pub mod tree;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source command {command} failed ({status}){}", stderr_suffix(.stderr))]
    Failed { command: String, status: String, stderr: String },
    #[error("cannot start {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// "; its stderr:\n..." for error messages, or nothing when it is empty.
pub fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() { String::new() } else { format!("; its stderr:\n{t}") }
}
