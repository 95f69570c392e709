//! Point-in-time recovery for MariaDB against real private servers with
//! binary logging and GTIDs: `drtool binlog POLICY` captures the log while a
//! workload writes (and is SIGKILLed and restarted), then restores to a
//! moment by time, GTID and position must reproduce the checksums taken at
//! that moment; a gap (binlogs purged while capture was stopped) is named and
//! refused.

mod common;

use common::mariadb::MariaDb;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const NAME: &str = "shop";
const TABLES: [&str; 2] = ["accounts", "ledger"];

fn server() -> Option<MariaDb> {
    MariaDb::start_with(&["--log-bin=mysql-bin", "--server-id=7", "--binlog-format=MIXED"])
}

struct Setup {
    db: MariaDb,
    repo: Repo,
    policies: PathBuf,
    state: PathBuf,
}

fn setup() -> Option<Setup> {
    let db = server()?;
    let repo = Repo::init();
    let policies = repo.scratch("policies");
    let state = repo.scratch("state");
    let policy = format!(
        "name = \"{NAME}\"\nrepository = \"{}\"\npassword_env = \"DRTOOL_PASSWORD\"\n\
         [source]\nkind = \"mysql\"\nurl = \"{}\"\npassword_env = \"SRC_PW\"\n\
         [binlog]\nflush_seconds = 1\n",
        repo.path.display(),
        db.url(NAME)
    );
    std::fs::write(policies.join("shop.toml"), policy).unwrap();
    db.sql(None, &format!("CREATE DATABASE {NAME}"));
    db.sql(
        Some(NAME),
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
         CREATE TABLE ledger (id INT PRIMARY KEY AUTO_INCREMENT, account INT, delta BIGINT, note VARCHAR(40)) ENGINE=InnoDB;
         INSERT INTO accounts SELECT seq, 1000 FROM seq_1_to_50;",
    );
    Some(Setup { db, repo, policies, state })
}

impl Setup {
    fn drtool(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.repo.cmd(args);
        c.arg("--policies").arg(&self.policies);
        c.env("MYSQL_PWD", &self.db.password).env("SRC_PW", &self.db.password).env("DRTOOL_STATE_DIR", &self.state);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        run_with_input(self.drtool(args), None)
    }

    /// Start `drtool binlog shop` in the background, stderr to `log`.
    fn start_capture(&self, log: &Path) -> Child {
        let mut c = self.drtool(&["-v", "binlog", NAME]);
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        c.stdout(Stdio::null()).stderr(f);
        c.spawn().expect("start drtool binlog")
    }

    fn master(&self) -> (String, u64) {
        let row = self.db.sql(None, "SHOW MASTER STATUS");
        let mut f = row.split('\t');
        (f.next().unwrap().to_string(), f.next().unwrap().parse().unwrap())
    }

    fn status(&self) -> serde_json::Value {
        self.run(&["--json", "binlog", NAME, "--status"]).ok().json()
    }

    /// Wait until the catalog holds the server's binlog up to its current end.
    fn wait_caught_up(&self, log: &Path) {
        let (file, pos) = self.master();
        let reached = wait_until(Duration::from_secs(120), || {
            let s = self.status();
            // At least: the server may append events of its own (binlog checkpoints) meanwhile.
            s["files"]
                .as_array()
                .and_then(|f| f.last())
                .is_some_and(|l| l["file"] == file.as_str() && l["size"].as_u64().is_some_and(|n| n >= pos))
        });
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(reached, "capture never reached {file}:{pos}; status {}\ncapture log:\n{log}", self.status());
    }

    fn checksums(&self, db: &str) -> Vec<String> {
        TABLES
            .iter()
            .map(|t| self.db.sql(Some(db), &format!("CHECKSUM TABLE {t}")))
            .map(|s| s.replace(db, "DB"))
            .collect()
    }

    /// Deterministic, non-idempotent writes: a transaction replayed twice changes the sums.
    fn workload(&self, round: u32, n: u32) {
        for i in 0..n {
            let a = 1 + (round * 31 + i * 7) % 50;
            self.db.sql(
                Some(NAME),
                &format!(
                    "BEGIN; UPDATE accounts SET balance = balance + {d} WHERE id = {a};
                     INSERT INTO ledger (account, delta, note) VALUES ({a}, {d}, 'r{round} i{i}'); COMMIT;",
                    d = i64::from(i) - 3
                ),
            );
        }
    }

    fn unix_now(&self) -> i64 {
        self.db.sql(None, "SELECT UNIX_TIMESTAMP()").parse().unwrap()
    }
}

fn stop(mut child: Child) {
    send_signal(child.id(), libc::SIGTERM);
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    assert!(status.success(), "drtool binlog exited {status:?} on SIGTERM");
}

#[test]
fn restore_to_a_moment_by_time_gtid_and_position_after_capture_was_killed() {
    let Some(s) = setup() else { return };
    s.run(&["backup", "--source", &s.db.url(NAME), "--name", NAME]).ok();
    let log = s.repo.dir.path().join("capture.log");
    let capture = s.start_capture(&log);
    s.workload(1, 40);
    s.db.sql(None, "FLUSH BINARY LOGS");
    s.workload(2, 40);
    // A crash mid-workload: the restarted capture must continue without gap or duplicate.
    send_signal(capture.id(), libc::SIGKILL);
    let mut capture = capture;
    wait_timeout(&mut capture, Duration::from_secs(30));
    s.workload(3, 40);
    let capture = s.start_capture(&log);
    s.db.sql(None, "FLUSH BINARY LOGS");
    s.workload(4, 40);

    // The moment T: checksums, coordinates, the last GTID, and a time strictly
    // between the last transaction before it and the first after it (binlog
    // timestamps are whole seconds, so the next write waits for a later second).
    let at_t = s.checksums(NAME);
    let (file_t, pos_t) = s.master();
    let gtid_t = s.db.sql(None, "SELECT @@gtid_binlog_pos");
    let last_second = s.unix_now();
    assert!(wait_until(Duration::from_secs(10), || s.unix_now() >= last_second + 2));
    let time_t = chrono::DateTime::from_timestamp(last_second + 1, 0).unwrap().to_rfc3339();

    s.workload(5, 20);
    s.db.sql(Some(NAME), "DROP TABLE ledger; UPDATE accounts SET balance = 0");
    s.wait_caught_up(&log);
    stop(capture);
    let st = s.status();
    assert_eq!(st["summary"]["gaps"].as_array().map(Vec::len), Some(0), "{st}");
    s.run(&["check"]).ok();
    let shown = s.run(&["--json", "show", "latest", "--name", NAME]).ok().json();
    assert!(shown["binlog"]["newest_event_age_seconds"].is_i64(), "{shown}");
    assert!(st["summary"]["files"].as_u64().unwrap() >= 3, "{st}");

    let to = s.db.url("");
    let position = format!("{file_t}:{pos_t}");
    for (target, flag, value) in [
        ("shop_time", "--at", time_t.as_str()),
        ("shop_gtid", "--at-gtid", gtid_t.as_str()),
        ("shop_pos", "--at-position", position.as_str()),
    ] {
        let args = ["restore", "latest", "--name", NAME, "--to", to.as_str(), "--rename", target, "--yes", flag, value];
        let out = s.run(&args).ok();
        assert!(out.stdout_str().contains("Point-in-time recovery"), "{}", out.stdout_str());
        assert_eq!(
            s.checksums(target),
            at_t,
            "restore {flag} {value} differs from the state at T\n{}",
            out.stdout_str()
        );
    }
    // The original database still shows the disaster.
    assert!(s.db.try_sql(Some(NAME), "SELECT COUNT(*) FROM ledger").is_err());
}

#[test]
fn a_purged_binlog_is_a_named_gap_and_restores_across_it_refuse() {
    let Some(s) = setup() else { return };
    s.run(&["backup", "--source", &s.db.url(NAME), "--name", NAME]).ok();
    let log = s.repo.dir.path().join("capture.log");
    let capture = s.start_capture(&log);
    s.workload(1, 5);
    s.wait_caught_up(&log);
    stop(capture);
    // While capture is stopped: two rotations, then the server purges them.
    s.db.sql(None, "FLUSH BINARY LOGS");
    s.workload(2, 5);
    let (lost, _) = s.master();
    s.db.sql(None, "FLUSH BINARY LOGS");
    s.workload(3, 5);
    let (current, _) = s.master();
    // A file a dump thread of the stopped capture still holds open is kept by
    // PURGE; repeat until the server really no longer has it.
    let purged = wait_until(Duration::from_secs(60), || {
        s.db.sql(None, &format!("PURGE BINARY LOGS TO '{current}'"));
        !s.db.sql(None, "SHOW BINARY LOGS").contains(&lost)
    });
    assert!(purged, "the server kept {lost}: {}", s.db.sql(None, "SHOW BINARY LOGS"));
    s.workload(4, 5);
    let capture = s.start_capture(&log);
    s.wait_caught_up(&log);
    stop(capture);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("BINLOG GAP") && text.contains(&lost), "capture did not name the gap:\n{text}");
    let out = s.run(&["binlog", NAME, "--status"]).expect_code(4);
    assert!(out.stdout_str().contains("GAP"), "{}", out.stdout_str());
    let check = s.run(&["check"]).expect_code(4);
    assert!(check.stdout_str().contains("BINLOG GAP") && check.stdout_str().contains(&lost), "{}", check.stdout_str());
    let (file, pos) = s.master();
    let to = s.db.url("");
    let refused = s
        .run(&[
            "restore",
            "latest",
            "--name",
            NAME,
            "--to",
            &to,
            "--rename",
            "x",
            "--yes",
            "--at-position",
            &format!("{file}:{pos}"),
        ])
        .expect_code(6);
    assert!(refused.stderr.contains("gap"), "{}", refused.stderr);
    assert!(s.db.try_sql(Some("x"), "SELECT 1").is_err(), "a refused restore created the database");
    let future = s
        .run(&[
            "restore",
            "latest",
            "--name",
            NAME,
            "--to",
            &to,
            "--rename",
            "x",
            "--yes",
            "--at",
            "2999-01-01T00:00:00Z",
        ])
        .expect_code(6);
    assert!(future.stderr.contains("future"), "{}", future.stderr);
    let unknown = s
        .run(&["restore", "latest", "--name", NAME, "--to", &to, "--rename", "x", "--yes", "--at-gtid", "0-7-999999"])
        .expect_code(6);
    assert!(unknown.stderr.contains("not in the captured binlog"), "{}", unknown.stderr);
}
