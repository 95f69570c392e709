//! Drill checks: what is verified once a snapshot has been restored.
//!
//! Built in: row counts against the fingerprints recorded at backup time,
//! MariaDB `CHECK TABLE`, PostgreSQL `amcheck` on B-tree indexes. From the
//! policy: SQL whose first value must equal a text, reach a minimum, or
//! exist. On a cluster every check runs on every node.

use crate::engine::mysql::MysqlConn;
use crate::engine::postgres::{PgConn, ident};
use crate::engine::{DbUrl, EngineError, Password, quote_ident};
use crate::policy::file::DrillCheck;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub duration_ms: u64,
}

impl CheckResult {
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        let status = if ok { Status::Passed } else { Status::Failed };
        CheckResult { name: name.into(), status, detail: detail.into(), duration_ms: 0 }
    }

    pub fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        CheckResult { name: name.into(), status: Status::Skipped, detail: detail.into(), duration_ms: 0 }
    }
}

/// SQL access to one restored server (one node).
pub enum Sql {
    Mysql(MysqlConn),
    Postgres(PgConn),
}

impl Sql {
    pub fn connect(url: &str, password: &Password) -> Result<Sql, EngineError> {
        let u = DbUrl::parse(url)?;
        Ok(match u.engine {
            crate::engine::Engine::Mysql => Sql::Mysql(MysqlConn::new(&u, password)?),
            crate::engine::Engine::Postgres => Sql::Postgres(PgConn::new(&u, password)?),
            crate::engine::Engine::Mongodb => {
                return Err(EngineError::Usage("MongoDB drills need mongosh checks, not SQL".into()));
            }
        })
    }

    /// First row of a query (None: no rows); SQL NULL is None inside.
    pub fn first_row(&self, db: &str, sql: &str) -> Result<Option<Vec<Option<String>>>, EngineError> {
        Ok(match self {
            Sql::Mysql(c) => c.query(Some(db), sql)?.into_iter().next(),
            Sql::Postgres(c) => c.query(db, sql)?.into_iter().next().map(|r| r.into_iter().map(Some).collect()),
        })
    }

    /// Rows of a table named by its fingerprint key (without the database).
    fn count(&self, db: &str, table: &str) -> Result<u64, EngineError> {
        let sql = match self {
            Sql::Mysql(_) => format!("SELECT COUNT(*) FROM {}", quote_ident(table, '`')),
            Sql::Postgres(_) if table == crate::source::postgres::LARGE_OBJECTS => {
                "SELECT count(*) FROM pg_largeobject_metadata".to_string()
            }
            Sql::Postgres(_) => {
                let (schema, name) = table.split_once('.').unwrap_or(("public", table));
                format!("SELECT count(*) FROM ONLY {}.{}", ident(schema), ident(name))
            }
        };
        let v = self.first_row(db, &sql)?.and_then(|r| r.into_iter().next().flatten()).unwrap_or_default();
        v.trim().parse().map_err(|_| EngineError::Usage(format!("count of {table} is not a number: {v:?}")))
    }
}

/// Compare every recorded count of the restored databases. `rename` maps a
/// database in the snapshot to its name on the scratch server.
pub fn row_counts(
    sql: &Sql,
    counts: &BTreeMap<String, u64>,
    rename: &dyn Fn(&str) -> String,
    node: &str,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for (key, want) in counts {
        let Some((db, table)) = key.split_once('.') else { continue };
        let name = format!("rows in {key}{node}");
        out.push(match sql.count(&rename(db), table) {
            Ok(got) if got == *want => CheckResult::new(name, true, format!("{got} rows, as at backup time")),
            Ok(got) => CheckResult::new(name, false, format!("{got} rows restored, {want} recorded at backup time")),
            Err(e) => CheckResult::new(name, false, e.to_string()),
        });
    }
    out
}

/// MariaDB/MySQL: CHECK TABLE on every base table of `db`.
pub fn check_tables(sql: &Sql, db: &str, shown: &str, node: &str) -> CheckResult {
    let name = format!("CHECK TABLE {shown}{node}");
    let Sql::Mysql(c) = sql else { return CheckResult::skipped(name, "not MySQL") };
    let tables = match c.query(
        None,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE'",
            crate::engine::quote_literal(db)
        ),
    ) {
        Ok(rows) => rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect::<Vec<_>>(),
        Err(e) => return CheckResult::new(name, false, e.to_string()),
    };
    if tables.is_empty() {
        return CheckResult::new(name, true, "no tables");
    }
    let list: Vec<String> =
        tables.iter().map(|t| format!("{}.{}", quote_ident(db, '`'), quote_ident(t, '`'))).collect();
    match c.query(None, &format!("CHECK TABLE {}", list.join(", "))) {
        Ok(rows) => {
            // Rows: Table, Op, Msg_type, Msg_text; any error or non-OK status fails.
            let bad: Vec<String> = rows
                .iter()
                .filter(|r| {
                    let kind = r.get(2).cloned().flatten().unwrap_or_default();
                    let text = r.get(3).cloned().flatten().unwrap_or_default();
                    kind == "error" || (kind == "status" && text != "OK")
                })
                .map(|r| r.iter().map(|v| v.clone().unwrap_or_default()).collect::<Vec<_>>().join(" "))
                .collect();
            if bad.is_empty() {
                CheckResult::new(name, true, format!("{} tables OK", tables.len()))
            } else {
                CheckResult::new(name, false, bad.join("; "))
            }
        }
        Err(e) => CheckResult::new(name, false, e.to_string()),
    }
}

/// PostgreSQL: amcheck's bt_index_check on every B-tree index of `db`.
pub fn amcheck(sql: &Sql, db: &str, shown: &str) -> CheckResult {
    let name = format!("amcheck {shown}");
    let Sql::Postgres(c) = sql else { return CheckResult::skipped(name, "not PostgreSQL") };
    if let Err(e) = c.query(db, "CREATE EXTENSION IF NOT EXISTS amcheck") {
        return CheckResult::skipped(name, format!("amcheck is not available: {e}"));
    }
    let q = "SELECT count(*) FROM (SELECT bt_index_check(c.oid) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE am.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_%' AND c.relpersistence <> 't' AND i.indisvalid) s";
    match c.query(db, q) {
        Ok(rows) => {
            let n = rows.first().and_then(|r| r.first()).cloned().unwrap_or_default();
            CheckResult::new(name, true, format!("{n} B-tree indexes verified"))
        }
        Err(e) => CheckResult::new(name, false, e.to_string()),
    }
}

/// A user check from the policy.
pub fn user_check(sql: &Sql, check: &DrillCheck, db: &str, node: &str) -> CheckResult {
    let name = format!("{}{node}", check.name);
    let row = match sql.first_row(db, &check.sql) {
        Ok(r) => r,
        Err(e) => return CheckResult::new(name, false, e.to_string()),
    };
    let value = row.as_ref().and_then(|r| r.first().cloned().flatten());
    if check.rows == Some(true) {
        return match row {
            Some(_) => CheckResult::new(name, true, "returned rows"),
            None => CheckResult::new(name, false, "returned no rows"),
        };
    }
    let shown = value.clone().unwrap_or_else(|| if row.is_some() { "NULL".into() } else { "no rows".into() });
    if let Some(want) = &check.expect {
        let ok = value.as_deref().map(str::trim) == Some(want.trim());
        return CheckResult::new(name, ok, format!("got {shown:?}, expected {want:?}"));
    }
    if let Some(min) = check.min {
        let got = value.as_deref().and_then(|v| v.trim().parse::<f64>().ok());
        return match got {
            Some(g) if g >= min => CheckResult::new(name, true, format!("got {g}, at least {min}")),
            Some(g) => CheckResult::new(name, false, format!("got {g}, expected at least {min}")),
            None => CheckResult::new(name, false, format!("got {shown:?}, expected a number of at least {min}")),
        };
    }
    CheckResult::new(name, false, "the check has no expectation")
}
