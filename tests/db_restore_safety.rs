//! `restore --clean` into a database that holds data never destroys it
//! before the new contents are complete: a restore that fails part-way leaves
//! the database exactly as it was (MariaDB: staged load and atomic swap;
//! PostgreSQL: pg_restore --single-transaction). Real private servers from
//! tests/common.
//!
//! The failures are deterministic: on MariaDB the restoring account lacks the
//! right to create objects with another DEFINER, which the dump's first
//! trigger needs (after the tables and rows before it); on PostgreSQL the
//! tables' owner role was dropped after the backup, so pg_restore fails after
//! its DROP statements.

mod common;

use common::mariadb::MariaDb;
use common::postgres::Postgres;
use common::*;
use std::sync::atomic::{AtomicU32, Ordering};

fn fresh(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Rows of a query result, sorted, hashed; an error becomes part of the value
/// (a missing table must show up as a difference, not a panic).
fn digest(out: Result<String, String>) -> String {
    match out {
        Ok(text) => {
            let mut rows: Vec<&str> = text.lines().collect();
            rows.sort_unstable();
            format!("{} rows {}", rows.len(), blake3::hash(rows.join("\n").as_bytes()).to_hex())
        }
        Err(e) => format!("error: {}", e.lines().last().unwrap_or_default()),
    }
}

// ---------------------------------------------------------------- MariaDB

fn my_run(repo: &Repo, user_pw: &str, args: &[&str]) -> Out {
    let mut c = repo.cmd(args);
    c.env("MYSQL_PWD", user_pw);
    run_with_input(c, None)
}

const MY_SCHEMA: &str = r#"
CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL) ENGINE=InnoDB;
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL, amount DECIMAL(10,2),
  FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB;
CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, msg VARCHAR(200)) ENGINE=InnoDB;
INSERT INTO customers (name) SELECT CONCAT('customer ', seq) FROM seq_1_to_500;
INSERT INTO orders (customer_id, amount) SELECT 1 + seq % 500, seq * 1.25 FROM seq_1_to_3000;
CREATE VIEW totals AS SELECT customer_id, SUM(amount) AS total FROM orders GROUP BY customer_id;
CREATE VIEW big AS SELECT customer_id, total FROM totals WHERE total > 3000;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (msg) VALUES (CONCAT('order ', NEW.id));
CREATE FUNCTION order_total(cid INT) RETURNS DECIMAL(12,2) DETERMINISTIC READS SQL DATA
  RETURN (SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = cid);
DELIMITER ;;
CREATE PROCEDURE add_order(IN c INT) BEGIN INSERT INTO orders (customer_id, amount) VALUES (c, 1); SELECT LAST_INSERT_ID(); END ;;
DELIMITER ;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM audit WHERE id < 0;
"#;

/// Everything a clean restore must reproduce, or a failed one keep.
fn my_fingerprint(db: &MariaDb, name: &str) -> Vec<String> {
    let q = |sql: &str| db.try_sql(Some(name), sql);
    let mut f: Vec<String> = ["customers", "orders", "audit"]
        .iter()
        .map(|t| format!("{t}: {}", digest(q(&format!("SELECT * FROM {t}")))))
        .collect();
    f.push(digest(q("SELECT * FROM big")));
    f.push(format!("{:?}", q("SELECT order_total(1), order_total(7)")));
    let list = |what: &str, col: &str, schema: &str| {
        format!(
            "{what}: {:?}",
            db.try_sql(
                None,
                &format!(
                    "SELECT GROUP_CONCAT({col} ORDER BY {col}) FROM information_schema.{what} WHERE {schema} = '{name}'"
                )
            )
        )
    };
    f.push(list("TABLES", "TABLE_NAME", "TABLE_SCHEMA"));
    f.push(list("TRIGGERS", "TRIGGER_NAME", "TRIGGER_SCHEMA"));
    f.push(list("ROUTINES", "ROUTINE_NAME", "ROUTINE_SCHEMA"));
    f.push(list("EVENTS", "EVENT_NAME", "EVENT_SCHEMA"));
    f.push(list("VIEWS", "TABLE_NAME", "TABLE_SCHEMA"));
    f
}

/// Databases drtool created beside `name` and left behind.
fn my_leftovers(db: &MariaDb, name: &str) -> String {
    db.sql(None, &format!("SELECT GROUP_CONCAT(SCHEMA_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{name}\\_\\_drtool%'"))
}

/// A database in state A backed up, then changed to state B in every kind of object.
fn my_backed_up_then_changed(db: &MariaDb, name: &str) -> (Repo, Vec<String>) {
    db.sql(None, &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"));
    db.sql(Some(name), MY_SCHEMA);
    let a = my_fingerprint(db, name);
    let repo = Repo::init();
    my_run(&repo, &db.password, &["backup", "--source", &db.url(name)]).ok();
    db.sql(
        Some(name),
        "INSERT INTO customers (name) VALUES ('after the backup'); DELETE FROM orders WHERE id % 3 = 0; \
         CREATE TABLE added_later (x INT); INSERT INTO added_later VALUES (1); DROP TRIGGER orders_audit; \
         CREATE OR REPLACE VIEW totals AS SELECT customer_id, COUNT(*) AS total FROM orders GROUP BY customer_id; \
         DROP EVENT nightly; CREATE PROCEDURE added_proc() SELECT 1; \
         CREATE TRIGGER customers_audit AFTER INSERT ON customers FOR EACH ROW INSERT INTO audit (msg) VALUES ('c')",
    );
    assert_ne!(my_fingerprint(db, name), a, "the change must touch what the fingerprint sees");
    (repo, a)
}

#[test]
fn mysql_clean_restore_that_fails_part_way_leaves_the_database_as_it_was() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("safe");
    let (repo, _) = my_backed_up_then_changed(db, &name);
    let before = my_fingerprint(db, &name);
    // An account that may do anything in these databases but create objects
    // with another DEFINER: the dump's trigger fails to load.
    let (user, pw) = (format!("r{}", name.replace('_', "")), "restorer-pw");
    for host in ["127.0.0.1", "localhost"] {
        db.sql(None, &format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY '{pw}'; GRANT ALL PRIVILEGES ON `{name}%`.* TO '{user}'@'{host}'"));
    }
    let url = format!("mysql://{user}@127.0.0.1:{}/{name}", db.port);
    let out = my_run(&repo, pw, &["restore", "latest", "--to", &url, "--clean", "--yes"]).expect_code(7);
    assert!(out.stderr.contains("SUPER") || out.stderr.contains("SET USER"), "{}", out.stderr);
    assert_eq!(my_fingerprint(db, &name), before, "a failed clean restore changed the database");
    assert_eq!(my_leftovers(db, &name), "NULL", "a staging database was left behind");
}

#[test]
fn mysql_swap_that_fails_puts_back_the_triggers_and_views_it_dropped() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("unswapped");
    let (repo, _) = my_backed_up_then_changed(db, &name);
    let before = my_fingerprint(db, &name);
    // The load succeeds (SUPER, SET USER: objects may name another definer), but the
    // old database may be created and not written: RENAME TABLE fails, after
    // the current database's triggers and views were dropped for it.
    let (user, pw) = (format!("u{}", name.replace('_', "")), "swapper-pw");
    let like = |suffix: &str| format!("{}{suffix}", name.replace('_', "\\_"));
    for host in ["127.0.0.1", "localhost"] {
        let to = format!("'{user}'@'{host}'");
        db.sql(
            None,
            &format!(
                "CREATE USER {to} IDENTIFIED BY '{pw}'; GRANT SUPER, SET USER ON *.* TO {to}; GRANT SELECT ON mysql.proc TO {to}; \
                 GRANT ALL PRIVILEGES ON `{name}`.* TO {to}; GRANT ALL PRIVILEGES ON `{}`.* TO {to}; \
                 GRANT CREATE, DROP ON `{}`.* TO {to}",
                like("\\_\\_drtool\\_new\\_%"),
                like("\\_\\_drtool\\_old\\_%")
            ),
        );
    }
    let url = format!("mysql://{user}@127.0.0.1:{}/{name}", db.port);
    let out = my_run(&repo, pw, &["restore", "latest", "--to", &url, "--clean", "--yes"]).expect_code(7);
    assert!(out.stderr.contains("swapping") && out.stderr.contains("unchanged"), "{}", out.stderr);
    assert_eq!(my_fingerprint(db, &name), before, "a failed swap changed the database");
    assert_eq!(my_leftovers(db, &name), "NULL", "a staging or old database was left behind");
}

#[test]
fn mysql_clean_restore_of_a_damaged_snapshot_leaves_the_database_as_it_was() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("damaged");
    let (repo, _) = my_backed_up_then_changed(db, &name);
    let before = my_fingerprint(db, &name);
    // Every pack damaged: the stream breaks at its first chunk, after the
    // target was prepared (the database used to be dropped by then).
    for (pack, len) in repo.pack_objects() {
        repo.flip_object_byte(&pack, len as usize / 2);
    }
    let out =
        my_run(&repo, &db.password, &["restore", "latest", "--to", &db.url(&name), "--clean", "--yes"]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert_eq!(my_fingerprint(db, &name), before, "a failed clean restore changed the database");
    assert_eq!(my_leftovers(db, &name), "NULL", "a staging database was left behind");
}

#[test]
fn mysql_clean_restore_replaces_every_kind_of_object_after_showing_how() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("swap");
    let (repo, a) = my_backed_up_then_changed(db, &name);
    let url = db.url(&name);
    // A database an interrupted restore left: reported, never touched.
    let stale = format!("{name}__drtool_new_deadbeef");
    db.sql(None, &format!("CREATE DATABASE `{stale}`"));

    let plan =
        my_run(&repo, &db.password, &["restore", "latest", "--to", &url, "--clean", "--dry-run"]).ok().stdout_str();
    assert!(plan.contains(&format!("load into the new database {name}__drtool_new_")), "{plan}");
    assert!(
        plan.contains("current data stays in place") && plan.contains(&format!("note: database {stale}")),
        "{plan}"
    );
    let json =
        my_run(&repo, &db.password, &["--json", "restore", "latest", "--to", &url, "--clean", "--dry-run"]).ok().json();
    let how = &json["streams"][0]["how"];
    assert_eq!(how["method"], "staged", "{json}");
    let staging = how["staging"].as_str().unwrap();
    assert!(staging.starts_with(&format!("{name}__drtool_new_")) && staging.len() <= 64, "{json}");

    my_run(&repo, &db.password, &["restore", "latest", "--to", &url, "--clean", "--yes"]).ok();
    assert_eq!(my_fingerprint(db, &name), a, "the clean restore did not reproduce the snapshot");
    assert_eq!(my_leftovers(db, &name), stale, "only the old leftover remains");
    // The objects belong to the restored database, not to a staging one.
    let defs = db.sql(None, &format!(
        "SELECT CONCAT((SELECT GROUP_CONCAT(VIEW_DEFINITION) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{name}'), \
         (SELECT GROUP_CONCAT(ROUTINE_DEFINITION) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{name}'))"
    ));
    assert!(!defs.contains("drtool_") && defs.contains(&name), "{defs}");
    let audits = db.sql(Some(&name), "SELECT COUNT(*) FROM audit");
    db.sql(Some(&name), "CALL add_order(1)");
    assert_eq!(
        db.sql(Some(&name), "SELECT COUNT(*) FROM audit"),
        (audits.parse::<u64>().unwrap() + 1).to_string(),
        "the trigger does not fire"
    );
    assert_eq!(
        db.sql(
            None,
            &format!("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'")
        ),
        "utf8mb4_unicode_ci"
    );
    db.sql(None, &format!("DROP DATABASE `{stale}`"));
}

// ---------------------------------------------------------------- PostgreSQL

fn pg_run(repo: &Repo, pg: &Postgres, args: &[&str]) -> Out {
    let mut c = repo.cmd(args);
    c.env("PGPASSWORD", &pg.password);
    run_with_input(c, None)
}

fn pg_fingerprint(pg: &Postgres, name: &str) -> Vec<String> {
    let q = |sql: &str| pg.try_sql(Some(name), sql);
    let mut f: Vec<String> =
        ["customers", "orders"].iter().map(|t| format!("{t}: {}", digest(q(&format!("SELECT * FROM {t}"))))).collect();
    f.push(digest(q("SELECT * FROM totals")));
    f.push(format!("{:?}", q("SELECT order_total(1)")));
    f.push(format!("{:?}", q("SELECT string_agg(convert_from(lo_get(doc), 'UTF8'), ',' ORDER BY id) FROM orders")));
    f.push(format!("{:?}", q("SELECT count(*) FROM pg_largeobject_metadata")));
    f.push(format!("{:?}", q("SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")));
    f
}

#[test]
fn postgres_clean_restore_that_fails_part_way_leaves_the_database_as_it_was() {
    let Some(pg) = Postgres::shared() else { return };
    let name = fresh("safe");
    let owner = format!("own_{name}");
    pg.sql(None, &format!("CREATE ROLE {owner}"));
    pg.sql(None, &format!("CREATE DATABASE {name}"));
    pg.sql(
        Some(&name),
        &format!(
            "CREATE TABLE customers (id serial PRIMARY KEY, name text); \
             CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), amount numeric(10,2), doc oid); \
             INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 500) g; \
             INSERT INTO orders (customer_id, amount) SELECT 1 + g % 500, g * 1.25 FROM generate_series(1, 3000) g; \
             UPDATE orders SET doc = lo_from_bytea(0, convert_to('document ' || id, 'UTF8')) WHERE id <= 2; \
             CREATE VIEW totals AS SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id; \
             CREATE FUNCTION order_total(cid int) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = cid $$; \
             ALTER TABLE customers OWNER TO {owner}; ALTER TABLE orders OWNER TO {owner}"
        ),
    );
    let a = pg_fingerprint(pg, &name);
    let repo = Repo::init();
    pg_run(&repo, pg, &["backup", "--source", &pg.url(&name)]).ok();
    // Different contents, and the owner role gone (its tables reassigned).
    pg.sql(
        Some(&name),
        &format!(
            "INSERT INTO customers (name) VALUES ('after the backup'); DELETE FROM orders WHERE id % 3 = 0; \
             SELECT lo_put(doc, 0, convert_to('DOC', 'UTF8')) FROM orders WHERE id = 1; \
             REASSIGN OWNED BY {owner} TO {}; DROP OWNED BY {owner}",
            pg.user
        ),
    );
    pg.sql(None, &format!("DROP ROLE {owner}"));
    let before = pg_fingerprint(pg, &name);
    assert_ne!(before, a);

    let out = pg_run(&repo, pg, &["restore", "latest", "--to", &pg.url(&name), "--clean", "--yes"]).expect_code(7);
    assert!(out.stderr.contains(&owner) && out.stderr.contains("pg_restore"), "{}", out.stderr);
    assert_eq!(pg_fingerprint(pg, &name), before, "a failed clean restore changed the database");

    // The plan says how the database is replaced.
    let out = pg_run(&repo, pg, &["restore", "latest", "--to", &pg.url(&name), "--clean", "--dry-run"]).ok();
    assert!(out.stdout_str().contains("one transaction"), "{}", out.stdout_str());

    // With the role back, the same restore replaces everything, large objects included.
    pg.sql(None, &format!("CREATE ROLE {owner}"));
    pg_run(&repo, pg, &["restore", "latest", "--to", &pg.url(&name), "--clean", "--yes"]).ok();
    assert_eq!(pg_fingerprint(pg, &name), a, "the clean restore did not reproduce the snapshot");
}
