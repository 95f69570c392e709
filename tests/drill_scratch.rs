//! Scratch servers for drills (src/drill/scratch.rs): each kind starts, serves
//! SQL through its URL as drtool will, takes dumps whose objects belong to
//! another user (DEFINER=root@localhost), and leaves no process, port or
//! directory behind: after teardown, after a plain drop, and after the process
//! holding it is SIGKILLed (the watchdog's job).
//!
//! Outside CI a kind whose server is not installed is skipped with a message;
//! with CI=true it fails, naming scripts/setup.sh.

#[path = "common/procs.rs"]
mod procs;

use drtool::drill::scratch::{Scratch, ScratchError, ScratchKind};
use procs::{port_holders, processes};
use drtool::engine::mysql::MysqlConn;
use drtool::engine::postgres::PgConn;
use drtool::engine::{DbUrl, Password};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Start a scratch; None (after saying why) when its server is not installed
/// outside CI. Any other failure fails the test.
fn start(kind: ScratchKind) -> Option<Scratch> {
    match Scratch::start(kind) {
        Ok(s) => {
            eprintln!("{kind} scratch ready in {:.2?}: {} ({})", s.provision_time(), s.url(), s.dir().display());
            Some(s)
        }
        Err(ScratchError::Unavailable(why)) => skip(kind, &why),
        Err(e) => panic!("{kind} scratch failed to start: {e}\n{e:?}"),
    }
}

fn skip<T>(kind: ScratchKind, why: &str) -> Option<T> {
    assert!(!in_ci(), "{kind} scratch unavailable but CI=true (run scripts/setup.sh): {why}");
    eprintln!("SKIPPED: {kind} scratch unavailable (run scripts/setup.sh): {why}");
    None
}

// ---------------------------------------------------------------- processes

/// Live processes (not zombies) that are one of `pids`, in their process
/// groups, or mention `dir` in their command line.
fn leftovers(pids: &[u32], dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    processes()
        .into_iter()
        .filter(|p| p.2 != 'Z' && p.2 != 'X')
        .filter(|p| pids.contains(&p.0) || pids.contains(&p.1) || p.3.contains(dir.as_ref()))
        .map(|p| format!("{} ({})", p.0, p.3))
        .collect()
}

/// What a scratch must leave behind: nothing.
fn assert_gone(what: &str, pids: &[u32], ports: &[u16], dir: &Path) {
    let left = leftovers(pids, dir);
    assert!(left.is_empty(), "{what}: processes left: {left:?}");
    let dir_s = dir.to_string_lossy();
    let held: Vec<String> = ports
        .iter()
        .flat_map(|&p| port_holders(p).into_iter().map(move |h| (p, h)))
        .filter(|(_, (pid, cmd))| pids.contains(pid) || cmd.contains(dir_s.as_ref()))
        .map(|(p, (pid, cmd))| format!("{p} held by {pid} ({cmd})"))
        .collect();
    assert!(held.is_empty(), "{what}: ports still held by the scratch: {held:?}");
    assert!(!dir.exists(), "{what}: {} still exists", dir.display());
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Tear down, timed, and check nothing is left.
fn teardown_and_check(mut s: Scratch) {
    let (kind, pids, ports, dir) = (s.kind(), s.pids(), s.ports(), s.dir().to_path_buf());
    assert!(!pids.is_empty() && pids.iter().all(|p| Path::new(&format!("/proc/{p}")).exists()));
    let t = Instant::now();
    s.teardown().expect("teardown");
    eprintln!("{kind} scratch torn down in {:.2?}", t.elapsed());
    assert_gone(&format!("{kind} after teardown"), &pids, &ports, &dir);
    s.teardown().expect("a second teardown is a no-op");
}

// ---------------------------------------------------------------- MariaDB

fn mysql(url: &str, password: &str) -> MysqlConn {
    MysqlConn::new(&DbUrl::parse(url).expect("scratch URL parses"), &Password::new(password)).expect("conn")
}

fn rows(conn: &MysqlConn, db: Option<&str>, sql: &str) -> Vec<Vec<String>> {
    let out = conn.query(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.into_iter().map(|r| r.into_iter().map(|f| f.unwrap_or_else(|| "NULL".into())).collect()).collect()
}

fn one(conn: &MysqlConn, db: Option<&str>, sql: &str) -> String {
    rows(conn, db, sql).into_iter().flatten().collect::<Vec<_>>().join("\t")
}

/// Run a MySQL tool (client or dump) as drtool with `input` on stdin; stdout.
fn mysql_tool(conn: &MysqlConn, tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not on PATH"));
    let mut c = conn.command(&path);
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn mysql tool");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    assert!(out.status.success(), "{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Objects owned by root@localhost, created by drtool, as a dump restores them.
const DEFINER_SQL: &str = r#"
CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note VARCHAR(100)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT NOT NULL);
INSERT INTO orders VALUES (1, 9.99, 'café ü ☃'), (2, 3.50, 'small');
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `orders_ai` AFTER INSERT ON `orders` FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id) */;;
CREATE DEFINER=`root`@`localhost` PROCEDURE `add_order`(IN i INT)
BEGIN INSERT INTO orders VALUES (i, 7.00, 'from proc'); END ;;
CREATE DEFINER=`root`@`localhost` FUNCTION `double_it`(x INT) RETURNS int(11)
BEGIN RETURN x * 2; END ;;
DELIMITER ;
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */
/*!50001 VIEW `big_orders` AS select `id`,`amount` from `orders` where `amount` > 5 */;
/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `tidy` ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0 */;
"#;

/// Load DEFINER_SQL into `shop`, dump it with mariadb-dump, restore the dump
/// into `shop_copy` (all as drtool), and check the copy works as root's.
fn definer_round_trip(conn: &MysqlConn) {
    conn.execute(None, "CREATE DATABASE shop; CREATE DATABASE shop_copy").expect("create databases");
    mysql_tool(conn, "mariadb", &["--default-character-set=utf8mb4", "--database=shop"], DEFINER_SQL.as_bytes());
    let dump = mysql_tool(
        conn,
        "mariadb-dump",
        &["--single-transaction", "--routines", "--events", "--triggers", "--default-character-set=utf8mb4", "shop"],
        b"",
    );
    let text = String::from_utf8_lossy(&dump);
    assert!(text.contains("DEFINER=`root`@`localhost`"), "the dump keeps root as definer");
    mysql_tool(conn, "mariadb", &["--default-character-set=utf8mb4", "--database=shop_copy"], &dump);
    check_definer_copy(conn, "shop_copy", 3);
}

/// The copy's objects belong to root and work; `id` is a new order id.
fn check_definer_copy(conn: &MysqlConn, db: &str, id: u32) {
    let q = |sql: &str| one(conn, Some(db), sql);
    for (kind, sql) in [
        ("view", format!("SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{db}'")),
        ("trigger", format!("SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'")),
        ("event", format!("SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{db}'")),
        (
            "routines",
            format!(
                "SELECT GROUP_CONCAT(DISTINCT DEFINER) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}'"
            ),
        ),
    ] {
        assert_eq!(q(&sql), "root@localhost", "{kind} definer in {db}");
    }
    assert_eq!(q("SELECT note FROM orders WHERE id = 1"), "café ü ☃", "utf8mb4 survives");
    conn.execute(Some(db), &format!("CALL add_order({id})")).expect("call the restored procedure");
    assert_eq!(q(&format!("SELECT COUNT(*) FROM audit WHERE order_id = {id}")), "1", "the restored trigger fired");
    assert!(q("SELECT GROUP_CONCAT(id ORDER BY id) FROM big_orders").starts_with("1,3"), "the restored view");
    assert_eq!(q("SELECT double_it(21)"), "42", "the restored function");
}

#[test]
fn mariadb_scratch_serves_sql_restores_definers_and_leaves_nothing() {
    let Some(s) = start(ScratchKind::Mariadb) else { return };
    assert_eq!(s.node_urls(), vec![s.url()]);
    let port = s.ports()[0];
    assert_eq!(s.url(), format!("mysql://drtool@127.0.0.1:{port}/"));
    assert!(![3306, 5432, 27017].contains(&port));
    assert_eq!(s.cluster_size().expect("cluster size"), 1);
    let conn = mysql(&s.url(), s.password());
    assert_eq!(
        one(&conn, None, "SELECT @@character_set_server, @@bind_address, @@port"),
        format!("utf8mb4\t127.0.0.1\t{port}")
    );
    conn.execute(None, "CREATE DATABASE t; CREATE TABLE t.kv (k INT PRIMARY KEY, v TEXT); INSERT INTO t.kv VALUES (1, 'one'), (2, 'two')")
        .expect("write");
    assert_eq!(one(&conn, Some("t"), "SELECT GROUP_CONCAT(v ORDER BY k) FROM kv"), "one,two");
    // A wrong password is refused: the account really has one.
    let wrong = mysql(&s.url(), "not-the-password");
    assert!(wrong.query(None, "SELECT 1").is_err());
    definer_round_trip(&conn);
    teardown_and_check(s);
}

// ---------------------------------------------------------------- Galera

#[test]
fn galera_scratch_replicates_to_all_nodes_and_leaves_nothing() {
    let Some(s) = start(ScratchKind::Galera) else { return };
    let urls = s.node_urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(urls[0], s.url());
    assert_eq!(s.ports().len(), 12, "four ports per node");
    assert_eq!(s.pids().len(), 3);
    assert_eq!(s.cluster_size().expect("all nodes synced"), 3);
    for url in &urls {
        let st = drtool::drill::galera::node_status(url, s.password()).expect("status");
        assert!(st.synced() && st.cluster_size == 3, "{st:?}");
    }
    let nodes: Vec<MysqlConn> = urls.iter().map(|u| mysql(u, s.password())).collect();
    nodes[0]
        .execute(None, "CREATE DATABASE t; CREATE TABLE t.kv (k INT PRIMARY KEY, v TEXT); INSERT INTO t.kv VALUES (1, 'from node 1')")
        .expect("write on node 1");
    for (i, n) in nodes.iter().enumerate().skip(1) {
        // Certification is synchronous but applying on the other nodes is not:
        // wsrep_sync_wait makes the read wait until this node has caught up.
        let v = one(n, Some("t"), "SET SESSION wsrep_sync_wait = 1; SELECT v FROM kv WHERE k = 1");
        assert_eq!(v, "from node 1", "node {} sees node 1's row", i + 1);
    }
    definer_round_trip(&nodes[0]);
    // The restored objects replicated too.
    let n3 = &nodes[2];
    assert_eq!(one(n3, Some("shop_copy"), "SET SESSION wsrep_sync_wait = 1; SELECT COUNT(*) FROM orders"), "3");
    check_definer_copy(n3, "shop_copy", 4);
    assert_eq!(one(&nodes[1], Some("shop_copy"), "SET SESSION wsrep_sync_wait = 1; SELECT COUNT(*) FROM audit"), "2");
    assert_eq!(s.cluster_size().expect("still synced"), 3);
    teardown_and_check(s);
}

// ---------------------------------------------------------------- PostgreSQL

#[test]
fn postgres_scratch_serves_sql_with_contrib_and_leaves_nothing() {
    let Some(s) = start(ScratchKind::Postgres) else { return };
    let port = s.ports()[0];
    assert_eq!(s.url(), format!("postgres://postgres@127.0.0.1:{port}/"));
    let conn = PgConn::new(&DbUrl::parse(&s.url()).expect("url"), &Password::new(s.password())).expect("conn");
    let q = |db: &str, sql: &str| conn.query(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    q("postgres", "CREATE DATABASE shop");
    q("shop", "CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'één'), (2, 'two')");
    assert_eq!(q("shop", "SELECT string_agg(v, ',' ORDER BY k) FROM kv"), vec![vec!["één,two".to_string()]]);
    assert_eq!(q("shop", "SHOW server_encoding"), vec![vec!["UTF8".to_string()]]);
    // The contrib extensions drills use: checksums and index checks.
    q("shop", "CREATE EXTENSION pgcrypto; CREATE EXTENSION amcheck");
    assert_eq!(q("shop", "SELECT encode(digest('abc', 'sha256'), 'hex')")[0][0].len(), 64);
    q("shop", "SELECT bt_index_check('kv_pkey'::regclass)");
    let wrong = PgConn::new(&DbUrl::parse(&s.url()).expect("url"), &Password::new("nope")).expect("conn");
    assert!(wrong.query("postgres", "SELECT 1").is_err(), "a wrong password is refused");
    teardown_and_check(s);
}

// ---------------------------------------------------------------- MongoDB

#[test]
fn mongodb_scratch_is_unavailable_without_mongod() {
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .any(|d| d.join("mongod").is_file());
    match Scratch::start(ScratchKind::Mongodb) {
        Err(ScratchError::Unavailable(why)) => {
            assert!(!on_path, "mongod is installed, yet: {why}");
            assert!(why.contains("mongod"), "{why}");
        }
        Ok(s) => {
            assert!(on_path);
            assert!(s.url().starts_with("mongodb://drtool@127.0.0.1:"), "{}", s.url());
            teardown_and_check(s);
        }
        Err(e) => panic!("mongodb scratch: {e}"),
    }
}

#[test]
fn kinds_parse_and_map_to_engines() {
    assert_eq!("galera".parse::<ScratchKind>().unwrap(), ScratchKind::Galera);
    assert_eq!("postgresql".parse::<ScratchKind>().unwrap(), ScratchKind::Postgres);
    assert_eq!(ScratchKind::Galera.engine(), drtool::engine::Engine::Mysql);
    let err = "oracle".parse::<ScratchKind>().unwrap_err();
    assert!(matches!(err, ScratchError::UnknownKind(_)) && err.to_string().contains("oracle"), "{err}");
}

// ---------------------------------------------------------------- cleanup without teardown

#[test]
fn dropping_a_scratch_cleans_up() {
    let Some(s) = start(ScratchKind::Mariadb) else { return };
    let (pids, ports, dir) = (s.pids(), s.ports(), s.dir().to_path_buf());
    assert!(format!("{s:?}").contains("***") && !format!("{s:?}").contains(s.password()), "Debug hides the password");
    drop(s);
    assert_gone("mariadb after drop", &pids, &ports, &dir);
}

const HELPER_ENV: &str = "DRTOOL_SCRATCH_HELPER";

/// Not a test: run by the watchdog tests in a child process, which they kill
/// while its scratch runs.
#[test]
#[ignore = "helper process for the watchdog tests"]
fn scratch_helper() {
    let Ok(kind) = std::env::var(HELPER_ENV) else { return };
    let kind: ScratchKind = kind.parse().expect("kind");
    match Scratch::start(kind) {
        Ok(s) => {
            let pids: Vec<String> = s.pids().iter().map(u32::to_string).collect();
            let ports: Vec<String> = s.ports().iter().map(u16::to_string).collect();
            println!("READY {} {} {}", s.dir().display(), pids.join(","), ports.join(","));
            std::thread::sleep(Duration::from_secs(600));
        }
        Err(ScratchError::Unavailable(why)) => println!("UNAVAILABLE {why}"),
        Err(e) => println!("FAILED {e}"),
    }
}

/// Start a scratch in a child test binary, SIGKILL that binary, and expect
/// the watchdog to remove every process and the directory within 15 s.
fn killed_holder_leaves_nothing(kind: ScratchKind) {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--ignored", "--exact", "scratch_helper", "--nocapture"])
        .env(HELPER_ENV, kind.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("stdout");
    // libtest may print "test scratch_helper ... " on the same line first.
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| ["READY ", "UNAVAILABLE ", "FAILED "].iter().find_map(|m| l.find(m)).map(|i| l[i..].to_string()));
    let line = match line {
        Some(l) if l.starts_with("READY ") => l,
        Some(l) if l.starts_with("UNAVAILABLE ") => {
            let _ = child.kill();
            let _ = child.wait();
            skip::<()>(kind, &l);
            return;
        }
        other => {
            let _ = child.kill();
            panic!("helper did not provide a {kind} scratch: {other:?} ({:?})", child.wait());
        }
    };
    let f: Vec<&str> = line.split(' ').collect();
    let dir = PathBuf::from(f[1]);
    let pids: Vec<u32> = f[2].split(',').map(|p| p.parse().expect("pid")).collect();
    let ports: Vec<u16> = f[3].split(',').map(|p| p.parse().expect("port")).collect();
    assert!(dir.is_dir() && !leftovers(&pids, &dir).is_empty(), "helper's scratch is not running");

    let killed = Instant::now();
    child.kill().expect("SIGKILL the helper");
    child.wait().expect("reap the helper");
    let gone = wait_until(Duration::from_secs(15), || leftovers(&pids, &dir).is_empty() && !dir.exists());
    eprintln!("{kind}: watchdog cleaned up in {:.2?}", killed.elapsed());
    assert!(
        gone,
        "{kind} scratch outlived its killed holder: {:?}, dir exists: {}",
        leftovers(&pids, &dir),
        dir.exists()
    );
    assert_gone(&format!("{kind} after its holder was killed"), &pids, &ports, &dir);
}

#[test]
fn mariadb_watchdog_cleans_up_after_a_killed_holder() {
    killed_holder_leaves_nothing(ScratchKind::Mariadb);
}

#[test]
fn postgres_watchdog_cleans_up_after_a_killed_holder() {
    killed_holder_leaves_nothing(ScratchKind::Postgres);
}

#[test]
fn galera_watchdog_cleans_up_after_a_killed_holder() {
    killed_holder_leaves_nothing(ScratchKind::Galera);
}
