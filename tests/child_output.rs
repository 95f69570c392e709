//! Children that write a lot to a pipe drtool does not consume as data: a
//! pipe holds 64 KiB, so unless drtool drains it while the child runs, the
//! child blocks forever. Hooks (stderr) and the psql session PostgreSQL
//! backups keep open for the exported snapshot (NOTICE/LOG lines) are tested.
//! Each test only asserts success: a deadlock shows as a hook timeout, or as
//! the hang guard's kill.

mod common;

use common::postgres::Postgres;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

struct Setup {
    repo: Repo,
    policies: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let repo = Repo::init();
        let (policies, state) = (repo.scratch("policies"), repo.scratch("state"));
        Setup { repo, policies, state }
    }

    /// Policy `name` with a command source and `hooks` (TOML of the [hooks] table).
    fn policy(&self, name: &str, hooks: &str) {
        let pw_file = self.repo.dir.path().join("repo.pass");
        std::fs::write(&pw_file, &self.repo.password).unwrap();
        let text = format!(
            "name = \"{name}\"\nrepository = \"{}\"\npassword_file = \"{}\"\n\
             [source]\nkind = \"command\"\ncommand = [\"echo\", \"data\"]\n[hooks]\n{hooks}",
            self.repo.path.display(),
            pw_file.display()
        );
        std::fs::write(self.policies.join(format!("{name}.toml")), text).unwrap();
    }

    fn run(&self, name: &str) -> Out {
        let mut c = drtool();
        c.arg("--policies").arg(&self.policies).args(["run", name]).env("DRTOOL_STATE_DIR", &self.state);
        run_with_input(c, None)
    }
}

/// 1 MiB to stderr and 1 MiB to stdout, then `tail`.
const FLOOD: &str = "head -c 1048576 /dev/zero | tr '\\\\0' e >&2; head -c 1048576 /dev/zero | tr '\\\\0' o";

#[test]
fn a_hook_flooding_stderr_and_stdout_completes() {
    let s = Setup::new();
    s.policy("noisy", &format!("pre = [[\"sh\", \"-c\", \"{FLOOD}\"]]\ntimeout_seconds = 120\n"));
    let out = s.run("noisy");
    assert_eq!(out.code(), Some(0), "a hook writing 1 MiB of output did not complete:\n{}", out.stderr);
    assert_eq!(s.repo.snapshots().len(), 1);
}

#[test]
fn a_failing_hook_flooding_stderr_is_reported_with_its_last_words() {
    let s = Setup::new();
    let script = format!("{FLOOD}; echo last-words-$((6 * 7)) >&2; exit 3");
    s.policy("noisy", &format!("pre = [[\"sh\", \"-c\", \"{script}\"]]\ntimeout_seconds = 120\n"));
    let out = s.run("noisy").expect_code(5);
    // Computed by the hook, so not found in its command line, which the error shows too.
    assert!(out.stderr.contains("last-words-42"), "{}", out.stderr);
    assert!(s.repo.snapshots().is_empty());
}

/// The database makes every query of the session print its parse tree and
/// plan (LOG lines on psql's stderr): far more than a pipe holds.
#[test]
fn a_postgres_backup_whose_session_floods_stderr_completes() {
    let Some(pg) = Postgres::shared() else { return };
    pg.sql(None, "CREATE DATABASE noisy");
    let tables: String =
        (0..20).map(|i| format!("CREATE TABLE t{i} (id int, v text); INSERT INTO t{i} VALUES ({i}, 'x');")).collect();
    pg.sql(Some("noisy"), &tables);
    pg.sql(
        None,
        "ALTER DATABASE noisy SET client_min_messages = log; ALTER DATABASE noisy SET debug_print_parse = on; \
         ALTER DATABASE noisy SET debug_print_plan = on; ALTER DATABASE noisy SET debug_pretty_print = on",
    );
    let repo = Repo::init();
    let mut c = repo.cmd(["--json", "backup", "--source", &pg.url("noisy"), "--name", "noisy"]);
    c.env("PGPASSWORD", &pg.password);
    let mut child = c.spawn().expect("spawn drtool");
    let (stdout, stderr) = (collect(child.stdout.take().unwrap()), collect(child.stderr.take().unwrap()));
    // A hang guard only: a deadlocked session never ends by itself.
    let status = wait_timeout(&mut child, Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(status.success(), "backup of a database whose session is noisy failed ({status}):\n{stderr}");
    let out: serde_json::Value = serde_json::from_slice(&stdout.join().unwrap()).expect("json report");
    assert!(out["snapshot_id"].is_string(), "{out}");
}
