//! What drtool's children inherit (docs/DECISIONS.md, "What child processes
//! inherit"): no child sees drtool's secrets (repository and database
//! passwords, AWS keys, `password_env` variables). Each kind of child records
//! its environment with `env` (hooks, `password_command`, command sources,
//! wrappers around the real dump tools, a stand-in mongodump); a scratch
//! server's is read from /proc/PID/environ.

mod common;

use common::mariadb::MariaDb;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// (variable, value) drtool is started with; no value may reach a child.
const SECRETS: [(&str, &str); 7] = [
    ("DRTOOL_SOURCE_PASSWORD", "leak-source-pw-5e1"),
    ("DRTOOL_TARGET_PASSWORD", "leak-target-pw-5e2"),
    ("DRTOOL_NEW_PASSWORD", "leak-new-pw-5e3"),
    ("DRTOOL_OTHER_PASSWORD_X", "leak-other-pw-5e4"),
    ("AWS_SECRET_ACCESS_KEY", "leak-aws-secret-5e5"),
    ("AWS_ACCESS_KEY_ID", "leak-aws-key-id-5e6"),
    ("AWS_SESSION_TOKEN", "leak-aws-token-5e7"),
];

/// Not a secret: children keep the rest of the environment.
const KEEP: (&str, &str) = ("DRTOOL_TEST_KEEP_ME", "visible-value-5e9");

fn with_secrets(c: &mut Command) -> &mut Command {
    c.envs(SECRETS).env(KEEP.0, KEEP.1)
}

/// `sh -c` script that writes its environment to `file` (a TOML-safe path).
fn record(file: &Path) -> String {
    format!("env > '{}'", file.display())
}

/// The recorded environment; panics if the child never ran.
fn recorded(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{} was not written: {e}", file.display()))
}

#[track_caller]
fn assert_clean(what: &str, env: &str, extra: &[&str]) {
    for value in SECRETS.iter().map(|(_, v)| *v).chain(extra.iter().copied()) {
        assert!(!env.contains(value), "{what} inherited the secret {value:?}:\n{env}");
    }
}

fn policies_dir(repo: &Repo) -> PathBuf {
    repo.scratch("policies")
}

fn run_policy(repo: &Repo, name: &str, extra_env: &[(&str, &str)]) -> Out {
    let mut c = drtool();
    c.arg("--policies").arg(policies_dir(repo)).args(["run", name]).env("DRTOOL_STATE_DIR", repo.scratch("state"));
    with_secrets(&mut c).envs(extra_env.iter().copied()).env("DRTOOL_PASSWORD", "leak-drtool-pw-5ea");
    run_with_input(c, None)
}

#[test]
fn hooks_password_command_and_command_sources_see_no_secrets() {
    let repo = Repo::init();
    let d = repo.scratch("envs");
    let pw_file = repo.dir.path().join("repo.pass");
    std::fs::write(&pw_file, &repo.password).unwrap();
    let policy = format!(
        "name = \"envp\"\nrepository = \"{}\"\npassword_command = [\"sh\", \"-c\", \"{}; cat '{}'\"]\n\
         [source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"{}; echo data\"]\n\
         [hooks]\npre = [[\"sh\", \"-c\", \"{}\"]]\npost = [[\"sh\", \"-c\", \"{}\"]]\n",
        repo.path.display(),
        record(&d.join("pwcmd.env")),
        pw_file.display(),
        record(&d.join("source.env")),
        record(&d.join("pre.env")),
        record(&d.join("post.env")),
    );
    std::fs::write(policies_dir(&repo).join("envp.toml"), policy).unwrap();
    // MYSQL_PWD is not drtool's here (no database source): a `-- mysqldump` may rely on it.
    run_policy(&repo, "envp", &[("MYSQL_PWD", "users-own-mysql-pw")]).ok();

    let keep = format!("{}={}", KEEP.0, KEEP.1);
    for f in ["pwcmd.env", "source.env", "pre.env", "post.env"] {
        let env = recorded(&d.join(f));
        assert_clean(f, &env, &["leak-drtool-pw-5ea", &repo.password]);
        assert!(env.contains(&keep) && env.contains("PATH="), "{f} lost the rest of the environment:\n{env}");
        assert!(env.contains("MYSQL_PWD=users-own-mysql-pw"), "{f}: MYSQL_PWD is not drtool's here:\n{env}");
    }
    assert!(recorded(&d.join("pre.env")).contains("DRTOOL_POLICY=envp"));
    assert!(recorded(&d.join("post.env")).contains("DRTOOL_RESULT=success"));
}

/// The hooks of a database policy run before drtool reads the database
/// password, and still must not see it, nor the repository's `password_env`.
#[test]
fn hooks_of_a_database_policy_see_neither_its_password_env_nor_the_engine_variable() {
    let repo = Repo::init();
    let d = repo.scratch("envs");
    let policy = format!(
        "name = \"dbp\"\nrepository = \"{}\"\npassword_env = \"REPO_PW_VAR\"\n\
         [source]\nkind = \"mysql\"\nurl = \"mysql://backup@127.0.0.1:9/shop?bin_dir={}\"\npassword_env = \"SHOP_DB_PW\"\n\
         [hooks]\npre = [[\"sh\", \"-c\", \"{}\"]]\npost = [[\"sh\", \"-c\", \"{}\"]]\n",
        repo.path.display(),
        d.display(),
        record(&d.join("pre.env")),
        record(&d.join("post.env")),
    );
    std::fs::write(policies_dir(&repo).join("dbp.toml"), policy).unwrap();
    let mut c = drtool();
    c.arg("--policies").arg(policies_dir(&repo)).args(["run", "dbp"]).env("DRTOOL_STATE_DIR", repo.scratch("state"));
    with_secrets(&mut c).env("REPO_PW_VAR", &repo.password);
    c.env("SHOP_DB_PW", "leak-shop-db-pw-5eb").env("MYSQL_PWD", "leak-mysql-pwd-5ec");
    let out = run_with_input(c, None);
    // No client tool in bin_dir: the backup fails after the pre hook; the post hook runs anyway.
    assert_ne!(out.code(), Some(0), "{}", out.stderr);
    for f in ["pre.env", "post.env"] {
        let env = recorded(&d.join(f));
        assert_clean(f, &env, &[&repo.password, "leak-shop-db-pw-5eb", "leak-mysql-pwd-5ec"]);
    }
}

#[test]
fn a_command_source_from_the_command_line_does_not_see_the_repository_password() {
    let repo = Repo::init();
    let f = repo.scratch("envs").join("cmd.env");
    let mut c = repo.cmd(["backup", "--name", "x", "--", "sh", "-c", &format!("{}; echo data", record(&f))]);
    with_secrets(&mut c);
    run_with_input(c, None).ok();
    assert_clean("backup -- COMMAND", &recorded(&f), &[&repo.password]);
}

/// A stand-in mongodump in `bin_dir` records its environment and writes a real archive.
#[test]
fn a_dump_tool_gets_its_password_through_its_config_file_only() {
    let repo = Repo::init();
    let bin = repo.scratch("bin");
    let archive = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mongodump/test.bar.archive");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'mongodump version: 100.9.4'; exit 0; }}\n\
         env > '{b}/mongodump.env'\nfor a in \"$@\"; do case \"$a\" in --config=*) cp \"${{a#--config=}}\" '{b}/config';; esac; done\n\
         cat '{}'\n",
        archive.display(),
        b = bin.display()
    );
    let tool = bin.join("mongodump");
    std::fs::write(&tool, script).unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let url = format!("mongodb://backup@127.0.0.1:27017/?bin_dir={}", bin.display());
    let mut c = repo.cmd(["backup", "--source", &url, "--name", "mongo"]);
    with_secrets(&mut c).env("MYSQL_PWD", "leak-mysql-pwd-5ec").env("PGPASSWORD", "leak-pg-pw-5ed");
    run_with_input(c, None).ok();
    let env = recorded(&bin.join("mongodump.env"));
    assert_clean("mongodump", &env, &[&repo.password, "leak-mysql-pwd-5ec", "leak-pg-pw-5ed"]);
    assert!(env.contains(&format!("{}={}", KEEP.0, KEEP.1)), "mongodump lost the rest of the environment");
    // The password it does need came through --config.
    assert!(recorded(&bin.join("config")).contains(SECRETS[0].1));
}

/// The real MariaDB tools, through wrappers in `bin_dir` that record their
/// environment and exec them; the password comes from MYSQL_PWD.
#[test]
fn real_mariadb_tools_get_no_secret_from_the_environment() {
    let Some(db) = MariaDb::shared() else { return };
    db.sql(None, "CREATE DATABASE IF NOT EXISTS envshop; CREATE TABLE IF NOT EXISTS envshop.t (x int); INSERT INTO envshop.t VALUES (1)");
    let repo = Repo::init();
    let bin = repo.scratch("bin");
    for (name, real) in [("mariadb", ["mariadb", "mysql"]), ("mariadb-dump", ["mariadb-dump", "mysqldump"])] {
        let real = real.iter().find_map(|n| common::mariadb::find_bin(n)).expect("MariaDB client tools");
        let w = bin.join(name);
        let script = format!("#!/bin/sh\nenv >> '{}/{name}.env'\nexec '{}' \"$@\"\n", bin.display(), real.display());
        std::fs::write(&w, script).unwrap();
        std::fs::set_permissions(&w, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let url = format!("{}?bin_dir={}", db.url("envshop"), bin.display());
    let mut c = repo.cmd(["backup", "--source", &url, "--name", "envshop"]);
    c.envs(SECRETS.iter().filter(|(k, _)| *k != "DRTOOL_SOURCE_PASSWORD").copied()).env("MYSQL_PWD", &db.password);
    run_with_input(c, None).ok();
    for f in ["mariadb.env", "mariadb-dump.env"] {
        let env = recorded(&bin.join(f));
        assert_clean(f, &env, &[&repo.password, &db.password]);
    }
}

// ---------------------------------------------------------------- scratch servers

const HELPER_ENV: &str = "DRTOOL_TEST_SCRATCH_ENV_HELPER";

/// Not a test: run by `scratch_servers_get_a_minimal_environment` in a child
/// process whose environment holds the secrets; prints each server's environ.
#[test]
#[ignore = "helper process for scratch_servers_get_a_minimal_environment"]
fn scratch_env_helper() {
    use drtool::drill::scratch::{Scratch, ScratchError, ScratchKind};
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    match Scratch::start(ScratchKind::Mariadb) {
        Ok(s) => {
            for pid in s.pids() {
                let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
                println!("ENVIRON {pid} {}", String::from_utf8_lossy(&environ).replace('\0', "\u{1}"));
            }
            println!("DONE");
        }
        Err(ScratchError::Unavailable(why)) => println!("UNAVAILABLE {why}"),
        Err(e) => println!("FAILED {e}"),
    }
}

#[test]
fn scratch_servers_get_a_minimal_environment() {
    let mut c = Command::new(std::env::current_exe().expect("current_exe"));
    c.args(["--ignored", "--exact", "scratch_env_helper", "--nocapture"]).env(HELPER_ENV, "1");
    with_secrets(&mut c).env("DRTOOL_PASSWORD", "leak-drtool-pw-5ea").env("MYSQL_PWD", "leak-mysql-pwd-5ec");
    let out = c.stderr(Stdio::inherit()).output().expect("run the helper");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(why) = text.lines().find_map(|l| l.find("UNAVAILABLE ").map(|i| &l[i..])) {
        assert!(!common::mariadb::in_ci(), "mariadb scratch unavailable but CI=true: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let environs: Vec<&str> = text.lines().filter_map(|l| l.find("ENVIRON ").map(|i| &l[i..])).collect();
    assert!(!environs.is_empty() && text.contains("DONE"), "helper failed:\n{text}");
    for e in environs {
        assert_clean("scratch server", e, &["leak-drtool-pw-5ea", "leak-mysql-pwd-5ec"]);
        assert!(!e.contains(KEEP.1), "a scratch server got more than the minimal environment: {e}");
        assert!(e.contains("PATH="), "a scratch server lost PATH: {e}");
    }
}
