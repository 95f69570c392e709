//! Shared helpers for the integration tests: run the real `drtool` binary
//! against a repository in a temporary directory, generate deterministic test
//! data, and inspect the repository and processes from the outside.
//!
//! Every run asserts that stderr never contains a panic message (DESIGN.md
//! principle 5: bad input is a clear error, never a panic).

#![allow(dead_code)]

pub mod backend;
pub mod garage;
pub mod loopdev;
pub mod mariadb;
pub mod postgres;
pub mod procs;

#[allow(unused_imports)]
pub use backend::{Backend, object_id};

use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_drtool");
pub const PASSWORD: &str = "correct horse battery staple";
pub const MIB: usize = 1 << 20;

// ---------------------------------------------------------------- processes

/// What a finished drtool run produced.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Assert the exit code, showing stderr when it differs.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit {code}, got {:?}\nstderr: {}\nstdout: {}",
            self.status,
            self.stderr,
            truncate(&self.stdout_str(), 2000)
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    /// Parse stdout as JSON (asserting that it parses).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", truncate(&self.stdout_str(), 2000)))
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n { s.to_string() } else { format!("{}...", String::from_utf8_lossy(&s.as_bytes()[..n])) }
}

/// Fail the test if a drtool stderr shows a panic.
#[track_caller]
pub fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "drtool panicked:\n{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "drtool panicked:\n{stderr}");
}

/// A drtool command with a clean environment (no inherited repo, password or log settings).
pub fn drtool() -> Command {
    let mut c = Command::new(BIN);
    for var in ["DRTOOL_REPO", "DRTOOL_PASSWORD", "DRTOOL_NEW_PASSWORD", "DRTOOL_LOG", "RUST_BACKTRACE", "RUST_LOG"] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Read a pipe to its end on a thread.
pub fn collect<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Feed `input` to the child's stdin (on a thread, so large inputs cannot
/// deadlock against a full stdout pipe), then wait for it.
pub fn run_with_input(mut cmd: Command, input: Option<Box<dyn Read + Send>>) -> Out {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn drtool");
    let feeder = input.map(|mut r| {
        let mut stdin = child.stdin.take().expect("stdin");
        // A broken pipe (drtool stopped reading) is judged by the exit status.
        std::thread::spawn(move || {
            let _ = io::copy(&mut r, &mut stdin);
        })
    });
    let out = child.wait_with_output().expect("wait for drtool");
    if let Some(f) = feeder {
        f.join().expect("stdin feeder thread");
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_no_panic(&stderr);
    Out { status: out.status, stdout: out.stdout, stderr }
}

/// Run `cmd` with a pseudo-terminal as its stdin (so it may prompt) on which
/// `typed` is entered; stdout and stderr are captured as usual.
pub fn run_on_terminal(mut cmd: Command, typed: &str) -> Out {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the given integers.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty failed: {}", io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned here.
    let (mut master, slave) = unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) };
    cmd.stdin(Stdio::from(slave)).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    // A terminal in canonical mode hands over the line once it is complete.
    master.write_all(typed.as_bytes()).expect("type on the terminal");
    let out = child.wait_with_output().expect("wait");
    drop(master);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_no_panic(&stderr);
    Out { status: out.status, stdout: out.stdout, stderr }
}

/// Wait for a child for at most `limit`; kill it (and fail) when it overruns.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on a pid this test spawned.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed: {}", io::Error::last_os_error());
}

pub fn signal_of(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// (pid, ppid, pgrp, state) of every process, read from /proc.
pub fn processes() -> Vec<(i32, i32, i32, char)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let state = f[0].chars().next().unwrap_or('?');
        let (Ok(ppid), Ok(pgrp)) = (f[1].parse(), f[2].parse()) else {
            continue;
        };
        out.push((pid, ppid, pgrp, state));
    }
    out
}

pub fn children_of(pid: u32) -> Vec<i32> {
    processes().into_iter().filter(|p| p.1 == pid as i32).map(|p| p.0).collect()
}

/// Live (not zombie) processes in process group `pgrp`.
pub fn live_group_members(pgrp: i32) -> Vec<i32> {
    processes().into_iter().filter(|p| p.2 == pgrp && p.3 != 'Z' && p.3 != 'X').map(|p| p.0).collect()
}

/// Poll `cond` every 20 ms for at most `limit`; true when it became true.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

// ---------------------------------------------------------------- repository

/// A repository opened with `password`, with a temporary directory for
/// scratch data. Local by default (`path`); `Repo::init_on(Backend::Garage(..))`
/// puts it under a fresh prefix on a Garage server instead (then `path` is not
/// the repository: use the backend-neutral helpers in backend.rs).
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub password: String,
    /// On S3: the server, the `s3://` address and a store handle on it.
    pub s3: Option<(&'static garage::GarageEnv, String, drtool::store::s3::S3Store)>,
}

impl Repo {
    /// A fresh, initialised repository.
    pub fn init() -> Repo {
        let r = Repo::uninitialised();
        r.run(["init"]).ok();
        assert!(r.path.join("config").is_file(), "init wrote no config");
        r
    }

    /// A repository address where nothing exists yet.
    pub fn uninitialised() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("repo");
        Repo { dir, path, password: PASSWORD.to_string(), s3: None }
    }

    /// A scratch directory next to the repository (not inside it).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// `drtool --repo R ARGS...` with DRTOOL_PASSWORD set; not yet run.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_pw(&self.password, args)
    }

    pub fn cmd_pw<I, S>(&self, password: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = drtool();
        match &self.s3 {
            None => c.arg("--repo").arg(&self.path),
            Some((g, url, _)) => {
                g.apply(&mut c);
                c.arg("--repo").arg(url)
            }
        };
        c.args(args).env("DRTOOL_PASSWORD", password);
        c
    }

    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_with_input(self.cmd(args), None)
    }

    pub fn run_pw<I, S>(&self, password: &str, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_with_input(self.cmd_pw(password, args), None)
    }

    /// Run with `input` on stdin.
    pub fn run_input<I, S>(&self, args: I, input: impl Read + Send + 'static) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_with_input(self.cmd(args), Some(Box::new(input)))
    }

    /// `backup --json --stdin --name NAME` of `data`; asserts success and returns the JSON.
    #[track_caller]
    pub fn backup_stdin(&self, name: &str, data: &[u8]) -> Value {
        let out = self.run_input(["--json", "backup", "--stdin", "--name", name], io::Cursor::new(data.to_vec())).ok();
        out.json()
    }

    /// `backup --json --name NAME -- ARGV...`; asserts success and returns the JSON.
    #[track_caller]
    pub fn backup_command(&self, name: &str, argv: &[&OsStr]) -> Value {
        let mut args: Vec<OsString> = ["--json", "backup", "--name", name, "--"].iter().map(OsString::from).collect();
        args.extend(argv.iter().map(|a| a.to_os_string()));
        self.run(args).ok().json()
    }

    /// `backup --json PATH...`; asserts success and returns the JSON.
    #[track_caller]
    pub fn backup_paths(&self, paths: &[&Path]) -> Value {
        let mut args: Vec<OsString> = vec!["--json".into(), "backup".into()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_os_string()));
        self.run(args).ok().json()
    }

    /// All snapshots as listed by `snapshots --json`, oldest first.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<Value> {
        match self.run(["--json", "snapshots"]).ok().json() {
            Value::Array(v) => v,
            other => panic!("snapshots --json is not an array: {other}"),
        }
    }

    /// `restore SPEC --stdout` (plus extra args); not asserted.
    pub fn restore_stdout(&self, spec: &str, extra: &[&str]) -> Out {
        let mut args = vec!["restore", spec, "--stdout"];
        args.extend_from_slice(extra);
        self.run(args)
    }

    /// `restore SPEC --target DIR` (plus extra args); not asserted.
    pub fn restore_target(&self, spec: &str, target: &Path, extra: &[&str]) -> Out {
        let mut args: Vec<OsString> = vec!["restore".into(), spec.into(), "--target".into(), target.as_os_str().into()];
        args.extend(extra.iter().map(OsString::from));
        self.run(args)
    }

    /// `check --json ARGS...`, returning the exit code and the parsed report.
    #[track_caller]
    pub fn check(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--json", "check"];
        args.extend_from_slice(extra);
        let out = self.run(args);
        let code = out.code().unwrap_or_else(|| panic!("check died: {:?}\n{}", out.status, out.stderr));
        (code, out.json())
    }

    /// The file-system helpers below see only local repositories; on S3 they
    /// would silently find nothing, so they refuse.
    #[track_caller]
    fn assert_local(&self, what: &str) {
        assert!(self.s3.is_none(), "Repo::{what} is for local repositories; use the backend-neutral helpers");
    }

    /// Every regular file under the repository directory.
    pub fn files(&self) -> Vec<PathBuf> {
        self.assert_local("files");
        let mut out = Vec::new();
        walk_files(&self.path, &mut out);
        out.sort();
        out
    }

    /// Total bytes of all files under the repository directory.
    pub fn size(&self) -> u64 {
        self.assert_local("size");
        self.files().iter().map(|p| std::fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Pack files (`data/<xx>/<pack id>`), without temp files.
    pub fn packs(&self) -> Vec<PathBuf> {
        self.assert_local("packs");
        let mut out = Vec::new();
        walk_files(&self.path.join("data"), &mut out);
        out.retain(|p| !file_name(p).starts_with(".tmp"));
        out.sort();
        out
    }

    /// Objects under `snapshots/`.
    pub fn snapshot_files(&self) -> Vec<PathBuf> {
        self.assert_local("snapshot_files");
        let mut out = Vec::new();
        walk_files(&self.path.join("snapshots"), &mut out);
        out.retain(|p| !file_name(p).starts_with(".tmp"));
        out
    }
}

pub fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk_files(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

/// A JSON field as u64, failing the test when it is missing or not a number.
#[track_caller]
pub fn num(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_u64().unwrap_or_else(|| panic!("{path} is not an unsigned number in {v}"))
}

#[track_caller]
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

// ---------------------------------------------------------------- test data

/// xorshift64*: fast, deterministic, good enough to be incompressible.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so small seeds still give well-mixed states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Prng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut it = buf.chunks_exact_mut(8);
        for c in &mut it {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = it.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Prng::new(seed).fill(&mut v);
    v
}

/// Highly compressible SQL-dump-like text of exactly `len` bytes.
pub fn sql_like(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Prng::new(seed);
    let mut v = Vec::with_capacity(len + 200);
    while v.len() < len {
        let r = rng.next_u64();
        let line = format!(
            "INSERT INTO `orders` VALUES ({},'customer-{}','2024-{:02}-{:02} 12:00:00',{}.{:02},'shipped');\n",
            r % 1_000_000,
            (r >> 20) % 5000,
            (r >> 32) % 12 + 1,
            (r >> 40) % 28 + 1,
            (r >> 48) % 1000,
            (r >> 56) % 100
        );
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(len);
    v
}

/// A deterministic stream of `len` bytes, generated block by block (never
/// held in memory): mostly random 1 MiB blocks, every fourth one SQL-like text.
pub struct MixedStream {
    rng: Prng,
    seed: u64,
    remaining: u64,
    block: Vec<u8>,
    pos: usize,
    index: u64,
}

impl MixedStream {
    pub fn new(seed: u64, len: u64) -> Self {
        Self { rng: Prng::new(seed), seed, remaining: len, block: Vec::new(), pos: 0, index: 0 }
    }
}

impl Read for MixedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.pos == self.block.len() {
            let n = (MIB as u64).min(self.remaining) as usize;
            if self.index % 4 == 3 {
                self.block = sql_like(self.seed ^ self.index, n);
            } else {
                self.block.resize(n, 0);
                self.rng.fill(&mut self.block);
            }
            self.pos = 0;
            self.index += 1;
        }
        let n = buf.len().min(self.block.len() - self.pos).min(self.remaining as usize);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    pub inner: R,
    pub hasher: blake3::Hasher,
    pub len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: blake3::Hasher::new(), len: 0 }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// BLAKE3 and length of everything `r` yields.
pub fn hash_reader(mut r: impl Read) -> (blake3::Hash, u64) {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB];
    let mut len = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    (h.finalize(), len)
}

/// Write `data` to a new file.
pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    let mut f = std::fs::File::create(path).expect("create file");
    f.write_all(data).expect("write file");
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || hay.len() < needle.len() {
        return needle.is_empty();
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return false,
            Some(off) => {
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

/// Owns a spawned drtool; when dropped (also on a failed assertion) it kills
/// the process if it is still running, and the source's process group if it
/// still has live members, so no test leaves processes behind.
pub struct Reaper {
    pub child: Child,
    pub group: Option<i32>,
}

impl Reaper {
    pub fn new(child: Child) -> Self {
        Self { child, group: None }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(g) = self.group
            && !live_group_members(g).is_empty()
        {
            // SAFETY: kill(2) on the process group of a command this test had drtool start.
            unsafe { libc::kill(-g, libc::SIGKILL) };
        }
        // Not yet reaped, so the pid cannot have been reused.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
