//! Restoring PostgreSQL dumps: pg_restore for databases, psql for globals.
//!
//! The target database is created by drtool (with the encoding and locale
//! recorded at backup time), so the dump restores under any name.
//! pg_restore runs with --exit-on-error: a role missing on the target is an
//! error, fixed by restoring globals first or by `?no_owner=true`.
//! `--clean` adds --single-transaction: pg_restore drops the old objects
//! first, and only one transaction lets a failure later on undo those drops.

use super::db::{DatabaseTarget, Replacement, RestoreError, RunningRestore, StreamLoad, TargetState};
use crate::engine::postgres::{PgConn, ident, literal};
use crate::engine::{DbUrl, Engine, EngineError, Password};
use crate::source::db::StreamFormat;

pub struct PostgresTarget {
    conn: PgConn,
    no_owner: bool,
}

impl PostgresTarget {
    pub fn connect(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let conn = PgConn::new(url, password)?;
        conn.query("postgres", "SELECT 1")?;
        let no_owner = url.flag("no_owner")?;
        Ok(PostgresTarget { conn, no_owner })
    }
}

/// Whether a pg_dumpall line creates or alters role `role`. The role drtool
/// connects as is left alone: restoring its old password would lock us out.
fn touches_role(line: &str, role: &str) -> bool {
    let plain = role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let quoted = ident(role);
    [format!("CREATE ROLE {quoted}"), format!("ALTER ROLE {quoted} ")]
        .into_iter()
        .chain(plain.then(|| [format!("CREATE ROLE {role};"), format!("ALTER ROLE {role} ")]).into_iter().flatten())
        .any(|p| line.starts_with(&p))
}

impl DatabaseTarget for PostgresTarget {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn server(&self) -> String {
        self.conn.url.server_url()
    }

    fn state(&self, db: &str) -> Result<TargetState, EngineError> {
        let exists = self
            .conn
            .query("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = {}", literal(db)))?;
        if exists.first().and_then(|r| r.first()).is_none_or(|v| v == "0") {
            return Ok(TargetState::Missing);
        }
        // Objects a restore would collide with: relations, functions and large objects outside system schemas.
        let rows = self.conn.query(
            db,
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%') \
             + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) \
             + (SELECT count(*) FROM pg_largeobject_metadata)",
        )?;
        Ok(TargetState::Exists(rows.first().and_then(|r| r.first()).and_then(|v| v.parse().ok()).unwrap_or(0)))
    }

    fn start(&mut self, load: &StreamLoad) -> Result<RunningRestore, RestoreError> {
        if load.format == StreamFormat::PgGlobals {
            // Roles that already exist make psql report an error and go on, as
            // with `pg_dumpall -g | psql`; only a broken connection fails.
            let mut cmd = self.conn.command(&self.conn.tool("psql")?);
            cmd.args(["-X", "-q"]).arg(format!("--dbname={}", self.conn.conninfo("postgres")));
            let me = self.conn.url.user.clone().unwrap_or_else(|| "postgres".into());
            return Ok(
                RunningRestore::spawn(cmd, "psql (globals)")?.with_filter(Box::new(move |l| !touches_role(l, &me)))
            );
        }
        let db = load.to.as_deref().or(load.from.as_deref()).ok_or_else(|| {
            EngineError::Usage("a pg_dump stream without a database cannot be restored into a server".into())
        })?;
        if load.create {
            let s = |k: &str| load.settings.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", ident(db));
            if let Some(enc) = s("encoding") {
                sql.push_str(&format!(" ENCODING {}", literal(&enc)));
            }
            if let (Some(c), Some(t)) = (s("collate"), s("ctype")) {
                sql.push_str(&format!(" LC_COLLATE {} LC_CTYPE {}", literal(&c), literal(&t)));
            }
            self.conn.query("postgres", &sql)?;
        }
        let mut cmd = self.conn.command(&self.conn.tool("pg_restore")?);
        cmd.arg("--exit-on-error");
        if load.clean {
            // Drops, creates, data and large objects commit together or not at
            // all, so a failed restore leaves the database as it was. (Not
            // combinable with parallel jobs, which drtool does not use.)
            cmd.args(["--clean", "--if-exists", "--single-transaction"]);
        }
        if self.no_owner {
            cmd.args(["--no-owner", "--no-acl"]);
        }
        cmd.arg(format!("--dbname={}", self.conn.conninfo(db)));
        RunningRestore::spawn(cmd, &format!("pg_restore into database {db:?}"))
    }

    fn replacement(&self, _db: &str, _run: &str) -> Replacement {
        Replacement::Transaction
    }

    fn drop_database(&self, db: &str) -> Result<(), EngineError> {
        self.conn.query("postgres", &format!("DROP DATABASE IF EXISTS {}", ident(db))).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::touches_role;

    #[test]
    fn the_connecting_role_is_left_alone() {
        assert!(touches_role("CREATE ROLE postgres;", "postgres"));
        assert!(touches_role("ALTER ROLE postgres WITH SUPERUSER PASSWORD 'SCRAM-SHA-256$x';", "postgres"));
        assert!(!touches_role("ALTER ROLE postgres_app WITH LOGIN;", "postgres"));
        assert!(!touches_role("CREATE ROLE app_owner;", "postgres"));
        assert!(touches_role("ALTER ROLE \"Admin\" WITH LOGIN;", "Admin"));
        assert!(!touches_role("ALTER ROLE admin WITH LOGIN;", "Admin"));
    }
}
