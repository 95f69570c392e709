//! Incremental tree backups: unchanged files are taken from the parent
//! snapshot without being read; changed ones are read; streams never are skipped.

mod common;

use common::*;

#[test]
fn unchanged_files_are_not_read_again_and_restore_identically() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i}.bin")), random_bytes(i, 50_000 + i as usize)).unwrap();
    }
    let first = repo.run(["--json", "backup", "--name", "files", src.to_str().unwrap()]).ok().json();
    assert_eq!(num(&first, "summary.bytes_unchanged"), 0);

    // Change one file's content (same size); the rest stay as they are.
    std::fs::write(src.join("f3.bin"), random_bytes(99, 50_003)).unwrap();
    let second = repo.run(["--json", "backup", "--name", "files", src.to_str().unwrap()]).ok().json();
    let total: u64 = (0..20).map(|i| 50_000 + i).sum();
    assert_eq!(num(&second, "summary.bytes_unchanged"), total - 50_003);
    // Only the changed file and the tree metadata were read.
    assert!(num(&second, "summary.bytes_read") < 50_003 + 20_000, "{second}");

    // --force reads everything again.
    let forced = repo.run(["--json", "backup", "--force", "--name", "files", src.to_str().unwrap()]).ok().json();
    assert_eq!(num(&forced, "summary.bytes_unchanged"), 0);
    assert!(num(&forced, "summary.bytes_read") >= total);

    let target = repo.scratch("restore");
    repo.restore_target(text(&second, "snapshot_id"), &target, &[]).ok();
    for i in 0..20u64 {
        let want = if i == 3 { random_bytes(99, 50_003) } else { random_bytes(i, 50_000 + i as usize) };
        assert_eq!(std::fs::read(target.join(format!("src/f{i}.bin"))).unwrap(), want, "f{i}");
    }
}

#[test]
fn parent_is_per_name() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    std::fs::write(src.join("a"), random_bytes(1, 10_000)).unwrap();
    repo.run(["--json", "backup", "--name", "one", src.to_str().unwrap()]).ok();
    let other = repo.run(["--json", "backup", "--name", "two", src.to_str().unwrap()]).ok().json();
    assert_eq!(num(&other, "summary.bytes_unchanged"), 0);
}

/// The parent is the latest snapshot of the same name *and host*: with
/// `backup --host`, the host the snapshot is recorded under, not the machine's.
#[test]
fn parent_is_per_host_including_backup_host() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    std::fs::write(src.join("a"), random_bytes(1, 10_000)).unwrap();
    let s = src.to_str().unwrap();
    repo.run(["--json", "backup", "--host", "web-b", "--name", "d", s]).ok();
    // Another host's snapshot of the same name is no parent.
    let other = repo.run(["--json", "backup", "--host", "web-c", "--name", "d", s]).ok().json();
    assert_eq!(num(&other, "summary.bytes_unchanged"), 0, "{other}");
    // The same host's is, also when that host is not this machine's name.
    let again = repo.run(["--json", "backup", "--host", "web-b", "--name", "d", s]).ok().json();
    assert_eq!(num(&again, "summary.bytes_unchanged"), 10_000, "{again}");
}
