//! A real Garage S3 server for tests, started through scripts/garage.sh.
//!
//! One shared server per test binary (each test uses its own key prefix), and
//! private servers for tests that stop or kill theirs. A watchdog started by
//! the script stops every server when the test binary exits, even on a crash.
//! Outside CI a missing garage binary skips S3 tests with a message; with
//! CI=true it fails them.

#![allow(dead_code)]

use drtool::store::Store;
use drtool::store::s3::{S3Options, S3Store};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub struct GarageEnv {
    pub dir: PathBuf,
    pub vars: Vec<(String, String)>,
    pub bucket: String,
    pub port: u16,
    /// Owned (private) servers are stopped and removed on drop.
    owned: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/garage.sh")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether garage is installed; with CI=true its absence is a test failure.
pub fn available() -> bool {
    let ok = Command::new(script()).arg("bin").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "garage is not installed but CI=true: run scripts/garage.sh install (scripts/setup.sh does)");
        eprintln!("SKIPPED: garage is not installed (scripts/garage.sh install); S3 tests did not run");
    }
    ok
}

impl GarageEnv {
    fn start_in(dir: tempfile::TempDir, keep: bool) -> GarageEnv {
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .arg(std::process::id().to_string())
            .output()
            .expect("run scripts/garage.sh");
        assert!(out.status.success(), "garage start failed: {}", String::from_utf8_lossy(&out.stderr));
        let vars: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).expect(k);
        let bucket = get("DRTOOL_TEST_S3_BUCKET");
        let port = get("GARAGE_S3_PORT").parse().expect("port");
        if keep {
            GarageEnv { dir: dir.keep(), vars, bucket, port, owned: None }
        } else {
            GarageEnv { dir: dir.path().to_path_buf(), vars, bucket, port, owned: Some(dir) }
        }
    }

    /// A private server, stopped when dropped.
    pub fn private() -> GarageEnv {
        Self::start_in(tempfile::tempdir().expect("tempdir"), false)
    }

    /// The `s3://` address of a fresh, unique prefix in the test bucket.
    pub fn fresh_url(&self) -> String {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("random");
        format!("s3://{}/t-{}", self.bucket, hex::encode(r))
    }

    /// Apply the server's AWS_* variables to a command.
    pub fn apply(&self, cmd: &mut Command) {
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }

    /// A store handle on `url` for direct object access in tests.
    pub fn store(&self, url: &str) -> S3Store {
        let opts = S3Options::parse(url, |k| self.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .expect("s3 options");
        runtime().block_on(S3Store::connect(opts)).expect("connect to garage")
    }

    pub fn stop(&self) {
        let st = Command::new(script()).arg("stop").arg(&self.dir).status().expect("garage stop");
        assert!(st.success());
    }

    pub fn resume(&self) {
        let st = Command::new(script()).arg("resume").arg(&self.dir).status().expect("garage resume");
        assert!(st.success());
    }
}

impl Drop for GarageEnv {
    fn drop(&mut self) {
        if self.owned.is_some() {
            let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
        }
    }
}

/// The shared server of this test binary, or `None` (skip) outside CI when
/// garage is not installed.
pub fn shared() -> Option<&'static GarageEnv> {
    static SHARED: OnceLock<Option<GarageEnv>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if !available() {
                return None;
            }
            // Kept for the life of the process; the script's watchdog removes it.
            let dir = tempfile::Builder::new().prefix("drtool-garage-").tempdir().expect("tempdir");
            let env = GarageEnv::start_in(dir, true);
            Some(env)
        })
        .as_ref()
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"))
}

/// Blocking helpers over the async `Store` trait.
pub fn list(store: &S3Store, prefix: &str) -> Vec<(String, u64)> {
    runtime().block_on(store.list(prefix)).expect("list").into_iter().map(|o| (o.name, o.size)).collect()
}

pub fn get(store: &S3Store, name: &str) -> Vec<u8> {
    runtime().block_on(store.get(name)).expect("get")
}

pub fn put(store: &S3Store, name: &str, data: Vec<u8>) {
    runtime().block_on(store.put(name, data)).expect("put")
}

pub fn delete(store: &S3Store, name: &str) {
    runtime().block_on(store.delete(name)).expect("delete")
}
