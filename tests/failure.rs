//! A failed source never becomes a snapshot, and a crash or interruption
//! leaves a repository that checks clean and takes the next backup
//! (DESIGN.md principles 1 and 2).
//! Every test runs on a local directory (`local::`) and on Garage (`garage::`).

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

fn sh(script: &str) -> Vec<&std::ffi::OsStr> {
    vec!["sh".as_ref(), "-c".as_ref(), script.as_ref()]
}

fn backup_sh(repo: &Repo, name: &str, script: &str) -> Out {
    let mut args: Vec<&std::ffi::OsStr> = vec!["backup".as_ref(), "--name".as_ref(), name.as_ref(), "--".as_ref()];
    args.extend(sh(script));
    repo.run(args)
}

#[track_caller]
fn assert_no_snapshot(repo: &Repo) {
    assert!(repo.snapshot_objects().is_empty(), "a snapshot manifest was written: {:?}", repo.snapshot_objects());
    assert!(repo.snapshots().is_empty());
}

/// After a failure: the repository checks clean (every byte) and takes a new backup.
#[track_caller]
fn assert_repository_healthy(repo: &Repo) {
    let (code, report) = repo.check(&["--read-data"]);
    assert_eq!(code, 0, "check after failure: {report}");
    assert!(report["damaged_packs"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    let data = random_bytes(77, 2 * MIB);
    let v = repo.backup_stdin("after-failure", &data);
    assert!(repo.restore_stdout(text(&v, "snapshot_id"), &[]).ok().stdout == data);
    assert_eq!(repo.check(&["--read-data"]).0, 0);
}

fn command_exiting_non_zero_fails_with_its_stderr_and_no_snapshot(b: Backend) {
    let repo = Repo::init_on(b);
    let out = backup_sh(
        &repo,
        "db",
        "head -c 3000000 /dev/urandom; echo 'mysqldump: Got error 28: DISK-FULL-4411' >&2; exit 1",
    )
    .expect_code(5);
    assert!(out.stderr.contains("DISK-FULL-4411"), "the child's stderr must be in the error: {}", out.stderr);
    assert!(out.stderr.contains("exit status 1"), "{}", out.stderr);
    assert_no_snapshot(&repo);
    assert_repository_healthy(&repo);

    // A program that cannot be started is a source failure too.
    let out = repo.run(["backup", "--name", "db", "--", "/nonexistent/dump-tool"]).expect_code(5);
    assert!(out.stderr.contains("/nonexistent/dump-tool"), "{}", out.stderr);
    assert_eq!(repo.snapshots().len(), 1, "only the healthy backup exists");
}

fn command_killed_by_a_signal_fails_with_no_snapshot(b: Backend) {
    let repo = Repo::init_on(b);
    let out = backup_sh(&repo, "db", "head -c 2000000 /dev/urandom; echo 'about to die' >&2; kill -9 $$");
    assert_ne!(out.code(), Some(0), "a killed source must fail the backup");
    assert_eq!(out.code(), Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("signal 9"), "{}", out.stderr);
    assert!(out.stderr.contains("about to die"), "{}", out.stderr);
    assert_no_snapshot(&repo);
    assert_repository_healthy(&repo);
}

fn sigkill_of_drtool_mid_backup_leaves_a_healthy_repository(b: Backend) {
    let repo = Repo::init_on(b);
    let mut reaper =
        Reaper::new(repo.cmd(["backup", "--stdin", "--name", "big"]).stdin(Stdio::piped()).spawn().unwrap());
    let child = &mut reaper.child;
    let stderr = collect(child.stderr.take().unwrap());
    let _stdout = collect(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    // An endless stream; the writer stops when drtool dies (broken pipe).
    let writer = std::thread::spawn(move || {
        let mut rng = Prng::new(5);
        let mut buf = vec![0u8; MIB];
        loop {
            rng.fill(&mut buf);
            if stdin.write_all(&buf).is_err() {
                break;
            }
        }
    });
    // Kill once packs are being stored: at least two packs, not yet any snapshot.
    let stored = wait_until(Duration::from_secs(60), || repo.pack_objects().len() >= 2);
    send_signal(child.id(), libc::SIGKILL);
    let status = wait_timeout(child, Duration::from_secs(10));
    writer.join().unwrap();
    assert!(stored, "no packs appeared within 60 s");
    assert_eq!(signal_of(&status), Some(libc::SIGKILL), "{status:?}");
    assert_no_panic(&String::from_utf8_lossy(&stderr.join().unwrap()));

    assert_no_snapshot(&repo);
    // The packs of the dead run are unindexed garbage, not damage.
    let (code, report) = repo.check(&["--read-data"]);
    assert_eq!(code, 0, "{report}");
    assert!(num(&report, "unindexed_packs") >= 2, "{report}");
    // The dead run's lock must not block anyone.
    assert_repository_healthy(&repo);
}

/// SIGINT or SIGTERM while a command is being backed up: exit 130, no
/// snapshot, and the command (with its whole process group) is stopped.
fn interrupt_command_backup(b: Backend, sig: i32, sig_name: &str) {
    let repo = Repo::init_on(b);
    let mut args: Vec<&std::ffi::OsStr> = vec!["backup".as_ref(), "--name".as_ref(), "db".as_ref(), "--".as_ref()];
    // 50 MB then a long pause: drtool is mid-stream, waiting for more data.
    args.extend(sh("head -c 80000000 /dev/urandom; sleep 30; echo never"));
    let mut reaper = Reaper::new(repo.cmd(args).spawn().unwrap());
    let stderr = collect(reaper.child.stderr.take().unwrap());
    let _stdout = collect(reaper.child.stdout.take().unwrap());
    let pid = reaper.child.id();

    let mut source_pid = None;
    let started = wait_until(Duration::from_secs(60), || {
        source_pid = children_of(pid).first().copied();
        source_pid.is_some() && !repo.pack_objects().is_empty()
    });
    let source_pid = source_pid.expect("the source command never started");
    reaper.group = Some(source_pid);
    assert!(started, "the backup never stored a pack ({} packs)", repo.pack_objects().len());
    assert!(!live_group_members(source_pid).is_empty());

    send_signal(pid, sig);
    let status = wait_timeout(&mut reaper.child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_no_panic(&stderr);
    // Clean up before asserting, so a failure does not leave `sleep 30` behind.
    let gone = wait_until(Duration::from_secs(10), || live_group_members(source_pid).is_empty());
    assert_eq!(status.code(), Some(130), "{sig_name}: {status:?}\n{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains(sig_name), "{stderr}");
    assert!(gone, "{sig_name}: the source command's processes are still running");
    assert_no_snapshot(&repo);
    assert_repository_healthy(&repo);
}

fn sigint_mid_backup_exits_130_and_stops_the_command(b: Backend) {
    interrupt_command_backup(b, libc::SIGINT, "SIGINT");
}

fn sigterm_mid_backup_exits_130_and_stops_the_command(b: Backend) {
    interrupt_command_backup(b, libc::SIGTERM, "SIGTERM");
}

fn sigint_while_stdin_stays_open_exits_promptly_with_130(b: Backend) {
    // The stdin reader blocks in read(2) on a pipe that never closes: drtool
    // must still stop on SIGINT instead of waiting for more input.
    let repo = Repo::init_on(b);
    let mut reaper =
        Reaper::new(repo.cmd(["backup", "--stdin", "--name", "db"]).stdin(Stdio::piped()).spawn().unwrap());
    let stderr = collect(reaper.child.stderr.take().unwrap());
    let _stdout = collect(reaper.child.stdout.take().unwrap());
    let mut stdin = reaper.child.stdin.take().unwrap();
    stdin.write_all(&random_bytes(4, 40 * MIB)).unwrap();
    stdin.flush().unwrap();
    assert!(wait_until(Duration::from_secs(60), || !repo.pack_objects().is_empty()), "no pack stored");
    send_signal(reaper.child.id(), libc::SIGINT);
    let status = wait_timeout(&mut reaper.child, Duration::from_secs(10));
    drop(stdin);
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_no_panic(&stderr);
    assert_eq!(status.code(), Some(130), "{status:?}\n{stderr}");
    assert!(stderr.contains("no snapshot"), "{stderr}");
    assert_no_snapshot(&repo);
    assert_repository_healthy(&repo);
}

fn missing_source_path_fails_with_exit_5_and_no_snapshot(b: Backend) {
    let repo = Repo::init_on(b);
    let missing = repo.dir.path().join("no-such-dir");
    let out = repo.run([std::ffi::OsStr::new("backup"), missing.as_os_str()]).expect_code(5);
    assert!(out.stderr.contains("no-such-dir"), "{}", out.stderr);
    assert_no_snapshot(&repo);
}

backend_tests! {
    command_exiting_non_zero_fails_with_its_stderr_and_no_snapshot,
    command_killed_by_a_signal_fails_with_no_snapshot,
    sigkill_of_drtool_mid_backup_leaves_a_healthy_repository,
    sigint_mid_backup_exits_130_and_stops_the_command,
    sigterm_mid_backup_exits_130_and_stops_the_command,
    sigint_while_stdin_stays_open_exits_promptly_with_130,
    missing_source_path_fails_with_exit_5_and_no_snapshot,
}
