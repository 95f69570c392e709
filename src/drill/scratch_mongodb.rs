//! MongoDB scratch servers: a standalone mongod with authorization on. The
//! account `drtool` (role root) is created through the localhost exception,
//! which lets the first user be created over loopback before any exists.

use super::scratch::{Node, ScratchError};
use super::scratch_proc::{Signals, Site, Startup, find_bin, free_ports, wait_ready};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const STARTUP_LIMIT: Duration = Duration::from_secs(90);
const PORT_ATTEMPTS: usize = 5;

pub(crate) struct Bins {
    mongod: PathBuf,
    shell: PathBuf,
}

pub(crate) fn bins() -> Result<Bins, ScratchError> {
    let mongod = find_bin("mongod").ok_or_else(|| {
        ScratchError::Unavailable(
            "mongod is not installed on this machine, so a mongodb scratch cannot be provisioned \
             (install MongoDB Community Server, package mongodb-org-server, or drill into an external server)"
                .into(),
        )
    })?;
    let shell = find_bin("mongosh").or_else(|| find_bin("mongo")).ok_or_else(|| {
        ScratchError::Unavailable(
            "mongosh is not installed on this machine; a mongodb scratch needs it to create its account".into(),
        )
    })?;
    Ok(Bins { mongod, shell })
}

/// Run a script in the shell against `port`; the script goes through stdin so
/// no password appears in any argv.
fn shell(site: &Site, bins: &Bins, port: u16, script: &str) -> Result<String, String> {
    use std::io::Write;
    let mut c = site.command(&bins.shell);
    c.args(["--quiet", "--norc"]).arg(format!("mongodb://127.0.0.1:{port}/admin"));
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("cannot run {}: {e}", bins.shell.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Small script: the pipe buffer holds it, so no deadlock with stdout.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("wait for the mongo shell: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && !text.contains("MongoServerError") {
        Ok(text)
    } else {
        Err(format!("{}{}", text.trim(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(crate) fn start(site: &mut Site, bins: &Bins, password: &str) -> Result<Node, ScratchError> {
    let dir = site.dir().to_path_buf();
    let db = site.mkdir("db")?;
    let log = dir.join("mongod.log");
    for _ in 0..PORT_ATTEMPTS {
        let port = free_ports(1)?[0];
        let mut cmd = site.command(&bins.mongod);
        cmd.arg("--dbpath").arg(&db).args(["--bind_ip", "127.0.0.1", "--port", &port.to_string(), "--auth"]);
        // Its socket in the scratch directory, not /tmp/mongodb-PORT.sock.
        cmd.arg("--unixSocketPrefix").arg(&dir);
        cmd.args(["--wiredTigerCacheSizeGB", "0.25"]);
        let id = site.spawn(cmd, &log, "mongod", Signals { teardown: libc::SIGTERM, watchdog: libc::SIGKILL })?;
        let ping = || shell(site, bins, port, "db.runCommand({ping: 1}).ok\n").map(|o| o.contains('1'));
        match wait_ready(site, &[id], std::slice::from_ref(&log), STARTUP_LIMIT, ping) {
            Startup::Ready => {
                create_account(site, bins, port, password, &log)?;
                return Ok(Node { port, ports: vec![port] });
            }
            Startup::PortInUse => site.kill(id),
            Startup::Failed(cause) => return Err(ScratchError::Start { kind: "mongodb".into(), cause }),
        }
    }
    Err(ScratchError::Start { kind: "mongodb".into(), cause: "the ports chosen kept being taken".into() })
}

fn create_account(site: &Site, bins: &Bins, port: u16, password: &str, log: &Path) -> Result<(), ScratchError> {
    // The password is hex (random_password), safe inside a JS string.
    let script =
        format!("db.getSiblingDB('admin').createUser({{user: 'drtool', pwd: '{password}', roles: ['root']}}).ok\n");
    shell(site, bins, port, &script).map(|_| ()).map_err(|e| ScratchError::Start {
        kind: "mongodb".into(),
        cause: format!(
            "creating the drtool account failed: {e}{}",
            super::scratch_proc::log_tail(&[log.to_path_buf()], 20)
        ),
    })
}
