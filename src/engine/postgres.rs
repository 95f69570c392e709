//! PostgreSQL through its own tools (psql, pg_dump, pg_dumpall, pg_restore).
//!
//! Connections are libpq conninfo strings passed as `--dbname=`; the password
//! reaches the tools through a private pgpass file named by PGPASSFILE.

use super::{DbUrl, EngineError, Password, SecretDir, find_tool, run_capture};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

/// Field separator for psql output (ASCII unit separator: never in names we read).
const SEP: char = '\x1f';
const END_MARKER: &str = "__drtool_end_of_result__";

pub struct PgConn {
    pub url: DbUrl,
    passfile: Option<PathBuf>,
    _secrets: SecretDir,
}

impl PgConn {
    pub fn new(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let secrets = SecretDir::new()?;
        let passfile = match password.get() {
            Some(p) => Some(secrets.write("pgpass", &format!("*:*:*:*:{}\n", escape_pgpass(p)))?),
            None => None,
        };
        Ok(PgConn { url: url.clone(), passfile, _secrets: secrets })
    }

    pub fn tool(&self, name: &str) -> Result<PathBuf, EngineError> {
        find_tool(
            self.url.bin_dir(),
            &[name],
            "install the PostgreSQL client tools (Debian: apt install postgresql-client)",
        )
    }

    /// The libpq connection string for database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        let mut parts = vec![
            format!("host={}", quote_conninfo(&self.url.host)),
            format!("port={}", self.url.port),
            format!("dbname={}", quote_conninfo(db)),
            "connect_timeout=15".to_string(),
        ];
        if let Some(u) = &self.url.user {
            parts.push(format!("user={}", quote_conninfo(u)));
        }
        if let Some(m) = self.url.option("sslmode") {
            parts.push(format!("sslmode={}", quote_conninfo(m)));
        }
        parts.join(" ")
    }

    /// A tool with the password file in its environment; the caller adds `--dbname`.
    pub fn command(&self, tool: &PathBuf) -> Command {
        let mut c = Command::new(tool);
        crate::child::scrub_tool(&mut c);
        if let Some(p) = &self.passfile {
            c.env("PGPASSFILE", p);
        }
        // Ours decides; a password in the environment would override the file.
        c.env_remove("PGPASSWORD");
        c
    }

    fn psql(&self, db: &str) -> Result<Command, EngineError> {
        let mut c = self.command(&self.tool("psql")?);
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F"]).arg(SEP.to_string());
        c.arg(format!("--dbname={}", self.conninfo(db)));
        Ok(c)
    }

    /// Run SQL in database `db` and return its rows.
    pub fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>, EngineError> {
        let mut c = self.psql(db)?;
        c.arg("-c").arg(sql);
        let out = run_capture(&mut c, "psql").map_err(|(cause, _)| self.classify(db, cause, sql))?;
        Ok(split_rows(&out))
    }

    fn classify(&self, db: &str, cause: String, sql: &str) -> EngineError {
        let connect = [
            "connection to server",
            "could not connect",
            "password authentication failed",
            "no password supplied",
            "does not exist",
            "cannot run",
        ];
        if connect.iter().any(|c| cause.contains(c)) && !cause.contains("ERROR:") {
            EngineError::Connect { server: format!("{} database {db:?}", self.url.server_url()), cause }
        } else {
            let what = format!("query {:?} in database {db:?}", sql.chars().take(80).collect::<String>());
            EngineError::Query { server: self.url.server_url(), what, cause }
        }
    }

    /// A psql session kept open across several queries (for exported snapshots).
    pub fn session(&self, db: &str) -> Result<PgSession, EngineError> {
        let mut c = self.psql(db)?;
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| EngineError::io("cannot start psql", e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(EngineError::io("psql", std::io::Error::other("no pipes")));
        };
        // Drained while the session lives: psql blocked on a full stderr pipe
        // (NOTICEs, warnings) would never answer the next query.
        let stderr = child.stderr.take().map(crate::child::keep_tail);
        Ok(PgSession {
            child: Some(child),
            stderr,
            stdin,
            stdout: BufReader::new(stdout),
            server: self.url.server_url(),
            db: db.to_string(),
        })
    }
}

pub struct PgSession {
    child: Option<Child>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    server: String,
    db: String,
}

impl PgSession {
    /// Run SQL and read its rows; an error ends the session (ON_ERROR_STOP).
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>, EngineError> {
        let term = if sql.trim_end().ends_with(';') { "" } else { ";" };
        let script = format!("{sql}{term}\n\\echo {END_MARKER}\n");
        let written = self.stdin.write_all(script.as_bytes()).and_then(|_| self.stdin.flush());
        let mut out = String::new();
        let mut line = String::new();
        let mut complete = false;
        if written.is_ok() {
            while self.stdout.read_line(&mut line).unwrap_or(0) > 0 {
                if line.trim_end_matches('\n') == END_MARKER {
                    complete = true;
                    break;
                }
                out.push_str(&line);
                line.clear();
            }
        }
        if !complete {
            return Err(self.failure(sql));
        }
        Ok(split_rows(&out))
    }

    fn failure(&mut self, sql: &str) -> EngineError {
        let stderr = match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                let tail = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
                String::from_utf8_lossy(&tail).trim().to_string()
            }
            None => "the session had already failed".to_string(),
        };
        if stderr.contains("ERROR:") {
            let what = format!("query {:?} in database {:?}", sql.chars().take(80).collect::<String>(), self.db);
            EngineError::Query { server: self.server.clone(), what, cause: stderr }
        } else {
            EngineError::Connect { server: format!("{} database {:?}", self.server, self.db), cause: stderr }
        }
    }

    /// End the session, rolling back whatever it holds open.
    pub fn close(mut self) {
        let _ = self.stdin.write_all(b"ROLLBACK;\n\\q\n");
        let _ = self.stdin.flush();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn split_rows(out: &str) -> Vec<Vec<String>> {
    out.lines().filter(|l| !l.is_empty()).map(|l| l.split(SEP).map(str::to_string).collect()).collect()
}

/// A conninfo value in single quotes (backslash and quote escaped).
fn quote_conninfo(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A pgpass field: backslash and colon escaped.
fn escape_pgpass(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

/// An SQL identifier in double quotes.
pub fn ident(name: &str) -> String {
    super::quote_ident(name, '"')
}

/// An SQL string literal that means the same whatever standard_conforming_strings says.
pub fn literal(s: &str) -> String {
    format!("E{}", super::quote_literal(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_conninfo("it's a\\b"), "'it\\'s a\\\\b'");
        assert_eq!(escape_pgpass("a:b\\c"), "a\\:b\\\\c");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("o'k\\"), "E'o''k\\\\'");
    }
}
