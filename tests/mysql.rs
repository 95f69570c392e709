//! MySQL/MariaDB source and target against real private MariaDB servers
//! (tests/common/mariadb.rs; installed by scripts/setup.sh).

mod common;

use common::mariadb::MariaDb;
use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A database name unique within this test binary's shared server.
fn fresh_db(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed))
}

fn server() -> Option<&'static MariaDb> {
    MariaDb::shared()
}

/// drtool with the server's password where the engine's tools look for it.
fn run_db(repo: &Repo, db: &MariaDb, args: &[&str]) -> Out {
    let mut c = repo.cmd(args);
    c.env("MYSQL_PWD", &db.password);
    run_with_input(c, None)
}

fn show(repo: &Repo, spec: &str) -> Value {
    repo.run(["--json", "show", spec]).ok().json()
}

/// A schema with every kind of object the issue names.
fn create_shop(db: &MariaDb, name: &str) {
    db.sql(None, &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"));
    db.sql(
        Some(name),
        r#"
CREATE TABLE customers (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100) NOT NULL,
  note TEXT NULL,
  photo BLOB NULL,
  balance DECIMAL(12,2) NULL,
  created DATETIME(6) NOT NULL DEFAULT '2026-01-01 00:00:00'
) ENGINE=InnoDB;
CREATE TABLE orders (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  customer_id INT NOT NULL,
  amount DECIMAL(10,2) NOT NULL,
  status ENUM('new','paid','shipped') NOT NULL DEFAULT 'new',
  FOREIGN KEY (customer_id) REFERENCES customers(id)
) ENGINE=InnoDB;
CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, msg VARCHAR(200)) ENGINE=InnoDB;
CREATE TABLE empty_one (x INT) ENGINE=InnoDB;
INSERT INTO customers (name, note, photo, balance) VALUES
  ('Zoë ''quoted'' \\ back', 'multi
line', 0x00FF27225C0D0A1A, 10.50),
  ('😀 emoji 漢字', NULL, NULL, NULL),
  ('semi;colon),(paren', '', X'', -3.25);
INSERT INTO customers (name, note, photo, balance)
  SELECT CONCAT('customer ', seq), REPEAT('n', seq % 50), UNHEX(MD5(seq)), seq / 7 FROM seq_1_to_2000;
INSERT INTO orders (customer_id, amount, status) SELECT 1 + seq % 2000, seq * 1.25, ELT(1 + seq % 3, 'new', 'paid', 'shipped') FROM seq_1_to_5000;
CREATE VIEW big_spenders AS SELECT customer_id, SUM(amount) AS total FROM orders GROUP BY customer_id HAVING total > 1000;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (msg) VALUES (CONCAT('order ', NEW.id));
CREATE PROCEDURE mark_paid(IN oid BIGINT) UPDATE orders SET status = 'paid' WHERE id = oid;
CREATE FUNCTION order_total(cid INT) RETURNS DECIMAL(12,2) DETERMINISTIC READS SQL DATA RETURN (SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = cid);
CREATE EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0;
"#,
    );
}

const TABLES: [&str; 4] = ["customers", "orders", "audit", "empty_one"];

/// Everything about a database a restore must reproduce.
fn fingerprint(db: &MariaDb, name: &str) -> Vec<String> {
    let mut f: Vec<String> = TABLES.iter().map(|t| format!("{t}: {}", db.checksum(name, t))).collect();
    f.push(db.sql(Some(name), "SELECT COUNT(*), SUM(total) FROM big_spenders"));
    f.push(db.sql(Some(name), "SELECT order_total(1), order_total(2)"));
    let q = |what: &str, col: &str, schema_col: &str| {
        db.sql(
            None,
            &format!(
                "SELECT GROUP_CONCAT({col} ORDER BY {col}) FROM information_schema.{what} WHERE {schema_col} = '{name}'"
            ),
        )
    };
    f.push(q("TRIGGERS", "TRIGGER_NAME", "TRIGGER_SCHEMA"));
    f.push(q("ROUTINES", "ROUTINE_NAME", "ROUTINE_SCHEMA"));
    f.push(q("EVENTS", "EVENT_NAME", "EVENT_SCHEMA"));
    f.push(q("VIEWS", "TABLE_NAME", "TABLE_SCHEMA"));
    f.push(db.sql(None, &format!("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'")));
    f
}

#[test]
fn database_round_trips_under_its_own_name_and_a_new_one() {
    let Some(db) = server() else { return };
    let name = fresh_db("shop");
    create_shop(&db, &name);
    let original = fingerprint(db, &name);
    let repo = Repo::init();
    let out = run_db(&repo, db, &["--json", "backup", "--source", &db.url(&name)]).ok().json();
    let id = out["snapshot_id"].as_str().unwrap().to_string();

    // The manifest records what a restorer needs.
    let m = show(&repo, &id);
    let d = &m["source"]["details"];
    assert_eq!(m["source"]["kind"], "mysql");
    assert!(d["server_version"].as_str().unwrap().contains("MariaDB"), "{d}");
    assert!(d["dump_tool_version"].as_str().unwrap().contains("mariadb-dump"), "{d}");
    assert_eq!(d["databases"][&name]["character_set"], "utf8mb4");
    let facts = &d["streams"][0]["facts"];
    assert!(facts["binlog_file"].as_str().unwrap().starts_with("mysql-bin."), "{facts}");
    assert!(facts["binlog_position"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["gtid"].as_str().is_some(), "{facts}");
    let counts = &m["fingerprints"]["counts"];
    for t in TABLES {
        let n: u64 = db.sql(Some(&name), &format!("SELECT COUNT(*) FROM {t}")).parse().unwrap();
        assert_eq!(counts[format!("{name}.{t}")], n, "row count of {t} in {counts}");
    }
    assert_eq!(counts[format!("{name}.customers")], 2003);
    assert_eq!(m["items"][0]["name"], format!("{name}.sql"));

    // Restore beside the original: the copy matches, the original is untouched.
    let copy = format!("{name}_copy");
    run_db(&repo, db, &["restore", &id, "--to", &db.url(&name), "--rename", &copy, "--yes"]).ok();
    assert_eq!(fingerprint(db, &copy), original, "restored copy differs");
    assert_eq!(fingerprint(db, &name), original, "the original changed");
    // The copy's trigger works in the copy.
    db.sql(Some(&copy), "INSERT INTO orders (customer_id, amount) VALUES (1, 1)");
    assert_eq!(db.sql(Some(&copy), "SELECT COUNT(*) FROM audit"), "1");

    // Disaster: the database is gone. Restore it under its own name.
    db.sql(None, &format!("DROP DATABASE `{name}`"));
    run_db(&repo, db, &["restore", "latest", "--to", &db.url(""), "--yes"]).ok();
    assert_eq!(fingerprint(db, &name), original, "restored database differs from the original");
}

#[test]
fn an_existing_database_is_never_overwritten_without_clean() {
    let Some(db) = server() else { return };
    let name = fresh_db("keep");
    create_shop(&db, &name);
    let original = fingerprint(db, &name);
    let repo = Repo::init();
    run_db(&repo, db, &["backup", "--source", &db.url(&name)]).ok();
    db.sql(Some(&name), "CREATE TABLE added_later (x INT); INSERT INTO customers (name) VALUES ('after backup')");
    let changed = fingerprint(db, &name);

    let out = run_db(&repo, db, &["restore", "latest", "--to", &db.url(&name), "--yes"]).expect_code(6);
    assert!(out.stderr.contains("--clean") && out.stderr.contains(&name), "{}", out.stderr);
    assert_eq!(fingerprint(db, &name), changed, "a refused restore changed the database");

    // --dry-run shows the plan and changes nothing.
    let out = run_db(&repo, db, &["restore", "latest", "--to", &db.url(&name), "--clean", "--dry-run"]).ok();
    let plan = out.stdout_str();
    assert!(plan.contains("OVERWRITE") && plan.contains("Restore plan"), "{plan}");
    assert_eq!(fingerprint(db, &name), changed);

    // Without --yes and without a terminal: refused.
    let out = run_db(&repo, db, &["restore", "latest", "--to", &db.url(&name), "--clean"]).expect_code(6);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);

    run_db(&repo, db, &["restore", "latest", "--to", &db.url(&name), "--clean", "--yes"]).ok();
    assert_eq!(db.sql(None, &format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{name}' AND TABLE_NAME = 'added_later'")), "0");
    assert_eq!(db.sql(Some(&name), "SELECT COUNT(*) FROM customers WHERE name = 'after backup'"), "0");
    // Every kind of object came back through the staged swap, in this database.
    assert_eq!(fingerprint(db, &name), original, "--clean did not reproduce the snapshot");
}

#[test]
fn wrong_password_or_unreachable_server_fails_clearly_and_writes_nothing() {
    let Some(db) = server() else { return };
    let name = fresh_db("auth");
    db.sql(None, &format!("CREATE DATABASE `{name}`"));
    let repo = Repo::init();
    let mut c = repo.cmd(["backup", "--source", &db.url(&name)]);
    c.env("MYSQL_PWD", "wrong-password");
    let out = run_with_input(c, None).expect_code(5);
    assert!(
        out.stderr.contains("Access denied") && out.stderr.contains(&format!("127.0.0.1:{}", db.port)),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-password"));

    let port = mariadb::free_port();
    let out = run_db(&repo, db, &["backup", "--source", &format!("mysql://drtool@127.0.0.1:{port}/x")]).expect_code(5);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);

    let out = run_db(&repo, db, &["backup", "--source", &db.url("no_such_db")]).expect_code(5);
    assert!(out.stderr.contains("no_such_db") && out.stderr.contains("does not exist"), "{}", out.stderr);

    let out = repo.run(["backup", "--source", "mysql://u:pw@127.0.0.1/x"]).expect_code(2);
    assert!(out.stderr.contains("not accepted") && !out.stderr.contains(":pw@"), "{}", out.stderr);
    assert!(repo.snapshots().is_empty());
}

#[test]
fn server_killed_during_the_dump_leaves_no_snapshot() {
    let Some(db) = MariaDb::start() else { return };
    db.sql(None, "CREATE DATABASE big");
    db.sql(Some("big"), "CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(255)); INSERT INTO t SELECT seq, REPEAT(MD5(seq), 7) FROM seq_1_to_600000");
    let repo = Repo::init();
    let mut cmd = repo.cmd(["backup", "--source", &db.url("big")]);
    cmd.env("MYSQL_PWD", &db.password).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Kill the server once the dump is streaming.
    let dumping = wait_until(Duration::from_secs(30), || {
        children_of(child.id())
            .iter()
            .any(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "mariadb-dump"))
    });
    assert!(dumping, "mariadb-dump never started");
    std::thread::sleep(Duration::from_millis(150));
    db.kill();
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(5), "stderr: {stderr}");
    assert!(stderr.contains("database \"big\""), "{stderr}");
    assert!(repo.snapshots().is_empty(), "a failed dump became a snapshot");
}

#[test]
fn nightly_dumps_with_two_percent_of_rows_changed_store_little() {
    let Some(db) = server() else { return };
    let name = fresh_db("nightly");
    db.sql(None, &format!("CREATE DATABASE `{name}`"));
    // ~63 MB of dump: 400k orders of ~160 bytes each.
    db.sql(
        Some(&name),
        "CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer VARCHAR(40), amount DECIMAL(10,2), \
         status VARCHAR(10), note VARCHAR(200)); \
         INSERT INTO orders (customer, amount, status, note) SELECT CONCAT('customer-', seq % 9973), seq * 0.37, 'shipped', \
         CONCAT('order note ', MD5(seq), ' ', MD5(seq * 7), ' ', MD5(seq * 13)) FROM seq_1_to_400000",
    );
    let repo = Repo::init();
    let first = run_db(&repo, db, &["--json", "backup", "--source", &db.url(&name)]).ok().json();
    // A day of a web shop: 1% new orders, 1% of orders (the recent ones) change status.
    db.sql(
        Some(&name),
        "INSERT INTO orders (customer, amount, status, note) SELECT CONCAT('customer-', seq), seq, 'new', \
         CONCAT('new order ', MD5(seq)) FROM seq_1_to_4000; \
         UPDATE orders SET status = 'delivered' WHERE id BETWEEN 396001 AND 400000",
    );
    let second = run_db(&repo, db, &["--json", "backup", "--source", &db.url(&name)]).ok().json();
    let (s1, s2) =
        (first["summary"]["bytes_stored"].as_u64().unwrap(), second["summary"]["bytes_stored"].as_u64().unwrap());
    let read = second["summary"]["bytes_read"].as_u64().unwrap();
    eprintln!(
        "nightly mysql: dump {read} B, first stored {s1} B, second stored {s2} B ({:.1}%)",
        100.0 * s2 as f64 / s1 as f64
    );
    assert!(read > 60_000_000, "dump smaller than planned: {read}");
    assert!(s2 * 10 < s1, "second dump stored {s2} B, not under 10% of the first's {s1} B");
}

#[test]
fn a_person_at_a_terminal_confirms_or_declines() {
    let Some(db) = server() else { return };
    let name = fresh_db("ask");
    db.sql(None, &format!("CREATE DATABASE `{name}`"));
    db.sql(Some(&name), "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)");
    let repo = Repo::init();
    run_db(&repo, db, &["backup", "--source", &db.url(&name)]).ok();
    let copy = format!("{name}_asked");
    // drtool's stdin is a pseudo-terminal on which the answer is typed.
    let answer = |text: &str| {
        let mut c = repo.cmd(["restore", "latest", "--to", &db.url(&name), "--rename", &copy]);
        c.env("MYSQL_PWD", &db.password);
        run_on_terminal(c, &format!("{text}\n"))
    };
    let exists =
        || db.sql(None, &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{copy}'"));
    let out = answer("no").expect_code(6);
    assert!(out.stderr.contains("Type 'yes'") && out.stderr.contains("not confirmed"), "{}", out.stderr);
    assert_eq!(exists(), "0", "a declined restore created the database");
    let out = answer("yes").ok();
    assert!(out.stdout_str().contains("restored snapshot"), "{}", out.stdout_str());
    assert_eq!(db.checksum(&copy, "t"), db.checksum(&name, "t"));
}
