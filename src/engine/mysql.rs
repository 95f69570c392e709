//! MySQL and MariaDB through their own client tools.
//!
//! The password goes into a private option file passed as
//! `--defaults-extra-file` (which the tools require as the first argument);
//! the user's usual option files still apply, so TLS and socket settings in
//! ~/.my.cnf keep working.

use super::{DbUrl, EngineError, Password, SecretDir, find_tool, run_capture};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// Schemas that are the server's own and never dumped as databases.
pub const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];

pub struct MysqlConn {
    pub url: DbUrl,
    client: PathBuf,
    defaults: PathBuf,
    // Holds the option file; removed with the connection.
    _secrets: SecretDir,
}

impl MysqlConn {
    pub fn new(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let client = find_tool(
            url.bin_dir(),
            &["mariadb", "mysql"],
            "install the MariaDB or MySQL client (Debian: apt install mariadb-client)",
        )?;
        let secrets = SecretDir::new()?;
        let mut cnf = String::from("[client]\n");
        if let Some(p) = password.get() {
            cnf.push_str(&format!("password=\"{}\"\n", escape_option(p)));
        }
        let defaults = secrets.write("client.cnf", &cnf)?;
        Ok(MysqlConn { url: url.clone(), client, defaults, _secrets: secrets })
    }

    /// Connection arguments for any MySQL tool (defaults file first, as required).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![format!("--defaults-extra-file={}", self.defaults.display()).into()];
        if let Some(s) = self.url.option("socket") {
            a.push(format!("--socket={s}").into());
        } else if self.url.host != "localhost" {
            // "localhost" keeps the tools' default (the Unix socket), as with the mysql client.
            a.push("--protocol=TCP".into());
            a.push(format!("--host={}", self.url.host).into());
            a.push(format!("--port={}", self.url.port).into());
        }
        if let Some(u) = &self.url.user {
            a.push(format!("--user={u}").into());
        }
        a
    }

    /// A tool with the connection arguments already applied.
    pub fn command(&self, tool: &PathBuf) -> Command {
        let mut c = Command::new(tool);
        crate::child::scrub_tool(&mut c).args(self.args());
        c
    }

    pub fn client(&self) -> &PathBuf {
        &self.client
    }

    /// Run one query and return its rows (batch mode, unescaped; NULL is None).
    pub fn query(&self, db: Option<&str>, sql: &str) -> Result<Vec<Vec<Option<String>>>, EngineError> {
        let mut c = self.command(&self.client);
        c.args(["--batch", "--skip-column-names", "--default-character-set=utf8mb4", "-e", sql]);
        if let Some(db) = db {
            c.arg(format!("--database={db}"));
        }
        let out = run_capture(&mut c, "the MySQL client").map_err(|(cause, _)| self.classify(cause, sql))?;
        Ok(out.lines().map(|l| l.split('\t').map(unescape_field).collect()).collect())
    }

    /// Run SQL statements whose output does not matter.
    pub fn execute(&self, db: Option<&str>, sql: &str) -> Result<(), EngineError> {
        self.query(db, sql).map(|_| ())
    }

    fn classify(&self, cause: String, sql: &str) -> EngineError {
        // 1045 access denied, 2002/2003/2005 cannot reach, 1044/1049 database access or existence.
        let connect = ["ERROR 1045", "ERROR 2002", "ERROR 2003", "ERROR 2005", "ERROR 2013", "ERROR 1130"];
        if connect.iter().any(|c| cause.contains(c)) || cause.starts_with("cannot run") {
            EngineError::Connect { server: self.url.server_url(), cause }
        } else {
            let what = format!("query {:?}", sql.chars().take(80).collect::<String>());
            EngineError::Query { server: self.url.server_url(), what, cause }
        }
    }
}

/// Escape a value for a double-quoted MySQL option file value.
fn escape_option(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o
}

/// Undo the client's batch-mode escaping; the bare word NULL is SQL NULL.
fn unescape_field(f: &str) -> Option<String> {
    if f == "NULL" {
        return None;
    }
    let mut o = String::with_capacity(f.len());
    let mut it = f.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('t') => o.push('\t'),
            Some('n') => o.push('\n'),
            Some('0') => o.push('\0'),
            Some('\\') => o.push('\\'),
            Some(other) => {
                o.push('\\');
                o.push(other);
            }
            None => o.push('\\'),
        }
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_fields_unescape() {
        assert_eq!(unescape_field("a\\tb"), Some("a\tb".into()));
        assert_eq!(unescape_field("x\\\\y\\nz"), Some("x\\y\nz".into()));
        assert_eq!(unescape_field("NULL"), None);
    }

    #[test]
    fn option_values_escape() {
        assert_eq!(escape_option("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn password_goes_to_a_file_not_argv() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in client so the test does not depend on MariaDB being installed.
        let fake = dir.path().join("mariadb");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let url = DbUrl::parse(&format!("mysql://bk@db.example:3307/app?bin_dir={}", dir.path().display())).unwrap();
        let conn = MysqlConn::new(&url, &Password::new("s\"ecret")).unwrap();
        let args: Vec<String> = conn.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args[0].starts_with("--defaults-extra-file="), "{args:?}");
        assert!(args.iter().all(|a| !a.contains("ecret")), "{args:?}");
        assert!(args.contains(&"--host=db.example".to_string()) && args.contains(&"--port=3307".to_string()));
        let file = std::fs::read_to_string(args[0].trim_start_matches("--defaults-extra-file=")).unwrap();
        assert_eq!(file, "[client]\npassword=\"s\\\"ecret\"\n");
    }
}
