//! Runs that share a repository: concurrent backups take shared locks and
//! all succeed; a restore and a check can run while a backup is writing.

mod common;

use common::*;
use std::process::Stdio;

#[test]
fn concurrent_backups_all_succeed_and_restore() {
    let repo = Repo::init();
    let inputs: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(100 + i, 12 * MIB)).collect();
    let children: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let name = format!("stream-{i}");
            let mut c = repo.cmd(["--json", "backup", "--stdin", "--name", name.as_str()]);
            c.stdin(Stdio::piped());
            let mut child = c.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let data = data.clone();
            let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
            (child, feeder)
        })
        .collect();
    for (child, feeder) in children {
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_no_panic(&stderr);
        assert!(out.status.success(), "concurrent backup failed: {:?}\n{stderr}", out.status);
    }
    assert_eq!(repo.snapshots().len(), 3);
    for (i, data) in inputs.iter().enumerate() {
        let name = format!("stream-{i}");
        assert!(repo.restore_stdout("latest", &["--name", &name]).ok().stdout == *data, "{name}");
    }
    let (code, report) = repo.check(&["--read-data"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(num(&report, "unindexed_packs"), 0, "{report}");
    assert!(
        repo.files().iter().all(|p| !p.starts_with(repo.path.join("locks"))),
        "locks left behind: {:?}",
        repo.files()
    );
}

#[test]
fn restore_and_check_run_while_a_backup_is_in_progress() {
    let repo = Repo::init();
    let old = sql_like(1, 2 * MIB);
    let v = repo.backup_stdin("old", &old);
    let mut reaper =
        Reaper::new(repo.cmd(["backup", "--stdin", "--name", "new"]).stdin(Stdio::piped()).spawn().unwrap());
    let mut stdin = reaper.child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &random_bytes(2, 40 * MIB)).unwrap();
    // The backup is now holding its lock and waiting for more input.
    assert!(wait_until(std::time::Duration::from_secs(30), || !repo.packs().is_empty()));
    assert!(repo.restore_stdout(text(&v, "snapshot_id"), &[]).ok().stdout == old);
    assert_eq!(repo.check(&[]).0, 0);
    drop(stdin);
    let status = wait_timeout(&mut reaper.child, std::time::Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert_eq!(repo.snapshots().len(), 2);
    assert_eq!(repo.check(&["--read-data"]).0, 0);
}
