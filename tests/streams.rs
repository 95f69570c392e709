//! Streams are always read in full (DESIGN.md: rustic once stored yesterday's
//! stdin under today's snapshot). A new stream under an old name is a new
//! stream, even with the same size and the same command line.
//! Every test runs on a local directory (`local::`) and on Garage (`garage::`).

mod common;

use common::*;
use filetime::FileTime;
use std::ffi::OsStr;

/// Two different streams of the same length that share a long prefix.
fn a_and_b() -> (Vec<u8>, Vec<u8>) {
    let a = sql_like(1, 3 * MIB);
    let mut b = a.clone();
    // Differ only in the middle and at the end; same length.
    b[3 * MIB / 2..3 * MIB / 2 + 7].copy_from_slice(b"CHANGED");
    let n = b.len();
    b[n - 1] = b'!';
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
    (a, b)
}

#[track_caller]
fn assert_latest_is_b_and_older_is_a(repo: &Repo, older: &str, a: &[u8], b: &[u8]) {
    let latest = repo.restore_stdout("latest", &["--name", "db"]).ok();
    assert!(latest.stdout == b, "latest --name db must be the newer stream B");
    let old = repo.restore_stdout(older, &[]).ok();
    assert!(old.stdout == a, "the older snapshot must still be stream A");
    let target = tempfile::tempdir().unwrap();
    repo.restore_target("latest", target.path(), &["--name", "db"]).ok();
    assert!(std::fs::read(target.path().join("db")).unwrap() == b);
}

fn stdin_stream_with_same_name_and_size_is_read_again(b: Backend) {
    let repo = Repo::init_on(b);
    let (a, b) = a_and_b();
    let first = repo.backup_stdin("db", &a);
    let second = repo.backup_stdin("db", &b);
    assert_ne!(first["snapshot_id"], second["snapshot_id"]);
    assert_eq!(num(&second, "summary.bytes_read"), b.len() as u64, "the whole stream must be read");
    assert!(num(&second, "summary.chunks_new") >= 1, "changed chunks must be stored: {second}");
    assert_latest_is_b_and_older_is_a(&repo, text(&first, "snapshot_id"), &a, &b);
    // Another stream with another name does not change what `latest --name db` is.
    repo.backup_stdin("other", b"unrelated");
    assert!(repo.restore_stdout("latest", &["--name", "db"]).ok().stdout == b);
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"unrelated");
}

fn command_stream_with_same_argv_size_and_mtime_is_read_again(b: Backend) {
    let repo = Repo::init_on(b);
    let (a, b) = a_and_b();
    let file = repo.scratch("src").join("dump.sql");
    write_file(&file, &a);
    let mtime = FileTime::from_unix_time(1_700_000_000, 5);
    filetime::set_file_mtime(&file, mtime).unwrap();
    let argv = [OsStr::new("cat"), file.as_os_str()];
    let first = repo.backup_command("db", &argv);

    // Same command, same file size, same mtime, different bytes.
    write_file(&file, &b);
    filetime::set_file_mtime(&file, mtime).unwrap();
    let second = repo.backup_command("db", &argv);
    assert_eq!(num(&second, "summary.bytes_read"), b.len() as u64);
    assert!(num(&second, "summary.chunks_new") >= 1, "{second}");
    assert_latest_is_b_and_older_is_a(&repo, text(&first, "snapshot_id"), &a, &b);

    // Mixing sources under one name: a stdin stream is the latest "db" now.
    let c = b"third version\n".to_vec();
    repo.backup_stdin("db", &c);
    assert_eq!(repo.restore_stdout("latest", &["--name", "db"]).ok().stdout, c);
    assert!(repo.restore_stdout(text(&second, "snapshot_id"), &[]).ok().stdout == b);
    let snaps: Vec<_> = repo.snapshots().into_iter().filter(|s| s["name"] == "db").collect();
    assert_eq!(snaps.len(), 3);
}

backend_tests! {
    stdin_stream_with_same_name_and_size_is_read_again,
    command_stream_with_same_argv_size_and_mtime_is_read_again,
}
