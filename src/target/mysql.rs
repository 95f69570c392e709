//! Restoring MySQL / MariaDB dumps with the mariadb (mysql) client.
//!
//! Dump streams carry no CREATE DATABASE / USE, so the client is pointed at
//! the target database, which may have any name. A clean restore of a
//! database that holds objects loads into a staging database and swaps it in
//! only once the load succeeded (mysql_swap.rs): the result is exactly the
//! dump, nothing left over, and a failed load leaves the database as it was.

use super::db::{DatabaseTarget, Replacement, RestoreError, RunningRestore, StreamLoad, TargetState};
use super::mysql_swap::{self, Swap};
use crate::engine::mysql::MysqlConn;
use crate::engine::{DbUrl, Engine, EngineError, Password, quote_ident, quote_literal};
use crate::source::db::StreamFormat;

pub struct MysqlTarget {
    conn: MysqlConn,
}

impl MysqlTarget {
    pub fn connect(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let conn = MysqlConn::new(url, password)?;
        conn.query(None, "SELECT VERSION()")?;
        Ok(MysqlTarget { conn })
    }
}

fn ident(db: &str) -> String {
    quote_ident(db, '`')
}

/// ` CHARACTER SET ... COLLATE ...` as recorded at backup time, or empty.
fn charset(load: &StreamLoad) -> String {
    match (load.settings.get("character_set"), load.settings.get("collation")) {
        (Some(serde_json::Value::String(cs)), Some(serde_json::Value::String(co))) => {
            format!(" CHARACTER SET {} COLLATE {}", quote_literal(cs), quote_literal(co))
        }
        _ => String::new(),
    }
}

impl DatabaseTarget for MysqlTarget {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn server(&self) -> String {
        self.conn.url.server_url()
    }

    fn state(&self, db: &str) -> Result<TargetState, EngineError> {
        let l = quote_literal(db);
        let rows = self.conn.query(
            None,
            &format!(
                "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {l}), \
                 (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {l}) \
                 + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l}) \
                 + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l})"
            ),
        )?;
        let num = |i: usize| -> u64 {
            rows.first().and_then(|r| r.get(i)).cloned().flatten().and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        Ok(if num(0) == 0 { TargetState::Missing } else { TargetState::Exists(num(1)) })
    }

    fn start(&mut self, load: &StreamLoad) -> Result<RunningRestore, RestoreError> {
        let mut cmd = self.conn.command(self.conn.client());
        cmd.args(["--batch", "--default-character-set=utf8mb4"]);
        if load.format == StreamFormat::MysqlUsers {
            // Accounts that already exist are reported and skipped, not fatal.
            cmd.arg("--force");
            return RunningRestore::spawn(cmd, "mariadb client (accounts)");
        }
        let db = load.to.as_deref().or(load.from.as_deref()).ok_or_else(|| {
            EngineError::Usage("a MySQL dump stream without a database cannot be restored into a server".into())
        })?;
        let charset = charset(load);
        if let Some(Replacement::Staged { staging, .. }) = &load.replace {
            self.conn.execute(None, &format!("CREATE DATABASE {}{charset}", ident(staging)))?;
            cmd.arg(format!("--database={staging}"));
            return RunningRestore::spawn(cmd, &format!("mariadb client restoring database {db:?} (into {staging:?})"));
        }
        // An existing but empty database: nothing to lose, recreate it with the recorded settings.
        if load.clean {
            self.conn.execute(None, &format!("DROP DATABASE IF EXISTS {}", ident(db)))?;
        }
        if load.clean || load.create {
            self.conn.execute(None, &format!("CREATE DATABASE {}{charset}", ident(db)))?;
        }
        cmd.arg(format!("--database={db}"));
        RunningRestore::spawn(cmd, &format!("mariadb client restoring database {db:?}"))
    }

    fn replacement(&self, db: &str, run: &str) -> Replacement {
        let (staging, old) = mysql_swap::names(db, run);
        Replacement::Staged { staging, old }
    }

    fn leftovers(&self, db: &str) -> Result<Vec<String>, EngineError> {
        mysql_swap::leftovers(&self.conn, db)
    }

    fn commit(&mut self, load: &StreamLoad) -> Result<(), RestoreError> {
        let (Some(Replacement::Staged { staging, old }), Some(db)) = (&load.replace, &load.to) else {
            return Ok(());
        };
        Swap { conn: &self.conn, db, staging, old, charset: charset(load) }.run()
    }

    fn abandon(&mut self, load: &StreamLoad) -> Result<(), EngineError> {
        match (&load.replace, &load.to) {
            // Once the swap went through (and recreating the objects failed),
            // `old` holds the replaced tables: keep both for the user.
            (Some(Replacement::Staged { staging, old }), _) => {
                if mysql_swap::holds_tables(&self.conn, old)? {
                    return Ok(());
                }
                self.drop_database(old)?;
                self.drop_database(staging)
            }
            (None, Some(db)) if load.create => self.drop_database(db),
            _ => Ok(()),
        }
    }

    fn drop_database(&self, db: &str) -> Result<(), EngineError> {
        self.conn.execute(None, &format!("DROP DATABASE IF EXISTS {}", ident(db)))
    }
}
