//! Database engines as drtool talks to them: connection URLs, passwords handed
//! to the engine's own tools through private files, tool discovery, and small
//! client queries. Shared by `source/` (dumps) and `target/` (restores); it
//! never touches the repository.
//!
//! drtool links no database driver: it runs the engines' own tools
//! (mariadb-dump, pg_dump, mongodump, their restore counterparts and clients),
//! so their consistency guarantees and formats are the ones users know.

pub mod mongodb;
pub mod mysql;
pub mod pg_wal;
pub mod postgres;
mod secret;
mod url;

pub use secret::{Password, SecretDir};
pub use url::{DbUrl, Engine};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A malformed URL or option (a usage error).
    #[error("{0}")]
    Usage(String),
    #[error("none of {tools} found (looked in {looked}); {hint}")]
    ToolMissing { tools: String, looked: String, hint: String },
    /// The server refused us or could not be reached.
    #[error("cannot connect to {server}: {cause}")]
    Connect { server: String, cause: String },
    #[error("{what} on {server} failed: {cause}")]
    Query { server: String, what: String, cause: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io { what: what.into(), source }
    }
}

/// Find the first of `names` in `bin_dir` (when given) or on PATH.
pub fn find_tool(bin_dir: Option<&str>, names: &[&str], hint: &str) -> Result<PathBuf, EngineError> {
    let dirs: Vec<PathBuf> = match bin_dir {
        Some(d) => vec![PathBuf::from(d)],
        None => std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default(),
    };
    for name in names {
        for dir in &dirs {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(EngineError::ToolMissing {
        tools: names.join(" or "),
        looked: bin_dir.map_or_else(|| "PATH".to_string(), str::to_string),
        hint: hint.to_string(),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run a tool to completion and return its stdout; a failure carries its stderr.
pub fn run_capture(cmd: &mut std::process::Command, what: &str) -> Result<String, (String, String)> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| (format!("cannot run {what}: {e}"), String::new()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        return Err((stderr.clone(), stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first line of `tool --version`, e.g. "pg_dump (PostgreSQL) 15.18".
pub fn tool_version(tool: &Path) -> Option<String> {
    let mut c = std::process::Command::new(tool);
    let out = crate::child::scrub_tool(&mut c).arg("--version").stdin(std::process::Stdio::null()).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines().next().map(|l| l.trim().to_string()).filter(|l| !l.is_empty())
}

/// Quote an SQL identifier with backticks (MySQL) or double quotes (PostgreSQL).
pub fn quote_ident(name: &str, q: char) -> String {
    let doubled = format!("{q}{q}");
    format!("{q}{}{q}", name.replace(q, &doubled))
}

/// Quote an SQL string literal (standard: single quotes doubled; backslashes
/// doubled too, which is right for MySQL's default mode and harmless for
/// PostgreSQL's E'' strings, the only place we use it there).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}
