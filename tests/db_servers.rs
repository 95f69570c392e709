//! The private database servers other tests rely on (tests/common/mariadb.rs
//! and postgres.rs) really work: they store and return data, reject a wrong
//! password, give the admin account what the dump tools need, die when killed,
//! and leave no process or directory behind, even when the test binary is
//! killed.

mod common;

use common::mariadb::{self, MariaDb};
use common::postgres::{self, Postgres};
use common::{children_of, processes, wait_until};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Running and not a zombie (a killed server stays a zombie until reaped).
fn alive(pid: u32) -> bool {
    processes().iter().any(|p| p.0 == pid as i32 && p.3 != 'Z' && p.3 != 'X')
}

#[test]
fn mariadb_stores_queries_and_checks_passwords() {
    let Some(db) = MariaDb::start() else { return };
    assert_eq!(db.user, "drtool");
    assert_eq!(db.url("shop,crm"), format!("mysql://drtool@127.0.0.1:{}/shop,crm", db.port));
    // --no-defaults: our settings, not /etc/mysql's; no binary log unless asked.
    assert_eq!(db.sql(None, "SELECT @@character_set_server, @@bind_address, @@log_bin"), "utf8mb4\t127.0.0.1\t0");

    db.sql(None, "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, who VARCHAR(50), note TEXT)");
    db.sql(
        Some("shop"),
        "INSERT INTO orders VALUES (1, 'Ann', 'tab\\there'), (2, 'Bjørn', 'two\\nlines'), (3, 'ann', NULL)",
    );
    assert_eq!(db.sql(Some("shop"), "SELECT id, who FROM orders ORDER BY id"), "1\tAnn\n2\tBjørn\n3\tann");
    assert_eq!(db.sql(Some("shop"), "SELECT note FROM orders WHERE id = 2"), "two\\nlines", "batch mode escapes");

    // Same rows in another physical order: same checksum; one changed value: another.
    db.sql(Some("shop"), "CREATE TABLE copy LIKE orders; INSERT INTO copy SELECT * FROM orders ORDER BY id DESC");
    let sum = db.checksum("shop", "orders");
    assert!(sum.starts_with("3 rows "), "{sum}");
    assert_eq!(db.checksum("shop", "copy"), sum);
    db.sql(Some("shop"), "UPDATE copy SET who = 'ANN' WHERE id = 1");
    assert_ne!(db.checksum("shop", "copy"), sum);
    db.sql(Some("shop"), "CREATE TABLE empty (id INT)");
    assert!(db.checksum("shop", "empty").starts_with("0 rows "));

    let grants = db.sql(None, "SHOW GRANTS FOR CURRENT_USER()");
    assert!(grants.contains("GRANT ALL PRIVILEGES ON *.*") && grants.contains("WITH GRANT OPTION"), "{grants}");

    let mut wrong = db.client(None);
    wrong.env("MYSQL_PWD", "not-the-password");
    let err = mariadb::run_client(wrong, b"SELECT 1").expect_err("a wrong password must be rejected");
    assert!(err.contains("Access denied"), "{err}");
    let err = db.try_sql(Some("shop"), "SELECT * FROM missing_table").expect_err("bad SQL must fail");
    assert!(err.contains("doesn't exist"), "{err}");

    let (pid, dir) = (db.pid, db.dir.clone());
    drop(db);
    assert!(!alive(pid), "mariadbd {pid} still runs after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

#[test]
fn mariadb_shared_server_has_binlog_and_dumps_with_master_data() {
    let Some(db) = MariaDb::shared() else { return };
    assert!(std::ptr::eq(db, MariaDb::shared().expect("shared")), "one server per test binary");
    assert_eq!(db.sql(None, "SELECT @@log_bin, @@binlog_format, @@server_id, @@event_scheduler"), "1\tROW\t1\tON");
    db.sql(
        None,
        "CREATE DATABASE IF NOT EXISTS binlogged; CREATE TABLE binlogged.t (x INT); INSERT INTO binlogged.t VALUES (7)",
    );
    assert!(db.sql(None, "SHOW MASTER STATUS").starts_with("mysql-bin."));

    // The admin account has what --master-data needs (RELOAD, REPLICATION CLIENT...).
    let dump = mariadb::find_bin("mariadb-dump").expect("mariadb-dump comes with mariadb-client");
    let out = Command::new(dump)
        .args(["--no-defaults", "--protocol=TCP", "--host=127.0.0.1", &format!("--port={}", db.port)])
        .args([&format!("--user={}", db.user), "--master-data=2", "--single-transaction", "--databases", "binlogged"])
        .env("MYSQL_PWD", &db.password)
        .output()
        .expect("run mariadb-dump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mariadb-dump failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin."), "no binlog position in the dump");
    assert!(text.contains("INSERT INTO `t` VALUES\n(7);"), "no data in the dump:\n{text}");
}

#[test]
fn mariadb_kill_stops_the_server_at_once() {
    let Some(db) = MariaDb::start() else { return };
    db.kill();
    assert!(wait_until(Duration::from_secs(5), || !alive(db.pid)), "mariadbd survived SIGKILL");
    assert!(db.try_sql(None, "SELECT 1").is_err(), "a killed server still answers");
}

#[test]
fn postgres_stores_queries_and_checks_passwords() {
    let Some(pg) = Postgres::start() else { return };
    assert_eq!(pg.user, "postgres");
    assert_eq!(pg.url("shop"), format!("postgres://postgres@127.0.0.1:{}/shop", pg.port));
    assert_eq!(pg.sql(None, "SHOW server_encoding; SHOW listen_addresses; SHOW fsync"), "UTF8\n127.0.0.1\noff");
    assert_eq!(pg.sql(None, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"), "t");

    pg.sql(None, "CREATE DATABASE shop");
    pg.sql(Some("shop"), "CREATE TABLE orders (id int PRIMARY KEY, who text, note text)");
    pg.sql(Some("shop"), "INSERT INTO orders VALUES (1, 'Ann', E'tab\\there'), (2, 'Bjørn', NULL), (3, 'ann', '')");
    assert_eq!(pg.sql(Some("shop"), "SELECT id, who FROM orders ORDER BY id"), "1|Ann\n2|Bjørn\n3|ann");

    pg.sql(Some("shop"), "CREATE TABLE copy AS SELECT * FROM orders ORDER BY id DESC");
    let sum = pg.checksum("shop", "public.orders");
    assert!(sum.starts_with("3 rows "), "{sum}");
    assert_eq!(pg.checksum("shop", "copy"), sum);
    pg.sql(Some("shop"), "UPDATE copy SET who = 'ANN' WHERE id = 1");
    assert_ne!(pg.checksum("shop", "copy"), sum);
    pg.sql(Some("shop"), "CREATE TABLE empty (id int)");
    assert_eq!(pg.checksum("shop", "empty"), "0 rows -");

    let mut wrong = pg.client(None);
    wrong.env("PGPASSWORD", "not-the-password");
    let err = mariadb::run_client(wrong, b"SELECT 1").expect_err("a wrong password must be rejected");
    assert!(err.contains("password authentication failed"), "{err}");
    let err =
        pg.try_sql(Some("shop"), "SELECT 1; SELECT * FROM missing_table; SELECT 2").expect_err("bad SQL must fail");
    assert!(err.contains("does not exist"), "{err}");

    // The dump tools of the server's own version are at hand.
    let out = Command::new(pg.bin.join("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", &pg.user, "shop"])
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("run pg_dump");
    assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CREATE TABLE public.orders"));

    let (pid, dir) = (pg.pid, pg.dir.clone());
    let backends = children_of(pid);
    assert!(!backends.is_empty(), "a postmaster has helper processes");
    drop(pg);
    for p in backends.iter().map(|&p| p as u32).chain([pid]) {
        assert!(!alive(p), "postgres process {p} still runs after drop");
    }
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

#[test]
fn postgres_shared_server_is_one_server() {
    let Some(pg) = Postgres::shared() else { return };
    assert!(std::ptr::eq(pg, Postgres::shared().expect("shared")));
    assert_eq!(pg.sql(None, "SELECT 6 * 7"), "42");
}

#[test]
fn postgres_kill_takes_down_the_backends_too() {
    let Some(pg) = Postgres::start() else { return };
    let procs: Vec<u32> = children_of(pg.pid).into_iter().map(|p| p as u32).chain([pg.pid]).collect();
    pg.kill();
    assert!(wait_until(Duration::from_secs(5), || procs.iter().all(|&p| !alive(p))), "postgres survived kill()");
    assert!(pg.try_sql(None, "SELECT 1").is_err(), "a killed server still answers");
}

// ---------------------------------------------------------------- watchdog

const HELPER_ENV: &str = "DRTOOL_DB_WATCHDOG_HELPER";

/// Not a test: run by `watchdog_cleans_up_after_a_killed_test_binary` in a
/// child process, which it kills while the shared server runs.
#[test]
#[ignore = "helper process for the watchdog tests"]
fn watchdog_helper() {
    let (pid, dir) = match std::env::var(HELPER_ENV).as_deref() {
        Ok("mariadb") => MariaDb::shared().map(|d| (d.pid, d.dir.clone())),
        Ok("postgres") => Postgres::shared().map(|d| (d.pid, d.dir.clone())),
        _ => return,
    }
    .expect("the parent checked the server is installed");
    println!("READY {pid} {}", dir.display());
    std::thread::sleep(Duration::from_secs(300));
}

/// Start a shared server in a child test binary, SIGKILL that binary, and
/// expect the watchdog to remove the server's processes and directory.
fn killed_binary_leaves_nothing(kind: &str) {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--ignored", "--exact", "watchdog_helper", "--nocapture"])
        .env(HELPER_ENV, kind)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("piped stdout");
    // The harness may print "test NAME ... " on the same line first (one test thread).
    let ready =
        BufReader::new(stdout).lines().map_while(Result::ok).find_map(|l| l.find("READY ").map(|i| l[i..].to_string()));
    let Some(ready) = ready else {
        let _ = child.kill();
        panic!("helper exited without a server: {:?}", child.wait());
    };
    let fields: Vec<&str> = ready.split(' ').collect();
    let pid: u32 = fields[1].parse().expect("pid");
    let dir = PathBuf::from(fields[2]);
    let procs: Vec<u32> = children_of(pid).into_iter().map(|p| p as u32).chain([pid]).collect();
    assert!(alive(pid) && dir.is_dir(), "helper's server is not running");

    child.kill().expect("kill helper");
    child.wait().expect("reap helper");
    let gone = wait_until(Duration::from_secs(20), || procs.iter().all(|&p| !alive(p)) && !dir.exists());
    assert!(gone, "{kind} server {pid} or {} outlived the killed test binary", dir.display());
}

#[test]
fn mariadb_watchdog_cleans_up_after_a_killed_test_binary() {
    if !mariadb::available() {
        mariadb::missing::<()>("mariadbd (Debian package mariadb-server)");
        return;
    }
    killed_binary_leaves_nothing("mariadb");
}

#[test]
fn postgres_watchdog_cleans_up_after_a_killed_test_binary() {
    if !postgres::available() {
        mariadb::missing::<()>("PostgreSQL (Debian package postgresql)");
        return;
    }
    killed_binary_leaves_nothing("postgres");
}
