//! S3 failure behaviour against a real Garage server: clear one-line errors
//! with documented exit codes for bad credentials, a missing bucket and an
//! unreachable endpoint; a server that dies mid-backup; transient faults.

mod common;

use common::garage::{self, GarageEnv};
use common::{PASSWORD, random_bytes};
use drtool::job::backup::{self, BackupRequest, BackupSource};
use drtool::job::restore::{self, RestoreTarget};
use drtool::repo::keys::KdfParams;
use drtool::repo::writer::WriterOptions;
use drtool::repo::{InitOptions, Repository};
use drtool::store::fault::{FaultPlan, FaultStore};
use drtool::store::s3::{S3Options, S3Store};
use drtool::store::{DynStore, LocalStore, RetryPolicy, RetryStore};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn drtool(g: &GarageEnv, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drtool"));
    c.arg("--repo").arg(url).args(args).env("DRTOOL_PASSWORD", PASSWORD).stdin(Stdio::null());
    g.apply(&mut c);
    c
}

fn run(mut c: Command) -> (Output, Duration) {
    let t = Instant::now();
    let out = c.output().expect("run drtool");
    (out, t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One line, naming the problem, no panic.
fn assert_one_clear_line(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{e}");
    assert!(lines[0].contains(needle), "{e}");
}

#[test]
fn wrong_credentials_fail_fast_with_exit_15() {
    let Some(g) = garage::shared() else { return };
    let mut c = drtool(g, &g.fresh_url(), &["snapshots"]);
    c.env("AWS_SECRET_ACCESS_KEY", "0000000000000000000000000000000000000000000000000000000000000000");
    let (out, took) = run(c);
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert_one_clear_line(&out, "access denied");
    assert!(took < Duration::from_secs(5), "took {took:?}: retried a permanent error?");
    let mut c = drtool(g, &g.fresh_url(), &["init"]);
    c.env("AWS_ACCESS_KEY_ID", "GK000000000000000000000000");
    let (out, _) = run(c);
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
}

#[test]
fn missing_bucket_gives_exit_16() {
    let Some(g) = garage::shared() else { return };
    let (out, took) = run(drtool(g, "s3://no-such-bucket-drtool/x", &["init"]));
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    assert_one_clear_line(&out, "no-such-bucket-drtool");
    assert!(stderr(&out).contains("does not exist"));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn unreachable_endpoint_gives_exit_14_after_bounded_retries() {
    let Some(g) = garage::shared() else { return };
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = drtool(g, &g.fresh_url(), &["snapshots"]);
    c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    let (out, took) = run(c);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert_one_clear_line(&out, &format!("127.0.0.1:{port}"));
    assert!(stderr(&out).contains("cannot reach"));
    assert!(took < Duration::from_secs(10), "took {took:?}: retry storm?");
}

#[test]
fn server_killed_mid_backup_fails_cleanly_and_repository_stays_usable() {
    if garage::shared().is_none() {
        return;
    }
    let g = GarageEnv::private();
    let url = g.fresh_url();
    assert!(run(drtool(&g, &url, &["init"])).0.status.success());
    // A slow source: a first burst, then more data after the server is gone.
    let script = "head -c 60000000 /dev/urandom; sleep 3; head -c 60000000 /dev/urandom";
    let child = drtool(&g, &url, &["backup", "--name", "db", "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    g.stop();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach the S3 endpoint"), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(60), "gave up only after {:?}", t.elapsed());

    g.resume();
    let (out, _) = run(drtool(&g, &url, &["--json", "snapshots"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "a failed backup left a snapshot");
    let (out, _) = run(drtool(&g, &url, &["check", "--read-data"]));
    assert!(out.status.success(), "check after the outage: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let data = random_bytes(5, 5 << 20);
    let mut c = drtool(&g, &url, &["backup", "--stdin", "--name", "db"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    std::io::Write::write_all(ch.stdin.as_mut().unwrap(), &data).unwrap();
    drop(ch.stdin.take());
    let out = ch.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _) = run(drtool(&g, &url, &["restore", "latest", "--stdout"]));
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
}

fn quick_kdf() -> InitOptions {
    InitOptions { kdf: KdfParams { m_cost_kib: 1024, t_cost: 1, p_cost: 1 }, ..InitOptions::default() }
}

/// Back up a file through a store where 10% of calls fail transiently, then
/// restore it through the same faulty store and compare.
async fn backup_through_faults(inner: DynStore, file: &std::path::Path, target: &std::path::Path) -> u64 {
    let plan = FaultPlan { fail_rate: 0.10, seed: 11, ..Default::default() };
    let faulty = FaultStore::new(inner, plan);
    let retry =
        RetryPolicy { max_retries: 10, base_delay: Duration::from_millis(2), max_delay: Duration::from_millis(50) };
    let store = Arc::new(RetryStore::new(faulty, retry));
    let dyn_store: DynStore = store.clone();
    let repo = Arc::new(Repository::init(dyn_store, PASSWORD.as_bytes(), quick_kdf()).await.unwrap());
    let req = BackupRequest {
        name: "dump".into(),
        source: BackupSource::Command(vec!["cat".into(), file.display().to_string()]),
        tags: vec![],
        host: None,
        time: None,
        writer: WriterOptions::default(),
        force: false,
        snapshot: Default::default(),
    };
    backup::run(repo.clone(), req, &|_| {}).await.expect("backup through transient faults");
    let snap = repo.find_snapshot("latest", None).await.unwrap();
    restore::run(repo, &snap, &RestoreTarget::Dir(target.to_path_buf())).await.expect("restore through faults");
    store.inner().injected()
}

#[test]
fn ten_percent_transient_faults_do_not_fail_backup_or_restore() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.bin");
    let data: Vec<u8> = common::sql_like(3, 40 << 20);
    std::fs::write(&input, &data).unwrap();

    let local: DynStore = Arc::new(LocalStore::new(dir.path().join("repo")));
    let target = dir.path().join("out-local");
    let injected = garage::runtime().block_on(backup_through_faults(local, &input, &target));
    assert!(injected >= 3, "only {injected} faults injected");
    assert_eq!(std::fs::read(target.join("dump")).unwrap(), data);

    let Some(g) = garage::shared() else { return };
    let opts =
        S3Options::parse(&g.fresh_url(), |k| g.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap();
    let s3: DynStore = Arc::new(garage::runtime().block_on(S3Store::connect(opts)).unwrap());
    let target = dir.path().join("out-s3");
    let injected = garage::runtime().block_on(backup_through_faults(s3, &input, &target));
    assert!(injected >= 3, "only {injected} faults injected");
    assert_eq!(std::fs::read(target.join("dump")).unwrap(), data);
}
