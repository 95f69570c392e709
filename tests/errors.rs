//! Bad input gets a clear message and the documented exit code, never a
//! panic (DESIGN.md principle 5; docs/EXIT_CODES.md). Every run made through
//! the common helpers also asserts that stderr shows no panic.

mod common;

use common::*;

#[test]
fn wrong_password_exits_12_for_every_command() {
    let repo = Repo::init();
    let v = repo.backup_stdin("db", b"data");
    let id = text(&v, "snapshot_id").to_string();
    let target = repo.scratch("t");
    let t = target.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["backup", "--stdin", "--name", "db"],
        vec!["restore", &id, "--stdout"],
        vec!["restore", "latest", "--target", t],
        vec!["check"],
        vec!["check", "--read-data"],
        vec!["key", "list"],
    ];
    for args in commands {
        let out = repo.run_pw("wrong password", &args).expect_code(12);
        assert!(out.stderr.contains("wrong password"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout: {}", out.stdout_str());
    }
    // Nothing was written by the refused backup, and the right password still works.
    assert_eq!(repo.snapshots().len(), 1);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

    // The password file works like the variable, and a trailing newline is not part of it.
    let pw_file = repo.scratch("pw").join("password");
    write_file(&pw_file, format!("{PASSWORD}\n").as_bytes());
    let mut cmd = drtool();
    cmd.arg("--repo").arg(&repo.path).arg("--password-file").arg(&pw_file).arg("snapshots");
    run_with_input(cmd, None).ok();
    write_file(&pw_file, b"nope\n");
    let mut cmd = drtool();
    cmd.arg("--repo").arg(&repo.path).arg("--password-file").arg(&pw_file).arg("snapshots");
    run_with_input(cmd, None).expect_code(12);
}

#[test]
fn missing_repository_exits_10() {
    let repo = Repo::uninitialised();
    let target = repo.scratch("t");
    let t = target.to_str().unwrap();
    for args in [
        vec!["snapshots"],
        vec!["backup", "--stdin", "--name", "db"],
        vec!["restore", "latest", "--stdout"],
        vec!["restore", "latest", "--target", t],
        vec!["check"],
        vec!["key", "list"],
    ] {
        let out = repo.run(&args).expect_code(10);
        assert!(out.stderr.contains("no repository"), "{args:?}: {}", out.stderr);
    }
    assert!(!repo.path.exists(), "a failed command must not create the repository directory");
    // Also without a password: the missing repository is reported first.
    let mut cmd = drtool();
    cmd.arg("--repo").arg(&repo.path).arg("snapshots");
    run_with_input(cmd, None).expect_code(10);
    // An empty existing directory is not a repository either.
    std::fs::create_dir_all(&repo.path).unwrap();
    repo.run(["snapshots"]).expect_code(10);
}

#[test]
fn unknown_snapshot_exits_13() {
    let repo = Repo::init();
    // Empty repository: nothing is "latest".
    repo.run(["restore", "latest", "--stdout"]).expect_code(13);
    let v = repo.backup_stdin("db", b"data");
    let id = text(&v, "snapshot_id");
    let unknown = if id.starts_with("deadbeef") { "cafebabe" } else { "deadbeef" };
    for args in [
        vec!["restore", unknown, "--stdout"],
        vec!["restore", &"0".repeat(64), "--stdout"],
        vec!["restore", "not-hex", "--stdout"],
        vec!["restore", "latest", "--name", "no-such-name", "--stdout"],
        vec!["restore", id, "--name", "other-name", "--stdout"],
    ] {
        let out = repo.run(&args).expect_code(13);
        assert!(out.stderr.contains("not found"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    let target = repo.scratch("t");
    repo.restore_target(unknown, &target, &[]).expect_code(13);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn ambiguous_or_invalid_usage_exits_2() {
    let repo = Repo::init();
    let dir = repo.scratch("src");
    let d = dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["backup"], "exactly one source"),
        (vec!["backup", "--name", "x"], "exactly one source"),
        (vec!["backup", "--stdin"], "--name"),
        (vec!["backup", "--", "echo", "hi"], "--name"),
        (vec!["backup", "--stdin", "--name", "x", d], "exactly one source"),
        (vec!["backup", "--stdin", "--name", "x", "--", "echo"], "exactly one source"),
        (vec!["backup", "--stdin", "--name", "x", "--compression", "99"], "compression"),
        (vec!["restore", "latest"], "--target"),
        (vec!["restore", "latest", "--stdout", "--target", d], "--target"),
        (vec!["check", "--read-data-subset", "0"], "read-data-subset"),
        (vec!["check", "--read-data-subset", "150"], "read-data-subset"),
        (vec!["check", "--read-data", "--read-data-subset", "10"], "read-data"),
        (vec!["no-such-command"], "no-such-command"),
        (vec!["backup", "--no-such-flag"], "no-such-flag"),
    ];
    for (args, says) in cases {
        let out = repo.run(&args).expect_code(2);
        assert!(out.stderr.contains(says), "{args:?} should mention {says:?}: {}", out.stderr);
    }
    assert!(repo.snapshots().is_empty(), "no usage error may create a snapshot");

    // No repository given at all.
    let mut cmd = drtool();
    cmd.args(["snapshots"]).env("DRTOOL_PASSWORD", PASSWORD);
    let out = run_with_input(cmd, None).expect_code(2);
    assert!(out.stderr.contains("--repo"), "{}", out.stderr);
    // No password available (stdin is not a terminal).
    let mut cmd = drtool();
    cmd.arg("--repo").arg(&repo.path).arg("snapshots");
    let out = run_with_input(cmd, None).expect_code(2);
    assert!(out.stderr.contains("DRTOOL_PASSWORD"), "{}", out.stderr);
}

#[test]
fn init_refuses_an_existing_repository_and_keeps_it() {
    let repo = Repo::init();
    let config = std::fs::read(repo.path.join("config")).unwrap();
    repo.backup_stdin("db", b"keep me");
    let out = repo.run_pw("another password", ["init"]);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(std::fs::read(repo.path.join("config")).unwrap(), config, "config must be untouched");
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"keep me");
}

#[test]
fn unsupported_repository_version_is_a_clear_error() {
    let repo = Repo::init();
    let path = repo.path.join("config");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(config["version"], 1, "{config}");
    config["version"] = 999.into();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = repo.run(["snapshots"]);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("999"), "{}", out.stderr);

    std::fs::write(&path, b"{ not json").unwrap();
    let out = repo.run(["snapshots"]);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("config"), "{}", out.stderr);
}
