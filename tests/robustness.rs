//! Regressions for problems found in review: a closed stdout, one damaged
//! manifest among good ones, unusable stream names, odd backup roots.

mod common;

use common::*;
use std::process::Stdio;

#[test]
fn closed_stdout_is_not_an_error() {
    let repo = Repo::init();
    repo.backup_stdin("db", b"some data");
    for args in [vec!["snapshots"], vec!["--json", "snapshots"], vec!["--json", "check"], vec!["check"]] {
        let mut child = repo.cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Close the read end at once, as `drtool snapshots | true` does.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_no_panic(&stderr);
    }
}

#[test]
fn one_damaged_manifest_does_not_hide_the_others() {
    let repo = Repo::init();
    let a = repo.backup_stdin("a", b"alpha alpha alpha");
    let b = repo.backup_stdin("b", b"beta beta beta");
    let id_a = text(&a, "snapshot_id").to_string();
    let id_b = text(&b, "snapshot_id").to_string();
    let bad = repo.path.join("snapshots").join(&id_a);
    let mut bytes = std::fs::read(&bad).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&bad, bytes).unwrap();

    // The good snapshot is still listed and restores, by id and as latest.
    let listed = repo.snapshots();
    assert_eq!(listed.len(), 1);
    assert_eq!(text(&listed[0], "id"), id_b);
    assert_eq!(repo.restore_stdout(&id_b, &[]).ok().stdout, b"beta beta beta");
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"beta beta beta");
    // The damaged one fails clearly, and check names it.
    let out = repo.restore_stdout(&id_a, &[]);
    assert_eq!(out.code(), Some(4), "{}", out.stderr);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4);
    assert!(report["errors"].to_string().contains(&id_a[..8]), "{report}");
}

#[test]
fn stream_names_that_cannot_be_file_names_are_refused_at_backup() {
    let repo = Repo::init();
    for name in ["a/b", "..", ".", ""] {
        let out = repo.run_input(["backup", "--stdin", "--name", name], std::io::Cursor::new(b"x".to_vec()));
        assert_eq!(out.code(), Some(2), "name {name:?}");
        assert!(out.stderr.contains("invalid stream name"), "{}", out.stderr);
    }
    assert!(repo.snapshots().is_empty());
}

#[test]
fn removing_the_key_in_use_names_that_reason() {
    let repo = Repo::init();
    let keys = repo.run(["--json", "key", "list"]).ok().json();
    let current = keys[0]["id"].as_str().unwrap().to_string();
    repo.cmd(["key", "add"]).env("DRTOOL_NEW_PASSWORD", "second").output().unwrap();
    let out = repo.run(["key", "remove", &current]);
    assert_ne!(out.code(), Some(0));
    let err = &out.stderr;
    assert!(err.contains("in use") && !err.contains("last key"), "{err}");
}

#[test]
fn dot_dot_root_is_named_by_its_real_name_and_fifo_root_is_refused() {
    let repo = Repo::init();
    let base = repo.scratch("base");
    let inner = base.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(base.join("f.txt"), b"content").unwrap();
    let out = repo.cmd(["--json", "backup", ".."]).current_dir(&inner).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let target = repo.scratch("restore");
    repo.restore_target("latest", &target, &[]).ok();
    assert_eq!(std::fs::read(target.join("base/f.txt")).unwrap(), b"content");

    let fifo = repo.scratch("p").join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = repo.run(["backup", fifo.to_str().unwrap()]);
    assert_eq!(out.code(), Some(5));
    assert!(out.stderr.contains("not a file, directory or symlink"), "{}", out.stderr);
}

#[test]
fn io_errors_are_not_repeated() {
    let repo = Repo::init();
    let out = repo.run(["backup", "/nonexistent/drtool-path"]);
    let err = out.stderr.clone();
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn one_damaged_index_file_does_not_block_other_snapshots() {
    let repo = Repo::init();
    repo.backup_stdin("a", &random_bytes(1, 100_000));
    let index_dir = repo.path.join("index");
    let first: Vec<_> = std::fs::read_dir(&index_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(first.len(), 1);
    repo.backup_stdin("b", &random_bytes(2, 100_000));
    let mut bytes = std::fs::read(&first[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&first[0], bytes).unwrap();

    assert_eq!(repo.restore_stdout("latest", &["--name", "b"]).ok().stdout, random_bytes(2, 100_000));
    let out = repo.restore_stdout("latest", &["--name", "a"]);
    assert_eq!(out.code(), Some(4), "{}", out.stderr);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4);
    assert!(report["errors"].to_string().contains("index"), "{report}");
}
