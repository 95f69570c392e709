//! Private PostgreSQL servers for tests: each cluster in its own temporary
//! directory on a free loopback port, with the superuser `postgres` behind a
//! password (scram-sha-256, also for local connections).
//!
//! PostgreSQL refuses to run as root, so as root the cluster belongs to the
//! `postgres` OS account and initdb and the server run as it. The newest
//! version under /usr/lib/postgresql is used; `bin` holds its pg_dump and
//! friends. Watchdogs, skipping and CI failures work as in mariadb.rs.

#![allow(dead_code)]

use super::mariadb::{
    Startup, abort, find_bin, free_port, is_root, missing, run_client, secret, signal, spawn_server, stop, text,
    wait_ready, watchdog,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const USER: &str = "postgres";

pub struct Postgres {
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The temporary directory: `data/` (also the socket directory), logs.
    pub dir: PathBuf,
    pub data: PathBuf,
    /// The server's bin directory (pg_dump, pg_restore, psql of the same version).
    pub bin: PathBuf,
    /// Pid of the postmaster.
    pub pid: u32,
    psql: PathBuf,
    child: Child,
    watchdog: Child,
    _tmp: tempfile::TempDir,
}

/// The bin directory of the newest PostgreSQL under /usr/lib/postgresql.
pub fn bin_dir() -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Numerically: "10" is newer than "9.6".
        let Ok(version) = name.split('.').map(str::parse).collect::<Result<Vec<u32>, _>>() else {
            continue;
        };
        let bin = e.path().join("bin");
        let complete = bin.join("postgres").is_file() && bin.join("initdb").is_file();
        if complete && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// Whether a server and psql are installed (no skip message, no CI check).
pub fn available() -> bool {
    bin_dir().is_some_and(|b| b.join("psql").is_file() || find_bin("psql").is_some())
}

/// (uid, gid) of an OS account.
pub fn os_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the reentrant variant,
    // because tests start servers from parallel threads.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    (rc == 0 && !found.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

/// C.UTF-8 where the system has it (Debian does), else C.
fn locale() -> &'static str {
    let listed = Command::new("locale").arg("-a").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| matches!(l.to_ascii_lowercase().as_str(), "c.utf8" | "c.utf-8"))
    });
    if listed { "C.UTF-8" } else { "C" }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Run `cmd` as the cluster's owner, from a directory that owner can enter.
fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>, dir: &Path) {
    cmd.current_dir(dir);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

impl Postgres {
    /// Start a private server; `None` (after printing why) when PostgreSQL is
    /// missing outside CI; panics in CI or when the server does not start.
    pub fn start() -> Option<Postgres> {
        Self::start_with(&[])
    }

    /// Like `start`, with extra `postgres` arguments such as `-c wal_level=logical`.
    pub fn start_with(opts: &[&str]) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            return missing("PostgreSQL (Debian package postgresql)");
        };
        let Some(psql) = Some(bin.join("psql")).filter(|p| p.is_file()).or_else(|| find_bin("psql")) else {
            return missing("psql (Debian package postgresql-client)");
        };
        let owner = match is_root() {
            false => None,
            true => match os_user(USER) {
                Some(ids) => Some(ids),
                None => return missing("the postgres OS account (Debian package postgresql)"),
            },
        };
        let started = Instant::now();
        let tmp = tempfile::Builder::new().prefix("drtool-postgres-").tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let data = dir.join("data");
        std::fs::create_dir(&data).expect("create data dir");
        let password = secret();
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write pwfile");
        set_mode(&pwfile, 0o600);
        set_mode(&data, 0o700);
        if let Some((uid, gid)) = owner {
            // The owner must pass through the root-owned temp dir without listing it.
            set_mode(&dir, 0o711);
            for p in [&data, &pwfile] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }

        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).arg(format!("--pwfile={}", pwfile.display()));
        initdb.args(["--auth=scram-sha-256", "-U", USER, "--encoding=UTF8", "--no-sync"]);
        initdb.arg(format!("--locale={}", locale()));
        as_owner(&mut initdb, owner, &dir);
        let out = initdb.stdin(Stdio::null()).output().expect("run initdb");
        let _ = std::fs::remove_file(&pwfile);
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        Some(launch(tmp, data, bin, psql, owner, password, opts, started))
    }

    /// Start a server on an existing data directory (one restored by drtool,
    /// owned by the postgres account when root), whose superuser `postgres`
    /// has `password`. Panics when it does not start.
    pub fn start_existing(data: PathBuf, password: &str, opts: &[&str]) -> Postgres {
        let bin = bin_dir().expect("PostgreSQL is installed");
        let psql = Some(bin.join("psql")).filter(|p| p.is_file()).or_else(|| find_bin("psql")).expect("psql");
        let owner = if is_root() { os_user(USER) } else { None };
        let tmp = tempfile::Builder::new().prefix("drtool-postgres-").tempdir().expect("tempdir");
        if owner.is_some() {
            set_mode(tmp.path(), 0o711);
        }
        launch(tmp, data, bin, psql, owner, password.to_string(), opts, Instant::now())
    }

    /// The server of this test binary, shared by its tests and started on first use.
    pub fn shared() -> Option<&'static Postgres> {
        static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
        SHARED.get_or_init(Postgres::start).as_ref()
    }

    /// A `psql` command logged in as the superuser over TCP to `db` (default
    /// `postgres`): unaligned, tuples only, quiet, stopping at the first error.
    /// The password is in PGPASSWORD, never in argv; override it to try another.
    pub fn client(&self, db: Option<&str>) -> Command {
        psql_cmd(&self.psql, self.port, &self.password, db.unwrap_or("postgres"), "10")
    }

    /// Run SQL; the output rows (fields separated by `|`), without the final newline.
    #[track_caller]
    pub fn sql(&self, db: Option<&str>, sql: &str) -> String {
        self.try_sql(db, sql).unwrap_or_else(|e| panic!("SQL failed on PostgreSQL port {}: {e}\nSQL: {sql}", self.port))
    }

    /// Run SQL; psql's stderr when it fails.
    pub fn try_sql(&self, db: Option<&str>, sql: &str) -> Result<String, String> {
        run_client(self.client(db), sql.as_bytes()).map(|out| text(&out))
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{db}", self.user, self.port)
    }

    /// Kill the postmaster and every backend with SIGKILL, as a crash would
    /// (the object stays usable for assertions; dropping it still cleans up).
    pub fn kill(&self) {
        // Stopped first, so it forks no backend while they are listed; the
        // backends, each in its own session, would outlive their postmaster.
        signal(self.pid, libc::SIGSTOP);
        for kid in super::children_of(self.pid) {
            signal(kid as u32, libc::SIGKILL);
        }
        signal(self.pid, libc::SIGKILL);
    }

    /// "N rows MD5" of a table (`name` or `schema.name`, quoted as given), from
    /// its rows as text in byte order, so equal contents give equal sums on
    /// any server and collation.
    #[track_caller]
    pub fn checksum(&self, db: &str, table: &str) -> String {
        let quoted: Vec<String> = table.split('.').map(|p| format!("\"{}\"", p.replace('"', "\"\""))).collect();
        self.sql(
            Some(db),
            &format!(
                "SELECT count(*) || ' rows ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\")), '-') \
                 FROM {} t",
                quoted.join(".")
            ),
        )
    }
}

/// Start `postgres` on `data` (an initialised cluster) on a free port, retrying port collisions.
#[allow(clippy::too_many_arguments)]
fn launch(
    tmp: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    psql: PathBuf,
    owner: Option<(u32, u32)>,
    password: String,
    opts: &[&str],
    started: Instant,
) -> Postgres {
    let dir = tmp.path().to_path_buf();
    let log = dir.join("postgres.log");
    for attempt in 1..=5 {
        let port = free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string()).arg("-k").arg(&data);
        // Throw-away clusters: crash safety only costs time here.
        for setting in ["listen_addresses=127.0.0.1", "fsync=off", "full_page_writes=off", "synchronous_commit=off"] {
            cmd.args(["-c", setting]);
        }
        cmd.args(opts);
        as_owner(&mut cmd, owner, &dir);
        let mut child = spawn_server(cmd, &log, "postgres");
        // SIGQUIT is an immediate shutdown that takes the backends down too.
        let mut watchdog = watchdog(child.id(), "QUIT", &dir);
        let probe = || run_client(psql_cmd(&psql, port, &password, "postgres", "2"), b"SELECT 1").map(|_| ());
        match wait_ready(&mut child, std::slice::from_ref(&log), probe) {
            Startup::Ready => {
                eprintln!("postgres ready on port {port} in {:.2?} ({})", started.elapsed(), dir.display());
                return Postgres {
                    port,
                    user: USER.to_string(),
                    password,
                    dir,
                    data,
                    bin,
                    pid: child.id(),
                    psql,
                    child,
                    watchdog,
                    _tmp: tmp,
                };
            }
            Startup::PortInUse if attempt < 5 => _ = stop(&mut watchdog, libc::SIGKILL, Duration::ZERO),
            Startup::PortInUse => abort(&mut child, &mut watchdog, libc::SIGQUIT, "ports kept colliding".into()),
            Startup::Failed(why) => abort(&mut child, &mut watchdog, libc::SIGQUIT, why),
        }
    }
    unreachable!("the last attempt returns or panics")
}

fn psql_cmd(psql: &Path, port: u16, password: &str, db: &str, connect_timeout: &str) -> Command {
    let mut c = Command::new(psql);
    c.args(["-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string()]);
    c.args(["-U", USER, "-d", db]);
    c.env("PGPASSWORD", password).env("PGCONNECT_TIMEOUT", connect_timeout);
    // Settings from the developer's environment must not change what tests see.
    for var in ["PGSERVICE", "PGOPTIONS", "PGSSLMODE", "PGTZ", "PGCLIENTENCODING"] {
        c.env_remove(var);
    }
    c
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop(&mut self.watchdog, libc::SIGKILL, Duration::ZERO);
        let kids = super::children_of(self.pid);
        if !stop(&mut self.child, libc::SIGQUIT, Duration::from_secs(20)) {
            // The postmaster was SIGKILLed, which leaves its backends running.
            for kid in kids {
                signal(kid as u32, libc::SIGKILL);
            }
        }
        // The TempDir field then removes the directory.
    }
}
