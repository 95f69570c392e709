//! PostgreSQL scratch servers: initdb and postgres of the newest version under
//! /usr/lib/postgresql (Debian's layout) or on PATH, run as the `postgres`
//! account when drtool is root (the server refuses root). The superuser
//! `postgres` has a random password (scram-sha-256, also over the socket).

use super::scratch::{Node, ScratchError};
use super::scratch_proc::{Signals, Site, Startup, find_bin, free_ports, wait_ready};
use crate::engine::postgres::PgConn;
use crate::engine::{DbUrl, Password};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const USER: &str = "postgres";
const STARTUP_LIMIT: Duration = Duration::from_secs(90);
const INITDB_LIMIT: Duration = Duration::from_secs(180);
const PORT_ATTEMPTS: usize = 5;

/// Throw-away clusters: crash safety only costs time. Room for restoring
/// large dumps without a checkpoint storm.
const SETTINGS: &[&str] =
    &["listen_addresses=127.0.0.1", "fsync=off", "full_page_writes=off", "synchronous_commit=off", "max_wal_size=2GB"];

/// The bin directory holding initdb and postgres, or `Unavailable`.
pub(crate) fn bin_dir() -> Result<PathBuf, ScratchError> {
    let complete = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten() {
        // Numerically: "10" is newer than "9.6".
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(version) = name.split('.').map(str::parse).collect::<Result<Vec<u32>, _>>() else { continue };
        let bin = e.path().join("bin");
        if complete(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    let from_path = || find_bin("initdb").and_then(|p| p.parent().map(Path::to_path_buf)).filter(|d| complete(d));
    let bin = best.map(|(_, b)| b).or_else(from_path).ok_or_else(|| {
        ScratchError::Unavailable(
            "PostgreSQL (initdb and postgres) is not installed on this machine \
             (Debian packages postgresql and postgresql-contrib; see scripts/setup.sh)"
                .into(),
        )
    })?;
    if find_bin("psql").is_none() && !bin.join("psql").is_file() {
        return Err(ScratchError::Unavailable(
            "psql is not installed on this machine (Debian package postgresql-client; see scripts/setup.sh)".into(),
        ));
    }
    Ok(bin)
}

/// C.UTF-8 where the system has it (Debian does), else C: UTF-8 without any
/// language's collation rules, like the databases a drill compares against.
fn locale() -> &'static str {
    let listed = crate::child::minimal(&mut Command::new("locale")).arg("-a").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| matches!(l.to_ascii_lowercase().as_str(), "c.utf8" | "c.utf-8"))
    });
    if listed { "C.UTF-8" } else { "C" }
}

pub(crate) fn start(site: &mut Site, bin: &Path, password: &str) -> Result<Node, ScratchError> {
    let dir = site.dir().to_path_buf();
    let data = site.mkdir("data")?;
    let pwfile = dir.join("pwfile");
    site.write_private(&pwfile, &format!("{password}\n"))?;
    let mut initdb = site.command(&bin.join("initdb"));
    initdb.arg("-D").arg(&data).arg(format!("--pwfile={}", pwfile.display()));
    initdb.args(["--auth=scram-sha-256", "-U", USER, "--encoding=UTF8", "--no-sync"]);
    initdb.arg(format!("--locale={}", locale()));
    let initialised = site.run(initdb, &dir.join("initdb.log"), "initdb", INITDB_LIMIT);
    let _ = std::fs::remove_file(&pwfile);
    initialised?;

    let log = dir.join("postgres.log");
    for _ in 0..PORT_ATTEMPTS {
        let port = free_ports(1)?[0];
        let mut cmd = site.command(&bin.join("postgres"));
        // The socket lives in the scratch directory, away from /run/postgresql.
        cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string()).arg("-k").arg(&dir);
        for s in SETTINGS {
            cmd.args(["-c", s]);
        }
        // Teardown: fast shutdown (SIGINT). Watchdog: immediate shutdown
        // (SIGQUIT), which still takes the backends and shared memory down.
        let signals = Signals { teardown: libc::SIGINT, watchdog: libc::SIGQUIT };
        let id = site.spawn(cmd, &log, "postgres", signals)?;
        let conn = conn(port, password)?;
        let probe = || conn.query("postgres", "SELECT 1").map(|_| true).map_err(|e| e.to_string());
        match wait_ready(site, &[id], std::slice::from_ref(&log), STARTUP_LIMIT, probe) {
            Startup::Ready => return Ok(Node { port, ports: vec![port] }),
            Startup::PortInUse => site.kill(id),
            Startup::Failed(cause) => return Err(ScratchError::Start { kind: "postgres".into(), cause }),
        }
    }
    Err(ScratchError::Start { kind: "postgres".into(), cause: "the ports chosen kept being taken".into() })
}

fn conn(port: u16, password: &str) -> Result<PgConn, ScratchError> {
    let engine = |source| ScratchError::Engine { kind: "postgres".into(), source };
    let url = DbUrl::parse(&format!("postgres://{USER}@127.0.0.1:{port}/")).map_err(engine)?;
    PgConn::new(&url, &Password::new(password)).map_err(engine)
}
