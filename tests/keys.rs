//! Key slots: several passwords open one repository; slots can be added,
//! removed (not the one in use) and re-keyed without touching the data.

mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsStr;

const SECOND: &str = "second password, for the on-call engineer";
const CHANGED: &str = "changed password 2";

fn keys(repo: &Repo, password: &str) -> Vec<Value> {
    match repo.run_pw(password, ["--json", "key", "list"]).ok().json() {
        Value::Array(v) => v,
        other => panic!("key list --json is not an array: {other}"),
    }
}

fn current(keys: &[Value]) -> Vec<String> {
    keys.iter().filter(|k| k["current"] == true).map(|k| text(k, "id").to_string()).collect()
}

#[test]
fn add_list_remove_and_change_passwords() {
    let repo = Repo::init();
    let data = random_bytes(8, 100_000);
    repo.backup_stdin("db", &data);
    let first_keys = keys(&repo, PASSWORD);
    assert_eq!(first_keys.len(), 1);
    let first_id = current(&first_keys).pop().expect("one current key");

    // key add: the second password is taken from DRTOOL_NEW_PASSWORD.
    let out = run_with_input(
        {
            let mut c = repo.cmd(["key", "add"]);
            c.env("DRTOOL_NEW_PASSWORD", SECOND);
            c
        },
        None,
    )
    .ok();
    assert!(out.stdout_str().contains("added key"), "{}", out.stdout_str());

    // Both passwords open the repository and see the same data.
    for pw in [PASSWORD, SECOND] {
        assert_eq!(repo.run_pw(pw, ["restore", "latest", "--stdout"]).ok().stdout, data, "password {pw:?}");
    }
    let by_first = keys(&repo, PASSWORD);
    let by_second = keys(&repo, SECOND);
    assert_eq!(by_first.len(), 2);
    assert_eq!(current(&by_first), vec![first_id.clone()], "exactly one key is current: {by_first:?}");
    let second_current = current(&by_second);
    assert_eq!(second_current.len(), 1, "exactly one key is current: {by_second:?}");
    let second_id = second_current[0].clone();
    assert_ne!(first_id, second_id);
    // The human-readable list marks the current key.
    let human = repo.run_pw(SECOND, ["key", "list"]).ok().stdout_str();
    let marked: Vec<&str> = human.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{human}");
    assert!(marked[0].contains(&second_id), "{human}");

    // Removing the key in use is refused, and it keeps working.
    let out = repo.run_pw(SECOND, ["key", "remove", &second_id]);
    assert_ne!(out.code(), Some(0), "removing the current key must be refused");
    assert!(out.stderr.contains("refusing"), "{}", out.stderr);
    assert_eq!(keys(&repo, SECOND).len(), 2);
    // An unknown key id is "not found".
    repo.run_pw(SECOND, ["key", "remove", "ffffffffffff"]).expect_code(13);

    // Removing the other key (by unique prefix) works; its password stops working.
    repo.run_pw(SECOND, ["key", "remove", &first_id[..12]]).ok();
    assert_eq!(keys(&repo, SECOND).len(), 1);
    repo.run_pw(PASSWORD, ["snapshots"]).expect_code(12);

    // key passwd: the old password then fails with 12, the new one works, data intact.
    let out = run_with_input(
        {
            let mut c = repo.cmd_pw(SECOND, ["key", "passwd"]);
            c.env("DRTOOL_NEW_PASSWORD", CHANGED);
            c
        },
        None,
    )
    .ok();
    assert!(out.stdout_str().contains("password changed"), "{}", out.stdout_str());
    let out = repo.run_pw(SECOND, ["snapshots"]).expect_code(12);
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    assert_eq!(repo.run_pw(CHANGED, ["restore", "latest", "--stdout"]).ok().stdout, data);
    let after = keys(&repo, CHANGED);
    assert_eq!(after.len(), 1, "passwd replaces the slot: {after:?}");
    assert_eq!(after[0]["current"], true);
    assert_eq!(std::fs::read_dir(repo.path.join("keys")).unwrap().count(), 1);
}

#[test]
fn new_password_from_a_file_and_empty_passwords_refused() {
    let repo = Repo::init();
    let file = repo.scratch("pw").join("new");
    write_file(&file, format!("{SECOND}\n").as_bytes());
    repo.run([OsStr::new("key"), OsStr::new("add"), OsStr::new("--new-password-file"), file.as_os_str()]).ok();
    repo.run_pw(SECOND, ["snapshots"]).ok();

    // An empty new password is a usage error and adds no slot.
    write_file(&file, b"\n");
    repo.run([OsStr::new("key"), OsStr::new("add"), OsStr::new("--new-password-file"), file.as_os_str()])
        .expect_code(2);
    let mut c = repo.cmd(["key", "add"]);
    c.env("DRTOOL_NEW_PASSWORD", "");
    run_with_input(c, None).expect_code(2);
    // No new password at all (no terminal to prompt on).
    repo.run(["key", "add"]).expect_code(2);
    assert_eq!(keys(&repo, PASSWORD).len(), 2);
}
