//! Restore drills end to end: back up a real database through a policy, then
//! `drtool drill` restores it into a throw-away server (or a Galera cluster),
//! checks it, reports, and leaves nothing behind.

mod common;

use common::mariadb::MariaDb;
use common::postgres::Postgres;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn fresh(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed))
}

struct Setup {
    repo: Repo,
    policies: PathBuf,
    state: PathBuf,
    pw_file: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let repo = Repo::init();
        let pw_file = repo.dir.path().join("repo.pass");
        std::fs::write(&pw_file, &repo.password).unwrap();
        let policies = repo.scratch("policies");
        let state = repo.scratch("state");
        Setup { repo, policies, state, pw_file }
    }

    fn policy(&self, name: &str, body: &str) {
        let text = format!(
            "name = \"{name}\"\nrepository = \"{}\"\npassword_file = \"{}\"\n{body}",
            self.repo.path.display(),
            self.pw_file.display()
        );
        std::fs::write(self.policies.join(format!("{name}.toml")), text).unwrap();
    }

    fn cmd(&self, args: &[&str], db_password: &str) -> std::process::Command {
        let mut c = drtool();
        c.arg("--policies").arg(&self.policies).args(args);
        c.env("DRTOOL_STATE_DIR", &self.state).env("DB_PW", db_password).env_remove("DRTOOL_PASSWORD");
        c
    }

    fn run(&self, args: &[&str], db_password: &str) -> Out {
        run_with_input(self.cmd(args, db_password), None)
    }
}

fn shop_mariadb(db: &MariaDb, name: &str) {
    db.sql(None, &format!("CREATE DATABASE `{name}`"));
    db.sql(
        Some(name),
        "CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(100), note TEXT);\
         CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, amount DECIMAL(10,2), KEY (customer_id));\
         INSERT INTO customers (email, note) SELECT CONCAT('c', seq, '@example.com'), REPEAT('x', seq % 40) FROM seq_1_to_1250;\
         INSERT INTO customers (email) VALUES ('admin@example.com');\
         INSERT INTO orders (customer_id, amount) SELECT 1 + seq % 1250, seq / 3 FROM seq_1_to_20000;\
         CREATE VIEW recent AS SELECT * FROM orders WHERE id > 19000;\
         CREATE TRIGGER orders_ins BEFORE INSERT ON orders FOR EACH ROW SET NEW.amount = ABS(NEW.amount);",
    );
}

fn drill_body(url: &str, scratch: &str, checks: &str) -> String {
    format!(
        "[source]\nkind = \"mysql\"\nurl = \"{url}\"\npassword_env = \"DB_PW\"\n\
         [drill]\nscratch = \"{scratch}\"\nrto_seconds = 900\nrpo_hours = 1\n{checks}"
    )
}

const CHECKS: &str = "[[drill.checks]]\nname = \"orders present\"\nsql = \"SELECT COUNT(*) FROM orders\"\nmin = 1\n\
    [[drill.checks]]\nname = \"known customer count\"\nsql = \"SELECT COUNT(*) FROM customers\"\nexpect = \"1251\"\n\
    [[drill.checks]]\nname = \"admin exists\"\nsql = \"SELECT 1 FROM customers WHERE email = 'admin@example.com'\"\nrows = true\n";

/// Validate XML with Python's parser and count testcases.
fn junit_testcases(path: &Path) -> usize {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E; t = E.parse(sys.argv[1]); print(len(t.getroot().findall('.//testcase')))"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "invalid JUnit XML: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report}"))
}

#[test]
fn mariadb_drill_passes_with_every_check_reported() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("drillshop");
    shop_mariadb(db, &name);
    let s = Setup::new();
    s.policy("shop", &drill_body(&db.url(&name), "mariadb", CHECKS));
    s.run(&["run", "shop"], &db.password).ok();
    let dir = s.repo.scratch("reports");
    let (j, x, m) = (dir.join("r.json"), dir.join("r.xml"), dir.join("r.md"));
    let out = s.run(
        &[
            "drill",
            "shop",
            "--json",
            j.to_str().unwrap(),
            "--junit",
            x.to_str().unwrap(),
            "--markdown",
            m.to_str().unwrap(),
        ],
        &db.password,
    );
    let out = out.ok();
    assert!(out.stdout_str().contains("PASSED"), "{}", out.stdout_str());
    let report: Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(check(&report, "restore")["status"], "passed");
    assert_eq!(check(&report, &format!("rows in {name}.orders"))["status"], "passed");
    assert_eq!(check(&report, &format!("rows in {name}.customers"))["detail"], "1251 rows, as at backup time");
    assert_eq!(check(&report, &format!("CHECK TABLE {name}"))["status"], "passed");
    for c in ["orders present", "known customer count", "admin exists", "RTO target", "RPO target"] {
        assert_eq!(check(&report, c)["status"], "passed", "{c}: {report}");
    }
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0 && report["rpo_seconds"].as_f64().unwrap() >= 0.0);
    for p in ["provision_ms", "restore_ms", "checks_ms", "teardown_ms"] {
        assert!(report["phases"][p].as_u64().is_some(), "{p}");
    }
    let checks = report["checks"].as_array().unwrap().len();
    assert_eq!(junit_testcases(&x), checks, "one testcase per check");
    let md = std::fs::read_to_string(&m).unwrap();
    assert!(md.contains("PASSED") && md.contains("| known customer count | passed |"), "{md}");
    // The result is stored in the repository.
    let mut c = s.repo.cmd(["--json", "drills", "--policy", "shop"]);
    c.env_remove("DRTOOL_STATE_DIR");
    let history = run_with_input(c, None).ok().json();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["snapshot_id"], report["snapshot_id"]);
    // Nothing left: the scratch server's processes and directory are gone.
    for node in report["nodes"].as_array().unwrap() {
        let port: u16 = node.as_str().unwrap().rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
        let left = common::procs::orphaned_scratch_holders(port);
        assert!(left.is_empty(), "port {port} still held by the torn-down scratch: {left:?}");
    }
}

#[test]
fn a_failing_user_check_fails_the_drill_and_names_it() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("drillbad");
    shop_mariadb(db, &name);
    let s = Setup::new();
    let wrong =
        "[[drill.checks]]\nname = \"customer count\"\nsql = \"SELECT COUNT(*) FROM customers\"\nexpect = \"999\"\n";
    s.policy("bad", &drill_body(&db.url(&name), "mariadb", wrong));
    s.run(&["run", "bad"], &db.password).ok();
    let out = s.run(&["drill", "bad"], &db.password).expect_code(8);
    assert!(
        out.stderr.contains("\"customer count\" failed") && out.stderr.contains("expected \"999\""),
        "{}",
        out.stderr
    );
}

#[test]
fn a_corrupted_pack_fails_the_drill_at_restore() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("drillcorrupt");
    shop_mariadb(db, &name);
    let s = Setup::new();
    s.policy("corrupt", &drill_body(&db.url(&name), "mariadb", ""));
    s.run(&["run", "corrupt"], &db.password).ok();
    for pack in s.repo.packs() {
        let mut b = std::fs::read(&pack).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        std::fs::write(&pack, b).unwrap();
    }
    let out = s.run(&["drill", "corrupt"], &db.password).expect_code(8);
    assert!(out.stderr.contains("restore failed"), "{}", out.stderr);
}

#[test]
fn postgres_drill_passes() {
    let Some(pg) = Postgres::shared() else { return };
    let name = fresh("drillpg");
    pg.sql(None, &format!("CREATE DATABASE {name}"));
    pg.sql(
        Some(&name),
        "CREATE TABLE items (id serial PRIMARY KEY, label text); INSERT INTO items (label) SELECT 'item ' || g FROM generate_series(1, 5000) g;\
         CREATE INDEX ON items (label);",
    );
    let s = Setup::new();
    s.policy(
        "pgshop",
        &format!(
            "[source]\nkind = \"postgres\"\nurl = \"{}\"\npassword_env = \"DB_PW\"\n[drill]\nscratch = \"postgres\"\n\
             [[drill.checks]]\nname = \"items\"\nsql = \"SELECT count(*) FROM items\"\nexpect = \"5000\"\n",
            pg.url(&name)
        ),
    );
    s.run(&["run", "pgshop"], &pg.password).ok();
    let report = s.run(&["--json", "drill", "pgshop"], &pg.password).ok().json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(check(&report, "items")["status"], "passed");
    assert_eq!(check(&report, &format!("rows in {name}.public.items"))["status"], "passed");
    assert_eq!(check(&report, &format!("amcheck {name}"))["status"], "passed");
}

#[test]
fn galera_drill_checks_all_three_nodes() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("drillgalera");
    shop_mariadb(db, &name);
    let s = Setup::new();
    s.policy("cluster", &drill_body(&db.url(&name), "galera", CHECKS));
    s.run(&["run", "cluster"], &db.password).ok();
    let out = s.run(&["--json", "drill", "cluster"], &db.password);
    let report = out.json();
    assert_eq!(report["ok"], true, "{report}\n{}", out.stderr);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 3);
    for n in 1..=3 {
        assert_eq!(check(&report, &format!("cluster [node {n}]"))["status"], "passed");
        assert_eq!(check(&report, &format!("known customer count [node {n}]"))["status"], "passed");
        assert_eq!(check(&report, &format!("rows in {name}.orders [node {n}]"))["status"], "passed");
    }
}

#[test]
fn external_drill_restores_under_temporary_names_and_drops_them() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("drillext");
    shop_mariadb(db, &name);
    let s = Setup::new();
    let body = drill_body(&db.url(&name), "external", CHECKS).replace(
        "scratch = \"external\"",
        &format!("scratch = \"external\"\nurl = \"{}\"\npassword_env = \"DB_PW\"", db.url("")),
    );
    s.policy("ext", &body);
    s.run(&["run", "ext"], &db.password).ok();
    let report = s.run(&["--json", "drill", "ext"], &db.password).ok().json();
    assert_eq!(report["ok"], true, "{report}");
    let left =
        db.sql(None, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'drtool\\_drill\\_%'");
    assert_eq!(left, "0", "temporary databases left behind");
}

#[test]
fn an_interrupted_drill_leaves_nothing_behind() {
    let Some(db) = MariaDb::shared() else { return };
    let name = fresh("drillint");
    shop_mariadb(db, &name);
    let s = Setup::new();
    s.policy("int", &drill_body(&db.url(&name), "mariadb", ""));
    s.run(&["run", "int"], &db.password).ok();
    let mut c = s.cmd(&["drill", "int"], &db.password);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Wait for the scratch server, then interrupt.
    let server = || descendants(child.id()).into_iter().find(|p| comm(*p) == "mariadbd");
    assert!(wait_until(Duration::from_secs(60), || server().is_some()), "no scratch server appeared");
    let pid = server().unwrap();
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
    let datadir = cmdline.split(' ').find_map(|a| a.strip_prefix("--datadir=")).map(PathBuf::from).expect("datadir");
    let port = cmdline.split(' ').find_map(|a| a.strip_prefix("--port=")).map(|p| p.parse::<u16>().unwrap());
    send_signal(child.id(), libc::SIGINT);
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    assert!(
        wait_until(Duration::from_secs(20), || !alive(pid)),
        "scratch mariadbd {pid} survived the interrupted drill"
    );
    assert!(wait_until(Duration::from_secs(20), || !datadir.exists()), "{} left behind", datadir.display());
    if let Some(port) = port {
        let datadir = datadir.to_string_lossy();
        let left: Vec<_> = common::procs::port_holders(port).into_iter().filter(|(_, c)| c.contains(datadir.as_ref())).collect();
        assert!(left.is_empty(), "port {port} still held by the interrupted drill's server: {left:?}");
    }
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
}

fn descendants(root: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut frontier = vec![root as i32];
    while let Some(p) = frontier.pop() {
        for c in children_of(p as u32) {
            out.push(c);
            frontier.push(c);
        }
    }
    out
}
