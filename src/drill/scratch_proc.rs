//! The machine side of a scratch: its private directory, the processes it
//! started, and the watchdog that removes both if drtool dies without tearing
//! the scratch down.
//!
//! Every process runs in its own process group, so a Ctrl-C aimed at drtool
//! does not reach a server before the watchdog can act, and so stopping a
//! server also stops what it spawned (PostgreSQL backends, Galera's rsync
//! daemons). A leader is never reaped before its group has been killed: an
//! unreaped leader keeps its pid, and with it the group id, from being reused.

use super::scratch::ScratchError;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Ports a scratch must never take: the machine's own servers live there.
const DEFAULT_PORTS: [u16; 3] = [3306, 5432, 27017];

/// The OS account servers run as when drtool runs as root.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The account `name`, if it exists.
pub(crate) fn account(name: &str) -> Option<Owner> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid value for getpwnam_r to overwrite.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the reentrant variant,
    // because several scratches may be provisioned from parallel threads.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    (rc == 0 && !found.is_null()).then(|| Owner { name: name.to_string(), uid: pw.pw_uid, gid: pw.pw_gid })
}

/// `name` on PATH or in the sbin directories, which PATH often lacks.
pub(crate) fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `n` distinct loopback ports that were free a moment ago. All listeners are
/// held until every port is chosen, so the ports differ; callers still retry
/// on a collision, because another process may take one before the server binds it.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, ScratchError> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ScratchError::io("bind 127.0.0.1:0", e))?;
        let port = l.local_addr().map_err(|e| ScratchError::io("local address of a probe socket", e))?.port();
        if !DEFAULT_PORTS.contains(&port) {
            held.push((port, l));
        }
    }
    Ok(held.into_iter().map(|(p, _)| p).collect())
}

/// A random password of 32 hex digits: safe in SQL literals and option files
/// without quoting.
pub(crate) fn random_password() -> Result<String, ScratchError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ScratchError::io("random password", std::io::Error::other(e.to_string())))?;
    Ok(hex::encode(b))
}

/// The last `n` lines of each log, labelled: what a failed start is reported with.
pub(crate) fn log_tail(logs: &[PathBuf], n: usize) -> String {
    let mut s = String::new();
    for p in logs {
        let Ok(text) = std::fs::read(p) else { continue };
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        s += &format!("\n--- {} (last {n} lines)\n{tail}", p.display());
    }
    s
}

pub(crate) fn port_collision(logs: &[PathBuf]) -> bool {
    logs.iter().any(|p| std::fs::read(p).is_ok_and(|t| String::from_utf8_lossy(&t).contains("Address already in use")))
}

/// How a process is asked to stop: at teardown (graceful) and by the watchdog
/// (fast, drtool is gone and nobody waits for the result).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signals {
    pub teardown: i32,
    pub watchdog: i32,
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGTERM => "TERM",
        _ => "KILL",
    }
}

/// A process the scratch started, leader of its own process group.
struct Proc {
    name: String,
    child: Child,
    signals: Signals,
    status: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exited, without reaping it (WNOWAIT): the pid stays ours until `reap`.
    fn exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        // SAFETY: an all-zero siginfo_t is valid for waitid to fill in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: plain waitid(2) on our own unreaped child.
        let rc = unsafe { libc::waitid(libc::P_PID, self.pid() as libc::id_t, &mut info, flags) };
        // SAFETY: si_pid is valid to read after a successful waitid with WEXITED.
        rc != 0 || unsafe { info.si_pid() } != 0
    }

    fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own unreaped child, whose pid cannot have been reused.
            unsafe { libc::kill(self.pid() as i32, sig) };
        }
    }

    /// SIGKILL whatever is left of the group, then reap the leader.
    fn reap(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // SAFETY: the group id is the unreaped leader's pid, so it is still ours.
            unsafe { libc::kill(-(self.pid() as i32), libc::SIGKILL) };
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

/// The process that cleans up after a drtool that died. It learns each pid
/// through a pipe whose only writer is drtool: end of file without a "done"
/// line means drtool is gone, however it died (zombie or not, reaped or not).
struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

const WATCHDOG: &str = r#"trap '' HUP INT TERM PIPE
d=$1 procs=
while IFS= read -r line; do
    [ "$line" = done ] && exit 0
    procs="$procs $line"
done
# Each entry is PID:START:SIGNAL. The start time (field 22 of /proc/PID/stat)
# tells our process from a later one that reused its pid.
started() { read -r st 2>/dev/null <"/proc/$1/stat" || return 1; set -- ${st##*) }; shift 19; echo "$1"; }
ours() { t=$(started "$1") || return 1; [ "$t" = "$2" ]; }
live() { read -r st 2>/dev/null <"/proc/$1/stat" || return 1; st=${st##*) }; case $st in Z*|X*) return 1 ;; esac; }
for e in $procs; do
    p=${e%%:*} r=${e#*:}
    ours "$p" "${r%%:*}" && kill -s "${r#*:}" "$p" 2>/dev/null
done
i=0
while [ "$i" -lt 40 ]; do
    busy=
    for e in $procs; do live "${e%%:*}" && busy=1; done
    [ -z "$busy" ] && break
    sleep 0.25
    i=$((i + 1))
done
# Then the whole group: backends, SST helpers. A vanished leader's group can
# only hold what it left behind.
for e in $procs; do
    p=${e%%:*} r=${e#*:}
    if ours "$p" "${r%%:*}" || ! [ -e "/proc/$p" ]; then kill -s KILL -- "-$p" 2>/dev/null; fi
done
sleep 0.2
rm -rf -- "$d"
sleep 1
rm -rf -- "$d"
"#;

impl Watchdog {
    fn start(dir: &Path) -> Result<Watchdog, ScratchError> {
        let mut child = crate::child::minimal(&mut Command::new("/bin/sh"))
            .args(["-c", WATCHDOG, "drtool-scratch-watchdog"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| ScratchError::io("start the scratch watchdog (/bin/sh)", e))?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }

    fn register(&mut self, pid: u32, signal: i32) -> Result<(), ScratchError> {
        let start = start_time(pid).unwrap_or_default();
        let line = format!("{pid}:{start}:{}\n", signal_name(signal));
        let pipe =
            self.pipe.as_mut().ok_or_else(|| ScratchError::io("watchdog", std::io::Error::other("dismissed")))?;
        pipe.write_all(line.as_bytes()).and_then(|_| pipe.flush()).map_err(|e| ScratchError::io("tell the watchdog", e))
    }

    /// Stand the watchdog down: the scratch is gone and its pids may be reused.
    fn dismiss(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A scratch's directory, processes and watchdog. Dropped, it tears itself
/// down, so a provisioning step that fails halfway leaves nothing behind.
pub(crate) struct Site {
    kind: &'static str,
    dir: PathBuf,
    owner: Option<Owner>,
    procs: Vec<Proc>,
    watchdog: Watchdog,
    removed: bool,
}

/// Index of a process in its `Site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcId(usize);

impl Site {
    /// A new directory under the system's temporary directory, owned by
    /// `owner` when given (servers refuse to run as root or must not), and
    /// its watchdog.
    pub fn create(kind: &'static str, owner: Option<Owner>) -> Result<Site, ScratchError> {
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("drtool-scratch-{kind}-"))
            .tempdir_in(&tmp)
            .map_err(|e| ScratchError::io(format!("create a directory in {}", tmp.display()), e))?
            .keep();
        let watchdog = match Watchdog::start(&dir) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let site = Site { kind, dir, owner, procs: Vec::new(), watchdog, removed: false };
        if let Some(o) = &site.owner {
            site.chown(&site.dir)?;
            check_traversable(&site.dir, o)?;
        }
        Ok(site)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    fn chown(&self, path: &Path) -> Result<(), ScratchError> {
        if let Some(o) = &self.owner {
            std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid))
                .map_err(|e| ScratchError::io(format!("give {} to {}", path.display(), o.name), e))?;
        }
        Ok(())
    }

    /// A directory inside the site, owned by the servers' account.
    pub fn mkdir(&self, rel: &str) -> Result<PathBuf, ScratchError> {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(&p).map_err(|e| ScratchError::io(format!("create {}", p.display()), e))?;
        set_mode(&p, 0o700)?;
        self.chown(&p)?;
        Ok(p)
    }

    /// A file only the servers' account (and root) may read.
    pub fn write_private(&self, path: &Path, contents: &str) -> Result<(), ScratchError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e| ScratchError::io(format!("write {}", path.display()), e);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
        f.write_all(contents.as_bytes()).map_err(err)?;
        self.chown(path)
    }

    /// A command that runs as the servers' account, from the site directory.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        crate::child::minimal(&mut c).current_dir(&self.dir).env("HOME", &self.dir).stdin(Stdio::null());
        if let Some(o) = &self.owner {
            c.uid(o.uid).gid(o.gid).env("USER", &o.name).env("LOGNAME", &o.name);
        }
        c
    }

    /// Start `cmd` with its output in `log`, in its own process group, known
    /// to the watchdog before this returns.
    pub fn spawn(
        &mut self,
        mut cmd: Command,
        log: &Path,
        name: &str,
        signals: Signals,
    ) -> Result<ProcId, ScratchError> {
        let out = std::fs::File::create(log).map_err(|e| ScratchError::io(format!("create {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| ScratchError::io(format!("open {}", log.display()), e))?;
        self.chown(log)?;
        cmd.stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().map_err(|e| ScratchError::io(format!("start {name} ({:?})", cmd.get_program()), e))?;
        let pid = child.id();
        self.procs.push(Proc { name: name.to_string(), child, signals, status: None });
        self.watchdog.register(pid, signals.watchdog)?;
        Ok(ProcId(self.procs.len() - 1))
    }

    /// Run a setup tool (initdb, mariadb-install-db) to completion; a
    /// failure carries its log.
    pub fn run(&mut self, cmd: Command, log: &Path, name: &str, limit: Duration) -> Result<(), ScratchError> {
        let id = self.spawn(cmd, log, name, Signals { teardown: libc::SIGTERM, watchdog: libc::SIGKILL })?;
        let start = Instant::now();
        while !self.exited(id) && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
        let timed_out = !self.exited(id);
        let status = self.procs[id.0].reap();
        if timed_out || !status.is_some_and(|s| s.success()) {
            let how =
                if timed_out { format!("did not finish within {limit:?}") } else { format!("failed ({status:?})") };
            let cause = format!("{name} {how}{}", log_tail(&[log.to_path_buf()], 30));
            return Err(ScratchError::Start { kind: self.kind.to_string(), cause });
        }
        Ok(())
    }

    pub fn exited(&self, id: ProcId) -> bool {
        self.procs[id.0].exited()
    }

    /// Pids of the processes still running (servers; setup tools have finished).
    pub fn live_pids(&self) -> Vec<u32> {
        self.procs.iter().filter(|p| !p.exited()).map(Proc::pid).collect()
    }

    /// Kill a process at once (a server that failed to start) and reap it.
    pub fn kill(&mut self, id: ProcId) {
        let p = &mut self.procs[id.0];
        p.signal(libc::SIGKILL);
        p.reap();
    }

    /// Stop every process, newest first, each with the graceful signal and
    /// SIGKILL after `grace`, then reap. One at a time: Galera nodes that
    /// leave together all wait out the suspect timeout for each other (5 s),
    /// while a node leaving a live cluster is gone in well under a second.
    /// The names of processes that needed SIGKILL.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<String> {
        let mut forced = Vec::new();
        for p in self.procs.iter_mut().rev() {
            if !p.exited() {
                p.signal(p.signals.teardown);
                let start = Instant::now();
                while start.elapsed() < grace && !p.exited() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if !p.exited() {
                    forced.push(p.name.clone());
                    p.signal(libc::SIGKILL);
                }
            }
            p.reap();
        }
        forced
    }

    /// Stop everything, remove the directory and dismiss the watchdog.
    /// Idempotent. The watchdog stays on duty until the directory is gone, so
    /// a drtool killed halfway still leaves nothing behind.
    pub fn teardown(&mut self, grace: Duration) -> Result<(), ScratchError> {
        if self.removed {
            return Ok(());
        }
        let forced = self.stop_all(grace);
        if !forced.is_empty() {
            tracing::warn!(
                kind = self.kind,
                "scratch processes ignored the stop signal for {grace:?} and were killed: {}",
                forced.join(", ")
            );
        }
        let removed = match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ScratchError::io(format!("remove {}", self.dir.display()), e))
            }
            _ => Ok(()),
        };
        self.watchdog.dismiss();
        self.removed = true;
        removed
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.teardown(Duration::from_secs(30));
    }
}

/// How waiting for a server to accept connections ended.
pub(crate) enum Startup {
    Ready,
    /// A server exited complaining that a port was taken: pick others and retry.
    PortInUse,
    /// Why, with the tail of `logs`.
    Failed(String),
}

/// Poll `probe` (true: ready) until it says so, one of `ids` exits, or `limit` passes.
pub(crate) fn wait_ready(
    site: &Site,
    ids: &[ProcId],
    logs: &[PathBuf],
    limit: Duration,
    mut probe: impl FnMut() -> Result<bool, String>,
) -> Startup {
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        if let Some(&dead) = ids.iter().find(|&&id| site.exited(id)) {
            if port_collision(logs) {
                return Startup::PortInUse;
            }
            let name = &site.procs[dead.0].name;
            return Startup::Failed(format!("{name} exited during startup{}", log_tail(logs, 40)));
        }
        match probe() {
            Ok(true) => return Startup::Ready,
            Ok(false) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > limit {
            let tail = log_tail(logs, 40);
            return Startup::Failed(format!("not ready within {limit:?}; last answer: {last}{tail}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ScratchError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ScratchError::io(format!("chmod {}", p.display()), e))
}

/// Every ancestor of `dir` must let `owner` pass, or the servers cannot reach
/// their data: a clear error now beats a confusing one from initdb.
fn check_traversable(dir: &Path, owner: &Owner) -> Result<(), ScratchError> {
    use std::os::unix::fs::MetadataExt;
    for a in dir.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(a) else { continue };
        let passable = m.mode() & 0o001 != 0
            || (m.uid() == owner.uid && m.mode() & 0o100 != 0)
            || (m.gid() == owner.gid && m.mode() & 0o010 != 0);
        if !passable {
            return Err(ScratchError::Unavailable(format!(
                "the {} account cannot enter {} (set TMPDIR to a directory every user may traverse, such as /tmp)",
                owner.name,
                a.display()
            )));
        }
    }
    Ok(())
}
