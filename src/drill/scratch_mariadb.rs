//! MariaDB scratch servers: one node here; galera.rs builds clusters from the
//! same pieces.
//!
//! Each node reads only its own option file (`--defaults-file`, never
//! /etc/mysql): Galera's state-transfer scripts re-read the server's options
//! from that file, so it must hold every setting, and the machine's
//! configuration must not leak in. The account `drtool` is created by an init
//! file before the server accepts connections, so nothing logs in as root.

use super::scratch::{Node, ScratchError};
use super::scratch_proc::{ProcId, Signals, Site, Startup, find_bin, free_ports, is_root, wait_ready};
use crate::engine::mysql::MysqlConn;
use crate::engine::{DbUrl, Password};
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const USER: &str = "drtool";
/// A cold start takes about a second; the margin is for loaded machines.
const STARTUP_LIMIT: Duration = Duration::from_secs(90);
const INSTALL_LIMIT: Duration = Duration::from_secs(180);
/// Attempts with fresh ports when one was taken between choosing and binding it.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// Throw-away data: speed over durability. The pool is allocated as pages
/// are used, so 1 GiB costs nothing for small restores; a 256 MiB redo log
/// and no flush at commit loaded a 555 MB dump in 47.6 s instead of 126.7 s
/// with a 128 MiB pool and 48 MiB log (scripts/bench-drill.sh).
const INNODB: &[&str] = &[
    "innodb_buffer_pool_size=1G",
    "innodb_log_file_size=256M",
    "innodb_flush_log_at_trx_commit=0",
    "innodb_doublewrite=0",
];

pub(crate) struct Bins {
    pub server: PathBuf,
    pub install: PathBuf,
}

pub(crate) fn bins() -> Result<Bins, ScratchError> {
    let missing = |what: &str| {
        ScratchError::Unavailable(format!(
            "{what} is not installed on this machine (Debian package mariadb-server; see scripts/setup.sh)"
        ))
    };
    let server = find_bin("mariadbd").or_else(|| find_bin("mysqld")).ok_or_else(|| missing("mariadbd"))?;
    let install = find_bin("mariadb-install-db")
        .or_else(|| find_bin("mysql_install_db"))
        .ok_or_else(|| missing("mariadb-install-db"))?;
    if find_bin("mariadb").is_none() && find_bin("mysql").is_none() {
        return Err(missing("the mariadb client"));
    }
    Ok(Bins { server, install })
}

/// Where one node keeps everything.
pub(crate) struct NodeDir {
    pub name: String,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub cnf: PathBuf,
    pub error_log: PathBuf,
    pub out_log: PathBuf,
    pub init: PathBuf,
}

impl NodeDir {
    pub fn create(site: &Site, name: &str) -> Result<NodeDir, ScratchError> {
        let dir = site.mkdir(name)?;
        site.mkdir(&format!("{name}/tmp"))?;
        // The data directory itself is left to mariadb-install-db or, on a
        // Galera joiner, to the state transfer; its parent must exist.
        Ok(NodeDir {
            name: name.to_string(),
            data: dir.join("data"),
            cnf: dir.join("my.cnf"),
            error_log: dir.join("error.log"),
            out_log: dir.join("mariadbd.out"),
            init: dir.join("init.sql"),
            dir,
        })
    }

    pub fn logs(&self) -> Vec<PathBuf> {
        vec![self.error_log.clone(), self.out_log.clone()]
    }

    /// The `[mysqld]` options of a node on `port`, plus `extra` lines.
    pub fn config(&self, site: &Site, port: u16, extra: &[String]) -> String {
        let d = &self.dir;
        let mut lines = vec![
            "[mysqld]".to_string(),
            format!("datadir={}", self.data.display()),
            format!("port={port}"),
            "bind-address=127.0.0.1".to_string(),
            format!("socket={}", d.join("mysqld.sock").display()),
            format!("pid-file={}", d.join("mariadbd.pid").display()),
            format!("tmpdir={}", d.join("tmp").display()),
            format!("log-error={}", self.error_log.display()),
            "skip-name-resolve".to_string(),
            "skip-log-bin".to_string(),
            // Debian's packaged config sets these; without it the server would be latin1.
            "character-set-server=utf8mb4".to_string(),
            "collation-server=utf8mb4_general_ci".to_string(),
            // Dumps may hold rows far larger than the 16 MiB default.
            "max_allowed_packet=1G".to_string(),
            // Restored events must not run and change data under the checks.
            "event-scheduler=OFF".to_string(),
            "log_bin_trust_function_creators=1".to_string(),
        ];
        lines.extend(INNODB.iter().map(|s| s.to_string()));
        if is_root() && site.owner().is_none() {
            // Root without a mysql account: mariadbd refuses root unless told.
            lines.push("user=root".to_string());
        }
        lines.extend(extra.iter().cloned());
        lines.join("\n") + "\n"
    }

    /// (Re)write the option file.
    pub fn write_config(&self, site: &Site, contents: &str) -> Result<(), ScratchError> {
        let _ = std::fs::remove_file(&self.cnf);
        site.write_private(&self.cnf, contents)
    }

    /// The init file that creates the drtool account with every privilege.
    /// ALL PRIVILEGES includes SET USER and SUPER, which restoring objects
    /// with another user's DEFINER (root@localhost in most dumps) requires.
    pub fn write_init(&self, site: &Site, password: &str) -> Result<(), ScratchError> {
        let mut sql = String::new();
        for host in ["127.0.0.1", "localhost"] {
            sql += &format!(
                "CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{password}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION;\n"
            );
        }
        let _ = std::fs::remove_file(&self.init);
        site.write_private(&self.init, &sql)
    }
}

/// Create the system tables in `node.data`.
pub(crate) fn install(site: &mut Site, bins: &Bins, node: &NodeDir) -> Result<(), ScratchError> {
    let mut cmd = site.command(&bins.install);
    // Its own options, not the node's file: the bootstrap server must not try
    // to join a cluster.
    cmd.arg("--no-defaults").arg(format!("--datadir={}", node.data.display()));
    // A private tmpdir: bootstraps sharing /tmp have lost each other's
    // temporary tables ("Unknown table 'mysql.tmp_user_sys'").
    cmd.arg(format!("--tmpdir={}", node.dir.join("tmp").display()));
    cmd.args(["--skip-test-db", "--skip-name-resolve", "--auth-root-authentication-method=socket"]);
    cmd.args(INNODB.iter().map(|o| format!("--{o}")));
    if is_root() && site.owner().is_none() {
        cmd.arg("--user=root");
    }
    let log = node.dir.join("install.log");
    site.run(cmd, &log, "mariadb-install-db", INSTALL_LIMIT)
}

/// Start mariadbd for `node` with its option file and `args`.
pub(crate) fn spawn(site: &mut Site, bins: &Bins, node: &NodeDir, args: &[String]) -> Result<ProcId, ScratchError> {
    let mut cmd = site.command(&bins.server);
    // --defaults-file must come first.
    cmd.arg(format!("--defaults-file={}", node.cnf.display())).args(args);
    let _ = std::fs::remove_file(&node.error_log);
    // The watchdog SIGKILLs: nobody waits for a clean shutdown of throw-away data.
    let signals = Signals { teardown: libc::SIGTERM, watchdog: libc::SIGKILL };
    site.spawn(cmd, &node.out_log, &format!("mariadbd ({})", node.name), signals)
}

/// A connection as drtool on `port`.
pub(crate) fn conn(port: u16, password: &str) -> Result<MysqlConn, ScratchError> {
    let url = DbUrl::parse(&format!("mysql://{USER}@127.0.0.1:{port}/"))
        .map_err(|source| ScratchError::Engine { kind: "mariadb".into(), source })?;
    MysqlConn::new(&url, &Password::new(password))
        .map_err(|source| ScratchError::Engine { kind: "mariadb".into(), source })
}

/// Run SQL with a short connect timeout (a starting server may accept and
/// stall); the output, or the client's error.
pub(crate) fn probe(conn: &MysqlConn, sql: &str) -> Result<String, String> {
    let mut c = conn.command(conn.client());
    c.args(["--connect-timeout=5", "--batch", "--skip-column-names", "-e", sql]);
    crate::engine::run_capture(&mut c, "the mariadb client").map_err(|(cause, _)| cause)
}

/// A single MariaDB server.
pub(crate) fn start_single(site: &mut Site, password: &str) -> Result<Node, ScratchError> {
    let bins = bins()?;
    let node = NodeDir::create(site, "node1")?;
    install(site, &bins, &node)?;
    node.write_init(site, password)?;
    let init = format!("--init-file={}", node.init.display());
    for _ in 0..PORT_ATTEMPTS {
        let port = free_ports(1)?[0];
        node.write_config(site, &node.config(site, port, &[]))?;
        let id = spawn(site, &bins, &node, std::slice::from_ref(&init))?;
        let conn = conn(port, password)?;
        match wait_ready(site, &[id], &node.logs(), STARTUP_LIMIT, || probe(&conn, "SELECT 1").map(|_| true)) {
            Startup::Ready => {
                // The password has done its job in the file.
                let _ = std::fs::remove_file(&node.init);
                return Ok(Node { port, ports: vec![port] });
            }
            Startup::PortInUse => site.kill(id),
            Startup::Failed(cause) => return Err(ScratchError::Start { kind: "mariadb".into(), cause }),
        }
    }
    Err(ScratchError::Start { kind: "mariadb".into(), cause: "the ports chosen kept being taken".into() })
}
