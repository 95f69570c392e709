//! Replacing a MySQL / MariaDB database without destroying it first.
//!
//! A clean restore loads the dump into a new *staging* database. Only once
//! the client has exited 0 is the result swapped in:
//!
//! 1. the definitions of the staging database's views, routines, triggers
//!    and events are read (SHOW CREATE ...), and those of the current
//!    database's triggers and views (to put them back if the swap fails);
//! 2. the triggers of both and the current views are dropped: a table with
//!    triggers cannot move to another database (ER_TRG_IN_WRONG_SCHEMA), and
//!    a view shares the table namespace;
//! 3. one `RENAME TABLE` moves every current table to the *old* database and
//!    every staged table into the target. One statement is atomic: all move
//!    or none. Rows are never copied, and never dropped before this point;
//! 4. the current routines and events are dropped, and the staged views,
//!    routines, triggers and events are created in the target from their
//!    definitions (views and events cannot be renamed across databases);
//! 5. the staging and old databases are dropped.
//!
//! A failure before step 3 puts the dropped triggers and views back and
//! leaves the target as it was; the caller then drops the staging database.
//! A failure in step 4 keeps the old database and says so.

use super::db::{RestoreError, RunningRestore};
use crate::engine::mysql::MysqlConn;
use crate::engine::{EngineError, quote_ident, quote_literal};

/// Characters MySQL allows in a database name.
const NAME_LIMIT: usize = 64;
/// What separates a database's name from the staging/old suffix.
const MARK: &str = "__drtool_";
/// Length of a restore's run id (hex).
pub const RUN_ID_LEN: usize = 8;

/// The part of `db` that starts its staging and old names.
fn base(db: &str) -> String {
    let keep = NAME_LIMIT - MARK.len() - "new_".len() - RUN_ID_LEN;
    db.chars().take(keep).collect()
}

/// The staging and old database names for replacing `db` in restore `run`
/// (`RUN_ID_LEN` characters). Both start with (a prefix of) `db` so they sort
/// beside it and leftovers can be found; both fit MySQL's 64-character limit.
pub fn names(db: &str, run: &str) -> (String, String) {
    let b = base(db);
    (format!("{b}{MARK}new_{run}"), format!("{b}{MARK}old_{run}"))
}

/// Databases that an interrupted replace of `db` may have left behind.
pub fn leftovers(conn: &MysqlConn, db: &str) -> Result<Vec<String>, EngineError> {
    let prefix = format!("{}{MARK}", base(db));
    let like = prefix.replace('\\', "\\\\").replace('_', "\\_").replace('%', "\\%");
    let rows = conn.query(
        None,
        &format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE {} ORDER BY SCHEMA_NAME",
            quote_literal(&format!("{like}%"))
        ),
    )?;
    Ok(column(&rows))
}

/// Whether database `db` exists and holds tables or views.
pub fn holds_tables(conn: &MysqlConn, db: &str) -> Result<bool, EngineError> {
    let tables = conn.query(
        None,
        &format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {}", quote_literal(db)),
    )?;
    Ok(column(&tables).first().is_some_and(|n| n != "0"))
}

/// Drop database `db` unless it holds tables (then it holds data someone may
/// need: say so instead).
pub fn drop_unless_tables(conn: &MysqlConn, db: &str) -> Result<(), EngineError> {
    if holds_tables(conn, db)? {
        tracing::warn!("database {db:?} holds tables and is kept");
        return Ok(());
    }
    conn.execute(None, &format!("DROP DATABASE IF EXISTS {}", ident(db)))
}

fn ident(name: &str) -> String {
    quote_ident(name, '`')
}

fn qualified(db: &str, name: &str) -> String {
    format!("{}.{}", ident(db), ident(name))
}

/// A view, routine, trigger or event as SHOW CREATE gives it, with the
/// session settings it was created under.
#[derive(Debug, Clone)]
struct Definition {
    /// VIEW, PROCEDURE, FUNCTION, PACKAGE, PACKAGE BODY, TRIGGER or EVENT.
    kind: String,
    name: String,
    sql_mode: Option<String>,
    time_zone: Option<String>,
    collation_connection: Option<String>,
    create: String,
    /// A view's columns, for its stand-in (views may select from views).
    columns: Vec<String>,
}

/// The objects of one database that the swap moves or recreates.
#[derive(Debug, Default)]
struct Contents {
    tables: Vec<String>,
    views: Vec<Definition>,
    routines: Vec<Definition>,
    triggers: Vec<Definition>,
    events: Vec<Definition>,
}

fn column(rows: &[Vec<Option<String>>]) -> Vec<String> {
    rows.iter().filter_map(|r| r.first().cloned().flatten()).collect()
}

/// One SHOW CREATE row: the columns named by their position for `kind`.
fn show_create(conn: &MysqlConn, db: &str, kind: &str, name: &str) -> Result<Definition, EngineError> {
    // Run inside `db`: views then name their tables without the database, so
    // the definition works in whichever database it is created.
    let rows = conn.query(Some(db), &format!("SHOW CREATE {kind} {}", ident(name)))?;
    let row = rows.into_iter().next().unwrap_or_default();
    let at = |i: usize| row.get(i).cloned().flatten();
    // (create, sql_mode, time_zone, collation_connection) column positions.
    let (create, mode, tz, coll) = match kind {
        "VIEW" => (1, None, None, Some(3)),
        "TRIGGER" => (2, Some(1), None, Some(4)),
        "EVENT" => (3, Some(1), Some(2), Some(5)),
        _ => (2, Some(1), None, Some(4)),
    };
    let create = at(create).ok_or_else(|| EngineError::Query {
        server: conn.url.server_url(),
        what: format!("SHOW CREATE {kind} {}", qualified(db, name)),
        cause: "no definition returned (missing privilege?)".into(),
    })?;
    Ok(Definition {
        kind: kind.to_string(),
        name: name.to_string(),
        sql_mode: mode.and_then(at),
        time_zone: tz.and_then(at),
        collation_connection: coll.and_then(at),
        create,
        columns: vec![],
    })
}

impl Contents {
    /// Read what `db` holds; `all` also reads routines and events (the
    /// current database needs only its tables, views and triggers).
    fn read(conn: &MysqlConn, db: &str, all: bool) -> Result<Contents, EngineError> {
        let l = quote_literal(db);
        let q = |sql: String| conn.query(None, &sql);
        let tables = column(&q(format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {l} AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME"
        ))?);
        let mut c = Contents { tables, ..Contents::default() };
        for v in column(&q(format!(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {l} ORDER BY TABLE_NAME"
        ))?) {
            let mut d = show_create(conn, db, "VIEW", &v)?;
            d.columns = column(&q(format!(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {l} AND TABLE_NAME = {} \
                 ORDER BY ORDINAL_POSITION",
                quote_literal(&v)
            ))?);
            c.views.push(d);
        }
        // In creation order: a trigger's ACTION_ORDER among its table's matters.
        for t in column(&q(format!(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {l} \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
        ))?) {
            c.triggers.push(show_create(conn, db, "TRIGGER", &t)?);
        }
        if !all {
            return Ok(c);
        }
        for r in q(format!(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l} \
             ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
        ))? {
            if let [Some(kind), Some(name)] = r.as_slice() {
                c.routines.push(show_create(conn, db, kind, name)?);
            }
        }
        for e in column(&q(format!(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l} ORDER BY EVENT_NAME"
        ))?) {
            c.events.push(show_create(conn, db, "EVENT", &e)?);
        }
        Ok(c)
    }
}

/// SQL for the client's stdin that creates `defs` in the session's database
/// under their own settings. `;;` delimits, as in mariadb-dump's output the
/// definitions came from.
fn create_script(defs: &[&Definition]) -> String {
    let mut s = String::new();
    for d in defs {
        // The client talks utf8mb4 (--default-character-set), so the text
        // arrives as read; the object keeps its collation and SQL mode.
        let mut set = Vec::new();
        if let Some(c) = &d.collation_connection {
            set.push(format!("collation_connection = {}", quote_literal(c)));
        }
        if let Some(m) = &d.sql_mode {
            set.push(format!("sql_mode = {}", quote_literal(m)));
        }
        if let Some(tz) = &d.time_zone {
            set.push(format!("time_zone = {}", quote_literal(tz)));
        }
        if !set.is_empty() {
            s += &format!("SET {};\n", set.join(", "));
        }
        s += &format!("DELIMITER ;;\n{} ;;\nDELIMITER ;\n", d.create);
    }
    s
}

/// Views in any order: first stand-ins with the right columns, then the real
/// definitions over them (CREATE OR REPLACE), as mariadb-dump does with tables.
fn views_script(views: &[Definition]) -> String {
    let mut s = String::new();
    for v in views {
        let cols: Vec<String> = v.columns.iter().map(|c| format!("1 AS {}", ident(c))).collect();
        let cols = if cols.is_empty() { "1 AS `x`".to_string() } else { cols.join(", ") };
        s += &format!("CREATE VIEW {} AS SELECT {cols};\n", ident(&v.name));
    }
    let real: Vec<Definition> = views
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if let Some(rest) = v.create.strip_prefix("CREATE ") {
                v.create = format!("CREATE OR REPLACE {rest}");
            }
            v
        })
        .collect();
    s + &create_script(&real.iter().collect::<Vec<_>>())
}

fn drop_statement(d: &Definition, db: &str) -> String {
    format!("DROP {} IF EXISTS {};\n", d.kind, qualified(db, &d.name))
}

/// Run a script through the client in database `db`; stops at the first error.
fn run_script(conn: &MysqlConn, db: &str, sql: &str, what: &str) -> Result<(), RestoreError> {
    if sql.is_empty() {
        return Ok(());
    }
    let mut cmd = conn.command(conn.client());
    cmd.args(["--batch", "--default-character-set=utf8mb4"]).arg(format!("--database={db}"));
    let mut running = RunningRestore::spawn(cmd, &format!("mariadb client {what}"))?;
    // A write error means the client exited early; finish() reports why.
    let _ = running.write(sql.as_bytes());
    running.finish()
}

/// The swap, once the staging database holds the complete dump.
pub struct Swap<'a> {
    pub conn: &'a MysqlConn,
    pub db: &'a str,
    pub staging: &'a str,
    pub old: &'a str,
    /// `CHARACTER SET ... COLLATE ...` recorded at backup time, or empty.
    pub charset: String,
}

impl Swap<'_> {
    pub fn run(&self) -> Result<(), RestoreError> {
        let new = Contents::read(self.conn, self.staging, true)?;
        let cur = Contents::read(self.conn, self.db, false)?;
        self.conn.execute(None, &format!("CREATE DATABASE {}", ident(self.old)))?;
        if let Err(e) = self.move_tables(&new, &cur) {
            // Empty unless the rename went through after all (a lost
            // connection): then it holds the only copy of the old tables.
            let _ = drop_unless_tables(self.conn, self.old);
            return Err(e);
        }
        // The snapshot's tables are in place; the old ones are safe in `old`.
        self.finish(&new).map_err(|e| RestoreError::Swap {
            db: self.db.to_string(),
            cause: format!(
                "the snapshot's tables are in place, but recreating its views, routines, triggers or events \
                 failed; the replaced tables are kept in database {:?} and the definitions in {:?}: {e}",
                self.old, self.staging
            ),
        })?;
        for d in [self.staging, self.old] {
            if let Err(e) = self.conn.execute(None, &format!("DROP DATABASE IF EXISTS {}", ident(d))) {
                tracing::warn!("the restore is complete, but dropping database {d:?} failed: {e}");
            }
        }
        Ok(())
    }

    /// Steps 2 and 3; on failure the target is as it was.
    fn move_tables(&self, new: &Contents, cur: &Contents) -> Result<(), RestoreError> {
        let drops: String = new.triggers.iter().map(|t| drop_statement(t, self.staging)).collect();
        run_script(self.conn, self.staging, &drops, "dropping staged triggers")?;
        let cur_drops: String = cur.triggers.iter().chain(&cur.views).map(|d| drop_statement(d, self.db)).collect();
        let moves: Vec<String> = cur
            .tables
            .iter()
            .map(|t| format!("{} TO {}", qualified(self.db, t), qualified(self.old, t)))
            .chain(new.tables.iter().map(|t| format!("{} TO {}", qualified(self.staging, t), qualified(self.db, t))))
            .collect();
        let rename = if moves.is_empty() { String::new() } else { format!("RENAME TABLE {};\n", moves.join(", ")) };
        let result = run_script(self.conn, self.db, &cur_drops, "dropping current triggers and views")
            .and_then(|()| run_script(self.conn, self.db, &rename, "swapping the tables"));
        if let Err(e) = result {
            self.put_back(cur);
            return Err(RestoreError::Swap {
                db: self.db.to_string(),
                cause: format!("swapping the restored tables in failed; the database is unchanged: {e}"),
            });
        }
        Ok(())
    }

    /// Recreate the current triggers and views that a failed swap dropped.
    fn put_back(&self, cur: &Contents) {
        let Ok(now) = Contents::read(self.conn, self.db, false) else { return };
        let missing = |have: &[Definition], d: &Definition| !have.iter().any(|h| h.name == d.name);
        let views: Vec<Definition> = cur.views.iter().filter(|v| missing(&now.views, v)).cloned().collect();
        let triggers: Vec<&Definition> = cur.triggers.iter().filter(|t| missing(&now.triggers, t)).collect();
        let script = views_script(&views) + &create_script(&triggers);
        if let Err(e) = run_script(self.conn, self.db, &script, "restoring the current triggers and views") {
            tracing::error!(
                "database {:?}: could not recreate its triggers and views after a failed swap: {e}",
                self.db
            );
        }
    }

    /// Step 4: the target's own settings and non-table objects.
    fn finish(&self, new: &Contents) -> Result<(), RestoreError> {
        let db = self.db;
        let mut s = String::new();
        if !self.charset.is_empty() {
            s += &format!("ALTER DATABASE {}{};\n", ident(db), self.charset);
        }
        let l = quote_literal(db);
        let old_routines = self.conn.query(
            None,
            &format!("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l}"),
        )?;
        for r in old_routines {
            if let [Some(kind), Some(name)] = r.as_slice() {
                s += &format!("DROP {kind} IF EXISTS {};\n", qualified(db, name));
            }
        }
        let old_events = self
            .conn
            .query(None, &format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l}"))?;
        for e in column(&old_events) {
            s += &format!("DROP EVENT IF EXISTS {};\n", qualified(db, &e));
        }
        // Routines before views (a view may call a function), triggers once
        // their tables are here, events last (they may start running at once).
        s += &create_script(&new.routines.iter().collect::<Vec<_>>());
        s += &views_script(&new.views);
        s += &create_script(&new.triggers.iter().chain(&new.events).collect::<Vec<_>>());
        run_script(self.conn, db, &s, &format!("recreating objects in database {db:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_limit_and_start_with_the_database() {
        let (new, old) = names("shop", "0a1b2c3d");
        assert_eq!(new, "shop__drtool_new_0a1b2c3d");
        assert_eq!(old, "shop__drtool_old_0a1b2c3d");
        let long = "x".repeat(64);
        let (new, old) = names(&long, "0a1b2c3d");
        assert_eq!(new.chars().count(), 64);
        assert!(new.ends_with("__drtool_new_0a1b2c3d") && old.ends_with("__drtool_old_0a1b2c3d"));
        let (new, _) = names(&"é".repeat(60), "0a1b2c3d");
        assert_eq!(new.chars().count(), 64);
    }

    #[test]
    fn scripts_keep_each_objects_settings() {
        let d = Definition {
            kind: "TRIGGER".into(),
            name: "t".into(),
            sql_mode: Some("STRICT_TRANS_TABLES".into()),
            time_zone: None,
            collation_connection: Some("latin1_swedish_ci".into()),
            create: "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW BEGIN SET @a = 1; SET @b = 2; END".into(),
            columns: vec![],
        };
        let s = create_script(&[&d]);
        assert!(s.starts_with("SET collation_connection = 'latin1_swedish_ci', sql_mode = 'STRICT_TRANS_TABLES';\nDELIMITER ;;\nCREATE TRIGGER"), "{s}");
        assert!(s.ends_with("END ;;\nDELIMITER ;\n"), "{s}");
        let v = Definition {
            kind: "VIEW".into(),
            columns: vec!["a".into(), "b`c".into()],
            create: "CREATE ALGORITHM=UNDEFINED VIEW `v` AS select 1".into(),
            name: "v".into(),
            ..d
        };
        let s = views_script(&[v]);
        assert!(s.starts_with("CREATE VIEW `v` AS SELECT 1 AS `a`, 1 AS `b``c`;\n"), "{s}");
        assert!(s.contains("CREATE OR REPLACE ALGORITHM=UNDEFINED VIEW `v`"), "{s}");
    }
}
