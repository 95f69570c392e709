//! Private MariaDB servers for tests: each in its own temporary directory on a
//! free loopback port, with an account `drtool` that may do everything
//! (mariadb-dump --master-data needs RELOAD, REPLICATION CLIENT and more).
//!
//! Servers run with `--no-defaults`, so nothing in /etc/mysql changes what a
//! test sees. A watchdog process kills each server and removes its directory
//! when the test binary exits, even when it is killed; `shared()` servers are
//! never dropped and rely on it. Outside CI a missing mariadbd skips the test
//! with a message; with CI=true it fails it.
//!
//! The process helpers at the end are shared with postgres.rs.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A cold start takes about a second; the margin is for loaded CI machines.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const USER: &str = "drtool";

pub struct MariaDb {
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The temporary directory: `data/`, the socket, logs.
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Pid of mariadbd.
    pub pid: u32,
    client: PathBuf,
    child: Child,
    watchdog: Child,
    _tmp: tempfile::TempDir,
}

struct Bins {
    server: PathBuf,
    install: PathBuf,
    client: PathBuf,
}

fn bins() -> Option<Bins> {
    Some(Bins { server: find_bin("mariadbd")?, install: find_bin("mariadb-install-db")?, client: find_bin("mariadb")? })
}

/// Whether mariadbd and its tools are installed (no skip message, no CI check).
pub fn available() -> bool {
    bins().is_some()
}

// The defaults preallocate a 96 MiB redo log and a 128 MiB pool per server;
// tests start many servers, and durability across an OS crash is not tested.
const INNODB: [&str; 3] =
    ["--innodb-log-file-size=16M", "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=2"];

const SHARED_OPTS: [&str; 4] = ["--log-bin=mysql-bin", "--server-id=1", "--binlog-format=ROW", "--event-scheduler=ON"];

impl MariaDb {
    /// Start a private server; `None` (after printing why) when mariadbd is
    /// missing outside CI; panics in CI or when the server does not start.
    pub fn start() -> Option<MariaDb> {
        Self::start_with(&[])
    }

    /// Like `start`, with extra mariadbd arguments such as `--log-bin=mysql-bin`.
    pub fn start_with(opts: &[&str]) -> Option<MariaDb> {
        let Some(bins) = bins() else {
            return missing("mariadbd (Debian package mariadb-server)");
        };
        let started = Instant::now();
        let tmp = tempfile::Builder::new().prefix("drtool-mariadb-").tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let data = dir.join("data");
        let password = secret();
        // The init file creates the account before the server accepts
        // connections, so nothing ever logs in as root.
        let init = dir.join("init.sql");
        let mut sql = String::new();
        for host in ["127.0.0.1", "localhost"] {
            sql += &format!(
                "CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{password}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION;\n"
            );
        }
        std::fs::write(&init, sql).expect("write init.sql");

        let mut install = Command::new(&bins.install);
        install.arg("--no-defaults").arg(format!("--datadir={}", data.display()));
        // A private tmpdir: bootstraps sharing /tmp intermittently lost each
        // other's temporary tables ("Unknown table 'mysql.tmp_user_sys'").
        install.arg(format!("--tmpdir={}", dir.display()));
        install.args(["--skip-test-db", "--skip-name-resolve"]).args(INNODB);
        if is_root() {
            install.arg("--user=root");
        }
        let out = install.stdin(Stdio::null()).output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let socket = dir.join("mysqld.sock");
        let (error_log, out_log) = (dir.join("error.log"), dir.join("mariadbd.out"));
        for attempt in 1..=5 {
            let port = free_port();
            let mut cmd = Command::new(&bins.server);
            cmd.arg("--no-defaults");
            if is_root() {
                cmd.arg("--user=root");
            }
            cmd.arg(format!("--datadir={}", data.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
                .arg(format!("--tmpdir={}", dir.display()))
                .arg(format!("--log-error={}", error_log.display()))
                .arg(format!("--init-file={}", init.display()))
                .arg("--skip-name-resolve")
                // Debian's packaged config sets these; --no-defaults would leave latin1.
                .args(["--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"])
                .args(INNODB)
                .args(opts);
            let mut child = spawn_server(cmd, &out_log, "mariadbd");
            let mut watchdog = watchdog(child.id(), "KILL", &dir);
            let logs = [error_log.clone(), out_log.clone()];
            let probe = || {
                let mut c = Command::new(&bins.client);
                c.args(client_args(port, USER)).arg("--connect-timeout=2").env("MYSQL_PWD", &password);
                run_client(c, b"SELECT 1").map(|_| ())
            };
            match wait_ready(&mut child, &logs, probe) {
                Startup::Ready => {
                    eprintln!("mariadbd ready on port {port} in {:.2?} ({})", started.elapsed(), dir.display());
                    return Some(MariaDb {
                        port,
                        user: USER.to_string(),
                        password,
                        dir,
                        socket,
                        pid: child.id(),
                        client: bins.client,
                        child,
                        watchdog,
                        _tmp: tmp,
                    });
                }
                Startup::PortInUse if attempt < 5 => _ = stop(&mut watchdog, libc::SIGKILL, Duration::ZERO),
                Startup::PortInUse => abort(&mut child, &mut watchdog, libc::SIGKILL, "ports kept colliding".into()),
                Startup::Failed(why) => abort(&mut child, &mut watchdog, libc::SIGKILL, why),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The server of this test binary, shared by its tests and started on first
    /// use with binary logging (row format) and the event scheduler on.
    pub fn shared() -> Option<&'static MariaDb> {
        static SHARED: OnceLock<Option<MariaDb>> = OnceLock::new();
        SHARED.get_or_init(|| MariaDb::start_with(&SHARED_OPTS)).as_ref()
    }

    /// A `mariadb` client command logged in as the admin account over TCP, in
    /// batch mode without column names. The password is in MYSQL_PWD (never in
    /// argv, where `ps` shows it); override it to try another.
    pub fn client(&self, db: Option<&str>) -> Command {
        let mut c = Command::new(&self.client);
        c.args(client_args(self.port, &self.user)).env("MYSQL_PWD", &self.password);
        if let Some(db) = db {
            c.arg(format!("--database={db}"));
        }
        c
    }

    /// Run SQL; the output rows (tab-separated), without the final newline.
    #[track_caller]
    pub fn sql(&self, db: Option<&str>, sql: &str) -> String {
        self.try_sql(db, sql).unwrap_or_else(|e| panic!("SQL failed on MariaDB port {}: {e}\nSQL: {sql}", self.port))
    }

    /// Run SQL; the client's stderr when it fails.
    pub fn try_sql(&self, db: Option<&str>, sql: &str) -> Result<String, String> {
        run_client(self.client(db), sql.as_bytes()).map(|out| text(&out))
    }

    /// The address drtool takes for databases `dbs` (comma-separated).
    pub fn url(&self, dbs: &str) -> String {
        format!("mysql://{}@127.0.0.1:{}/{dbs}", self.user, self.port)
    }

    /// Kill the server with SIGKILL, as a crash would (the object stays usable
    /// for assertions; dropping it still cleans up).
    pub fn kill(&self) {
        // Never reaped before Drop, so the pid cannot belong to another process.
        signal(self.pid, libc::SIGKILL);
    }

    /// "N rows HASH": BLAKE3 over the table's rows sorted bytewise. Sorting in
    /// the client, because ORDER BY follows collations in which distinct
    /// values ('a', 'A') tie, and then the order may differ between servers.
    #[track_caller]
    pub fn checksum(&self, db: &str, table: &str) -> String {
        let sql = format!("SELECT * FROM `{}`", table.replace('`', "``"));
        let out = run_client(self.client(Some(db)), sql.as_bytes())
            .unwrap_or_else(|e| panic!("checksum of {db}.{table} failed: {e}"));
        hash_rows(&out)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop(&mut self.watchdog, libc::SIGKILL, Duration::ZERO);
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(20));
        // The TempDir field then removes the directory.
    }
}

fn client_args(port: u16, user: &str) -> Vec<String> {
    // --no-defaults only works as the first argument.
    let fixed = ["--no-defaults", "--protocol=TCP", "--host=127.0.0.1", "--default-character-set=utf8mb4"];
    let fixed = fixed.iter().chain(&["--batch", "--skip-column-names"]).map(|s| s.to_string());
    fixed.chain([format!("--port={port}"), format!("--user={user}")]).collect()
}

/// "N rows HASH" of newline-terminated rows, independent of their order.
fn hash_rows(out: &[u8]) -> String {
    let body = out.strip_suffix(b"\n").unwrap_or(out);
    let mut rows: Vec<&[u8]> = if out.is_empty() { Vec::new() } else { body.split(|&b| b == b'\n').collect() };
    rows.sort_unstable();
    let mut h = blake3::Hasher::new();
    for r in &rows {
        h.update(r);
        h.update(b"\n");
    }
    format!("{} rows {}", rows.len(), h.finalize().to_hex())
}

// ---------------------------------------------------------------- shared with postgres.rs

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The answer of `start()` when `what` is not installed: a failure in CI, a
/// visible skip elsewhere.
#[track_caller]
pub fn missing<T>(what: &str) -> Option<T> {
    assert!(!in_ci(), "{what} is not installed but CI=true: run scripts/setup.sh");
    eprintln!("SKIPPED: {what} is not installed (run scripts/setup.sh); this test did not run");
    None
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `name` in PATH or in the sbin directories, which PATH may lack for non-root users.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago; callers retry on a collision.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A password unique to this server.
pub fn secret() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("pw-{}-{nanos}", std::process::id())
}

/// Spawn a server with its output in `log`, in its own process group so a
/// Ctrl-C aimed at the test does not reach it before the watchdog can act.
pub fn spawn_server(mut cmd: Command, log: &Path, what: &str) -> Child {
    let out = std::fs::File::create(log).expect("create server log");
    let err = out.try_clone().expect("clone log handle");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"))
}

/// Start a process that, once this test binary has exited (or become a
/// zombie), sends `sig` to `server`, SIGKILLs it 10 s later if it still runs,
/// and removes `dir`. Its own process group, like the server's.
pub fn watchdog(server: u32, sig: &str, dir: &Path) -> Child {
    // A zombie counts as gone: kill -0 succeeds on one, and a parent or an
    // init that does not reap would otherwise keep the watchdog waiting.
    const SCRIPT: &str = r#"p=$1 s=$2 sig=$3 d=$4
alive() {
    read -r st < "/proc/$1/stat" || return 1
    st=${st##*) }
    case $st in Z*|X*) return 1 ;; esac
}
while alive "$p"; do sleep 0.5; done
kill -"$sig" "$s"
i=0
while alive "$s" && [ "$i" -lt 40 ]; do sleep 0.25; i=$((i + 1)); done
kill -KILL "$s"
rm -rf "$d"
"#;
    Command::new("/bin/sh")
        .args(["-c", SCRIPT, "drtool-db-watchdog"])
        .args([std::process::id().to_string(), server.to_string(), sig.to_string()])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn watchdog")
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2); callers pass a server (or backend) pid this process
    // started and has not reaped, so it cannot have been reused.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Send `sig`, wait up to `grace` for the exit, then SIGKILL; always reaps.
/// False when SIGKILL was needed.
pub fn stop(child: &mut Child, sig: i32, grace: Duration) -> bool {
    let mut graceful = true;
    if let Ok(None) = child.try_wait() {
        signal(child.id(), sig);
        let start = Instant::now();
        while start.elapsed() < grace && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        graceful = !matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
    }
    let _ = child.wait();
    graceful
}

/// Stop a server that failed to start and fail the test with `why`.
pub fn abort(server: &mut Child, watchdog: &mut Child, sig: i32, why: String) -> ! {
    stop(watchdog, libc::SIGKILL, Duration::ZERO);
    stop(server, sig, Duration::from_secs(10));
    panic!("{why}");
}

pub enum Startup {
    Ready,
    PortInUse,
    Failed(String),
}

/// Poll `probe` until it succeeds, the server exits, or STARTUP_TIMEOUT passes.
pub fn wait_ready(server: &mut Child, logs: &[PathBuf], mut probe: impl FnMut() -> Result<(), String>) -> Startup {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            let tail = tails(logs);
            if tail.contains("Address already in use") {
                return Startup::PortInUse;
            }
            return Startup::Failed(format!("server exited during startup ({status}):\n{tail}"));
        }
        let last = match probe() {
            Ok(()) => return Startup::Ready,
            Err(e) => e,
        };
        if start.elapsed() > STARTUP_TIMEOUT {
            return Startup::Failed(format!(
                "server did not accept connections within {STARTUP_TIMEOUT:?}; last client error: {last}\n{}",
                tails(logs)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last 40 lines of each log, labelled.
pub fn tails(logs: &[PathBuf]) -> String {
    let mut s = String::new();
    for p in logs {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        s += &format!("--- {} (last 40 lines)\n{}\n", p.display(), lines[lines.len().saturating_sub(40)..].join("\n"));
    }
    s
}

/// Run a client with `input` on stdin; its stdout, or its status and stderr.
pub fn run_client(mut cmd: Command, input: &[u8]) -> Result<Vec<u8>, String> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // On a thread: a large input must not deadlock against a full stdout pipe.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| format!("wait for client: {e}"))?;
    let _ = feeder.join();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("client exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim_end()))
    }
}

/// Client output as text without the final newline.
pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).trim_end_matches('\n').to_string()
}
