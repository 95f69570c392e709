//! Streams restore byte-identical, from stdin and from a command, to stdout
//! and to a directory. (The 1 GiB round trip lives in dedup.rs, where the same
//! stream is also backed up twice, to keep 1 GiB cases to one.)
//! Every test runs twice: `local::` on a directory, `garage::` on a real
//! Garage S3 server (see `backend_tests!` in tests/common/backend.rs).

mod common;

use common::*;
use std::ffi::OsStr;
use std::path::Path;

/// Random, highly compressible and all-zero contents of 0 B, 1 B and 7 MiB.
fn cases() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for size in [0, 1, 7 * MIB] {
        out.push((format!("random-{size}"), random_bytes(size as u64 + 11, size)));
        out.push((format!("sql-{size}"), sql_like(size as u64 + 5, size)));
        out.push((format!("zeros-{size}"), vec![0u8; size]));
    }
    out
}

/// Restore `id` both ways and compare with `data`; `name` is the stream name.
#[track_caller]
fn assert_restores(repo: &Repo, id: &str, name: &str, data: &[u8]) {
    let out = repo.restore_stdout(id, &[]).ok();
    assert!(
        out.stdout == data,
        "{name}: --stdout gave {} bytes, expected {} (content differs)",
        out.stdout.len(),
        data.len()
    );

    let target = tempfile::tempdir().unwrap();
    repo.restore_target(id, target.path(), &[]).ok();
    let entries: Vec<_> = std::fs::read_dir(target.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![OsStr::new(name).to_os_string()], "{name}: --target should create exactly DIR/<name>");
    let restored = std::fs::read(target.path().join(name)).unwrap();
    assert!(
        restored == data,
        "{name}: --target gave {} bytes, expected {} (content differs)",
        restored.len(),
        data.len()
    );
}

#[track_caller]
fn assert_summary(v: &serde_json::Value, name: &str, len: usize) {
    assert_eq!(text(v, "name"), name);
    assert_eq!(num(v, "summary.bytes_read"), len as u64, "{name}: bytes_read");
    let id = text(v, "snapshot_id");
    assert_eq!(id.len(), 64, "snapshot_id is a full hex id: {id}");
    assert!(id.starts_with(text(v, "short_id")));
    if len == 0 {
        assert_eq!(num(v, "summary.chunks"), 0, "an empty stream has no chunks");
    }
}

fn stdin_streams_round_trip_to_stdout_and_target(b: Backend) {
    let repo = Repo::init_on(b);
    let mut ids = Vec::new();
    for (name, data) in cases() {
        let v = repo.backup_stdin(&name, &data);
        assert_summary(&v, &name, data.len());
        let id = text(&v, "snapshot_id").to_string();
        assert_restores(&repo, &id, &name, &data);
        ids.push((id, name, data.len()));
    }
    let listed = repo.snapshots();
    assert_eq!(listed.len(), ids.len());
    for (id, name, len) in &ids {
        let s = listed.iter().find(|s| s["id"] == id.as_str()).unwrap_or_else(|| panic!("snapshot {id} not listed"));
        assert_eq!(text(s, "name"), name);
        assert_eq!(text(s, "source"), "stdin");
        assert_eq!(num(s, "size"), *len as u64);
    }
    // The zero and SQL-like streams compress: 7 MiB of them must store far less.
    let sql7 = listed.iter().find(|s| s["name"] == format!("sql-{}", 7 * MIB)).unwrap();
    assert!(num(sql7, "summary.bytes_stored") < (7 * MIB as u64) / 2, "SQL-like text did not compress: {sql7}");
}

fn command_streams_round_trip_to_stdout_and_target(b: Backend) {
    let repo = Repo::init_on(b);
    let inputs = repo.scratch("inputs");
    for (name, data) in cases() {
        let file = inputs.join(&name);
        write_file(&file, &data);
        let v = repo.backup_command(&name, &[OsStr::new("cat"), file.as_os_str()]);
        assert_summary(&v, &name, data.len());
        let id = text(&v, "snapshot_id").to_string();
        assert_restores(&repo, &id, &name, &data);
        if data.len() == 7 * MIB && name.starts_with("random") {
            // Also by unique prefix and by `latest --name`.
            let short = text(&v, "short_id").to_string();
            assert!(repo.restore_stdout(&short, &[]).ok().stdout == data, "{name}: restore by short id");
            assert!(
                repo.restore_stdout("latest", &["--name", &name]).ok().stdout == data,
                "{name}: restore latest --name"
            );
        }
    }
    for s in repo.snapshots() {
        assert_eq!(text(&s, "source"), "command", "{s}");
    }
}

fn stream_restore_never_overwrites_an_existing_file(b: Backend) {
    let repo = Repo::init_on(b);
    let v = repo.backup_stdin("dump.sql", b"restored content\n");
    let id = text(&v, "snapshot_id");
    let target = repo.scratch("target");
    write_file(&target.join("dump.sql"), b"precious local file\n");
    let out = repo.restore_target(id, &target, &[]);
    assert_ne!(out.code(), Some(0), "restore over an existing file must fail");
    assert!(out.stderr.contains("dump.sql"), "error should name the file: {}", out.stderr);
    assert_eq!(std::fs::read(target.join("dump.sql")).unwrap(), b"precious local file\n");
}

fn restore_of_tree_to_stdout_is_a_usage_error(b: Backend) {
    let repo = Repo::init_on(b);
    let src = repo.scratch("tree");
    write_file(&src.join("f"), b"x");
    repo.backup_paths(&[Path::new(&src)]);
    let out = repo.restore_stdout("latest", &[]).expect_code(2);
    assert!(out.stdout.is_empty(), "nothing may be written to stdout");
    assert!(out.stderr.contains("--target"), "should say how to restore a tree: {}", out.stderr);
}

backend_tests! {
    stdin_streams_round_trip_to_stdout_and_target,
    command_streams_round_trip_to_stdout_and_target,
    stream_restore_never_overwrites_an_existing_file,
    restore_of_tree_to_stdout_is_a_usage_error,
}
