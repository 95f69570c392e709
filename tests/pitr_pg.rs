//! Point-in-time recovery of PostgreSQL against real private clusters:
//! continuous WAL archiving through `drtool wal-push`, physical base backups,
//! restores to a time, an LSN and a named restore point (docs/PITR.md).
//!
//! Every wait is on a condition the server reports (pg_stat_archiver, the
//! end of recovery), never a fixed sleep.

mod common;

use common::mariadb::{is_root, missing};
use common::postgres::{Postgres, os_user};
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// A cluster archiving into a fresh repository.
struct Archived {
    repo: Repo,
    config: PathBuf,
    pg: Postgres,
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_tree(p: &Path, ids: Option<(u32, u32)>) {
    let Some((uid, gid)) = ids else { return };
    let mut stack = vec![p.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).expect("chown");
        if p.is_dir() && !p.is_symlink() {
            stack.extend(std::fs::read_dir(&p).expect("read_dir").map(|e| e.expect("entry").path()));
        }
    }
}

fn owner() -> Option<(u32, u32)> {
    if is_root() { os_user("postgres") } else { None }
}

/// archive_command settings for `postgres`, pushing with `config`.
fn archive_opts(config: &Path) -> Vec<String> {
    let cmd = format!("archive_command={BIN} wal-push --config {} %p", config.display());
    ["-c", "wal_level=replica", "-c", "archive_mode=on", "-c", &cmd].iter().map(|s| s.to_string()).collect()
}

fn start_archived() -> Option<Archived> {
    if !common::postgres::available() {
        return missing("PostgreSQL (Debian package postgresql)");
    }
    let repo = Repo::init();
    // PostgreSQL's archiver (the postgres account) must reach the repository and its configuration.
    chmod(repo.dir.path(), 0o711);
    let config = repo.dir.path().join("wal.toml");
    let mut args = vec!["wal-config".to_string(), "--out".into(), config.display().to_string()];
    if owner().is_some() {
        args.extend(["--owner".to_string(), "postgres".into()]);
    }
    repo.run(&args).ok();
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    chown_tree(&repo.path, owner());
    let opts = archive_opts(&config);
    let pg = Postgres::start_with(&opts.iter().map(String::as_str).collect::<Vec<_>>())?;
    Some(Archived { repo, config, pg })
}

fn pgbench(pg: &Postgres, args: &[&str]) {
    let out = Command::new(pg.bin.join("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("run pgbench");
    assert!(out.status.success(), "pgbench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Counts and sums over every pgbench table, read in one statement (one snapshot).
fn fingerprint(pg: &Postgres) -> String {
    pg.sql(
        None,
        "SELECT (SELECT count(*) || '/' || sum(abalance) FROM pgbench_accounts), \
                (SELECT count(*) || '/' || sum(bbalance) FROM pgbench_branches), \
                (SELECT count(*) || '/' || sum(tbalance) FROM pgbench_tellers), \
                (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)",
    )
}

/// Close the current segment and wait until the archiver has stored it.
fn switch_and_wait(pg: &Postgres) -> String {
    // A commit first, so there is always something to switch away from.
    pg.sql(None, "SELECT pg_current_xact_id()");
    let name = pg.sql(None, "SELECT pg_walfile_name(pg_switch_wal())");
    let archived = wait_until(WAIT, || {
        pg.sql(None, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").as_str() >= name.as_str()
    });
    assert!(archived, "{name} was not archived: {}", pg.sql(None, "SELECT * FROM pg_stat_archiver"));
    name
}

fn physical_backup(a: &Archived) -> serde_json::Value {
    let url = format!("postgres://postgres@127.0.0.1:{}/", a.pg.port);
    let mut c = a.repo.cmd(["--json", "backup", "--source", &url, "--physical", "--name", "pg"]);
    c.env("PGPASSWORD", &a.pg.password);
    run_with_input(c, None).ok().json()
}

/// Restore into a fresh directory, start a server on it, wait for the end of recovery.
fn restore_and_start(a: &Archived, target_args: &[&str]) -> Postgres {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let parent = a.repo.scratch(&format!("restore-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    chmod(&parent, 0o711);
    let data = parent.join("data");
    let mut args = vec!["restore", "latest", "--name", "pg", "--target", data.to_str().unwrap()];
    args.extend_from_slice(target_args);
    a.repo.run(&args).ok();
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "data directory mode");
    if let Some((uid, _)) = owner() {
        assert_eq!(meta.uid(), uid, "data directory owner");
    }
    assert!(data.join("recovery.signal").is_file());
    let pg = Postgres::start_existing(data, &a.pg.password, &[]);
    let promoted = wait_until(WAIT, || pg.try_sql(None, "SELECT pg_is_in_recovery()").is_ok_and(|r| r == "f"));
    assert!(
        promoted,
        "recovery did not end:\n{}",
        std::fs::read_to_string(pg.dir.join("postgres.log")).unwrap_or_default()
    );
    pg
}

#[test]
fn restores_to_a_time_an_lsn_and_a_restore_point_then_refuses_past_a_gap() {
    let Some(a) = start_archived() else { return };
    pgbench(&a.pg, &["-i", "-q", "-s", "1"]);
    let base = physical_backup(&a);
    assert!(base["summary"]["bytes_read"].as_u64().unwrap() > 10 << 20, "{base}");
    pgbench(&a.pg, &["-n", "-t", "300"]);

    // The moment T: its fingerprint, time, LSN and a restore point.
    let at_t = fingerprint(&a.pg);
    let time =
        a.pg.sql(None, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    let lsn = a.pg.sql(None, "SELECT pg_current_wal_lsn()");
    a.pg.sql(None, "SELECT pg_create_restore_point('before_disaster')");

    pgbench(&a.pg, &["-n", "-t", "300"]);
    a.pg.sql(None, "UPDATE pgbench_branches SET bbalance = 0; DROP TABLE pgbench_accounts");
    switch_and_wait(&a.pg);
    assert!(a.pg.try_sql(None, "SELECT count(*) FROM pgbench_accounts").is_err());

    for target in [["--at", time.as_str()], ["--at-lsn", lsn.as_str()], ["--at-name", "before_disaster"]] {
        let restored = restore_and_start(&a, &target);
        assert_eq!(fingerprint(&restored), at_t, "restore {target:?}");
    }
    let shown = a.repo.run(["--json", "show", "latest", "--name", "pg"]).ok().json();
    let w = &shown["recoverable_window"];
    assert_eq!(w["archive"], "main", "{shown}");
    assert!(w["gap"].is_null() && w["until_segment"].is_string(), "{w}");
    assert!(w["archive_lag"]["newest_segment"].is_string() && w["archive_lag"]["age_seconds"].is_i64(), "{w}");
    assert!(shown["source"]["details"]["system_identifier"].is_string(), "{shown}");

    // A target directory that is not empty is refused, and left alone.
    let busy = a.repo.scratch("busy");
    std::fs::write(busy.join("keep"), b"x").unwrap();
    let out = a.repo.run(["restore", "latest", "--name", "pg", "--target", busy.to_str().unwrap(), "--at", &time]);
    let out = out.expect_code(6);
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    // A time before the first base backup is refused.
    let out = a.repo.run([
        "restore",
        "latest",
        "--name",
        "pg",
        "--target",
        busy.join("x").to_str().unwrap(),
        "--at",
        "2001-01-01 00:00:00+00",
    ]);
    assert!(out.expect_code(6).stderr.contains("before the first base backup"));

    // Delete one archived segment (found as the one object the next switch adds).
    let objects = || -> Vec<PathBuf> {
        let mut v = Vec::new();
        for d in std::fs::read_dir(a.repo.path.join("wal")).unwrap() {
            let f = d.unwrap().path().join("f");
            v.extend(std::fs::read_dir(&f).unwrap().map(|e| e.unwrap().path()));
        }
        v
    };
    let before = objects();
    a.pg.sql(None, "CREATE TABLE after_gap AS SELECT 1 AS x");
    let missing_seg = switch_and_wait(&a.pg);
    let added: Vec<PathBuf> = objects().into_iter().filter(|o| !before.contains(o)).collect();
    assert_eq!(added.len(), 1, "one segment archived: {added:?}");
    a.pg.sql(None, "INSERT INTO after_gap VALUES (2)");
    switch_and_wait(&a.pg);
    let late_lsn = a.pg.sql(None, "SELECT pg_current_wal_lsn()");
    std::fs::remove_file(&added[0]).unwrap();

    let out = a.repo.run(["check"]).expect_code(4);
    assert!(out.stdout_str().contains(&missing_seg), "check names the gap:\n{}", out.stdout_str());
    let target = busy.join("after-gap");
    let out =
        a.repo.run(["restore", "latest", "--name", "pg", "--target", target.to_str().unwrap(), "--at-lsn", &late_lsn]);
    let out = out.expect_code(6);
    assert!(out.stderr.contains("gap") && out.stderr.contains(&missing_seg), "{}", out.stderr);
    assert!(!target.exists(), "nothing written on refusal");
    let shown = a.repo.run(["--json", "show", "latest", "--name", "pg"]).ok().json();
    assert_eq!(shown["recoverable_window"]["gap"], missing_seg.as_str(), "{shown}");

    // Timelines: restored to T and promoted with archiving on, the server writes
    // and archives timeline 2; a restore to a moment on timeline 2 then works.
    let parent = a.repo.scratch("timeline2");
    chmod(&parent, 0o711);
    let data = parent.join("data");
    a.repo.run(["restore", "latest", "--name", "pg", "--target", data.to_str().unwrap(), "--at", &time]).ok();
    let opts = archive_opts(&a.config);
    let branch = Postgres::start_existing(data, &a.pg.password, &opts.iter().map(String::as_str).collect::<Vec<_>>());
    let promoted = wait_until(WAIT, || branch.try_sql(None, "SELECT pg_is_in_recovery()").is_ok_and(|r| r == "f"));
    assert!(promoted, "recovery did not end");
    assert_eq!(fingerprint(&branch), at_t);
    pgbench(&branch, &["-n", "-t", "200"]);
    let at_t2 = fingerprint(&branch);
    let time2 =
        branch.sql(None, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    pgbench(&branch, &["-n", "-t", "200"]);
    let last = switch_and_wait(&branch);
    assert!(last.starts_with("00000002"), "writes continue on timeline 2: {last}");
    drop(branch);
    let restored = restore_and_start(&a, &["--at", &time2]);
    assert_eq!(fingerprint(&restored), at_t2, "restore to a moment on timeline 2");
    drop(restored);

    // Retention: prune removes the WAL from before the (only) base backup and
    // nothing it needs: a restore to T2 still works afterwards.
    let stop_wal = shown["source"]["details"]["stop_wal"].as_str().unwrap().to_string();
    let out = a.repo.run(["--json", "prune"]).ok().json();
    let removed: Vec<&str> = out["wal"]["removed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!removed.is_empty(), "WAL from before the base backup is removed: {out}");
    assert!(removed.iter().all(|r| r[8..24] < stop_wal[8..24]), "only WAL before {stop_wal}: {removed:?}");
    let restored = restore_and_start(&a, &["--at", &time2]);
    assert_eq!(fingerprint(&restored), at_t2, "restore after WAL retention");
}

#[test]
fn wal_push_refuses_bad_names_foreign_and_conflicting_segments_and_wrong_keys() {
    let Some(a) = start_archived() else { return };
    let seg = switch_and_wait(&a.pg);
    let scratch = a.repo.scratch("push");
    let push = |path: &Path| {
        let mut c = drtool();
        c.args(["wal-push", "--config", a.config.to_str().unwrap()]).arg(path);
        run_with_input(c, None)
    };
    // Not a WAL file name, and a WAL name on something that is not WAL.
    let odd = scratch.join("not-a-segment");
    std::fs::write(&odd, b"x").unwrap();
    assert!(push(&odd).expect_code(2).stderr.contains("not a WAL file name"));
    let fake = scratch.join("0000000100000000000000F0");
    std::fs::write(&fake, vec![0u8; 16 << 20]).unwrap();
    assert!(push(&fake).expect_code(6).stderr.contains("not a WAL segment"));

    // The archived segment comes back whole; pushing it again is fine, changed it is refused.
    let fetched = scratch.join(&seg);
    let mut c = drtool();
    c.args(["wal-fetch", "--config", a.config.to_str().unwrap(), &seg]).arg(&fetched);
    run_with_input(c, None).ok();
    let original = std::fs::read(a.pg.data.join("pg_wal").join(&seg)).ok();
    let bytes = std::fs::read(&fetched).unwrap();
    if let Some(o) = original {
        assert_eq!(o, bytes);
    }
    assert_eq!(bytes.len(), 16 << 20);
    push(&fetched).ok();
    let mut changed = bytes.clone();
    changed[9000] ^= 0xff;
    std::fs::write(&fetched, &changed).unwrap();
    assert!(push(&fetched).expect_code(6).stderr.contains("different content"));

    // WAL of another cluster (another system identifier) is refused.
    let other = Postgres::start().expect("second cluster");
    other.sql(None, "SELECT pg_current_xact_id()");
    let other_first = other.sql(None, "SELECT pg_walfile_name(pg_switch_wal())");
    let foreign = scratch.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::copy(other.data.join("pg_wal").join(&other_first), foreign.join(&other_first)).unwrap();
    assert!(push(&foreign.join(&other_first)).expect_code(6).stderr.contains("holds WAL of system"));

    // A wrong key fails; PostgreSQL keeps the segment and retries.
    let wrong = a.repo.dir.path().join("wrong.toml");
    let text = std::fs::read_to_string(&a.config).unwrap();
    let key_line = text.lines().find(|l| l.starts_with("key")).unwrap();
    std::fs::write(&wrong, text.replace(key_line, &format!("key = \"{}\"", "ab".repeat(32)))).unwrap();
    chmod(&wrong, 0o600);
    chown_tree(&wrong, owner());
    let mut c = drtool();
    c.args(["wal-push", "--config", wrong.to_str().unwrap()]).arg(&fetched);
    assert!(run_with_input(c, None).expect_code(12).stderr.contains("key"));
    let opts = archive_opts(&wrong);
    let failing = Postgres::start_with(&opts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    failing.sql(None, "SELECT pg_current_xact_id()");
    let seg = failing.sql(None, "SELECT pg_walfile_name(pg_switch_wal())");
    let failed = wait_until(WAIT, || failing.sql(None, "SELECT failed_count > 0 FROM pg_stat_archiver") == "t");
    assert!(failed, "archive_command did not fail");
    let ready = failing.data.join("pg_wal/archive_status").join(format!("{seg}.ready"));
    assert!(ready.is_file(), "PostgreSQL keeps {seg} for another try");
    assert_eq!(failing.sql(None, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"), "");

    // A configuration others can read is refused before anything is done.
    chmod(&wrong, 0o644);
    let mut c = drtool();
    c.args(["wal-push", "--config", wrong.to_str().unwrap()]).arg(&fetched);
    assert!(run_with_input(c, None).expect_code(2).stderr.contains("chmod 600"));

    // The store failing (the archive directory not writable) makes archive_command
    // fail: PostgreSQL keeps the segment, and once the store is back archiving
    // catches up with no gap.
    let wal_dirs: Vec<PathBuf> =
        std::fs::read_dir(a.repo.path.join("wal")).unwrap().map(|e| e.unwrap().path().join("f")).collect();
    let [files] = wal_dirs.as_slice() else { panic!("one archive: {wal_dirs:?}") };
    let failures = || a.pg.sql(None, "SELECT failed_count FROM pg_stat_archiver").parse::<u64>().unwrap();
    let failed_before = failures();
    chmod(files, 0o500);
    a.pg.sql(None, "SELECT pg_current_xact_id()");
    let stuck = a.pg.sql(None, "SELECT pg_walfile_name(pg_switch_wal())");
    assert!(wait_until(WAIT, || failures() > failed_before), "archive_command did not fail");
    assert!(a.pg.data.join("pg_wal/archive_status").join(format!("{stuck}.ready")).is_file());
    chmod(files, 0o700);
    let next = switch_and_wait(&a.pg);
    assert!(next > stuck);
    a.repo.run(["check"]).ok();
}

#[test]
fn policies_take_the_physical_method_for_postgres_only() {
    let dir = tempfile::tempdir().unwrap();
    let policy = |kind: &str, method: &str| {
        format!(
            "name = \"p\"\nrepository = \"/var/backups/drtool\"\npassword_file = \"/etc/drtool/pw\"\n\n\
             [source]\nkind = \"{kind}\"\nurl = \"{kind}://u@127.0.0.1:5432/\"\nmethod = \"{method}\"\n"
        )
    };
    let check = |text: String| {
        let f = dir.path().join("p.toml");
        std::fs::write(&f, text).unwrap();
        let mut c = drtool();
        c.args(["policy", "check"]).arg(&f);
        run_with_input(c, None)
    };
    check(policy("postgres", "physical")).ok();
    check(policy("postgres", "dump")).ok();
    let out = check(policy("mysql", "physical")).expect_code(2);
    assert!(out.stderr.contains("p.toml:8:") && out.stderr.contains("source.method"), "{}", out.stderr);
    let out = check(policy("postgres", "snapshot")).expect_code(2);
    assert!(out.stderr.contains("source.method \"snapshot\""), "{}", out.stderr);
}
