//! Replaying binlog files into a server: `mariadb-binlog ... | mariadb`,
//! single-threaded, with the start and stop positions a point-in-time plan
//! chose, and the database filtered (and renamed) as asked.

use super::db::RestoreError;
use crate::engine::mysql::MysqlConn;
use crate::engine::{DbUrl, EngineError, Password, find_tool};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, Clone)]
pub struct Replay {
    /// Local copies of the binlog files, in order.
    pub files: Vec<PathBuf>,
    /// Applies to the first file: events starting here or later.
    pub start: u64,
    /// Applies to the last file: events starting before this.
    pub stop: u64,
    /// Only this database's events (as named in the log) ...
    pub database: String,
    /// ... written into this one.
    pub into: String,
    /// Keep the replayed transactions out of the target's own binlog (their
    /// GTIDs are already in its history, e.g. a copy on the same server).
    pub skip_log_bin: bool,
}

/// Run the replay; the tools' stderr is in the error when either fails.
pub fn replay(url: &DbUrl, password: &Password, r: &Replay) -> Result<(), RestoreError> {
    let conn = MysqlConn::new(url, password)?;
    let binlog_tool = find_tool(
        url.bin_dir(),
        &["mariadb-binlog", "mysqlbinlog"],
        "install the MariaDB client tools (Debian: apt install mariadb-client)",
    )?;
    let mut reader = Command::new(&binlog_tool);
    reader
        .arg(format!("--start-position={}", r.start))
        .arg(format!("--stop-position={}", r.stop))
        .arg(format!("--database={}", r.database));
    if r.database != r.into {
        reader.arg(format!("--rewrite-db={}->{}", r.database, r.into));
    }
    reader.arg("--").args(&r.files).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut client = conn.command(conn.client());
    client.args(["--binary-mode", "--batch"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    for c in [&mut reader, &mut client] {
        crate::child::scrub_tool(c);
    }
    let spawn = |c: &mut Command, tool: &str| {
        c.spawn().map_err(|source| RestoreError::Spawn { tool: tool.to_string(), source })
    };
    let mut applier = spawn(&mut client, "mariadb")?;
    let mut source = match spawn(&mut reader, "mariadb-binlog") {
        Ok(s) => s,
        Err(e) => {
            let _ = applier.kill();
            let _ = applier.wait();
            return Err(e);
        }
    };
    let (mut out, mut input) = (source.stdout.take(), applier.stdin.take());
    let copied = (|| -> std::io::Result<u64> {
        let (Some(out), Some(input)) = (out.as_mut(), input.as_mut()) else { return Ok(0) };
        if r.skip_log_bin {
            input.write_all(b"SET SESSION sql_log_bin = 0;\n")?;
        }
        std::io::copy(out, input)
    })();
    drop(input);
    let source_out = source.wait_with_output().map_err(|e| EngineError::io("waiting for mariadb-binlog", e))?;
    let applied = applier.wait_with_output().map_err(|e| EngineError::io("waiting for mariadb", e))?;
    let failed = |tool: &str, o: &std::process::Output| RestoreError::Failed {
        tool: tool.to_string(),
        status: o.status.to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    if !applied.status.success() {
        return Err(failed("mariadb (applying the binlog)", &applied));
    }
    if !source_out.status.success() {
        return Err(failed("mariadb-binlog", &source_out));
    }
    copied.map_err(|e| EngineError::io("feeding the binlog to mariadb", e))?;
    Ok(())
}

/// Whether the target's binlog already holds GTIDs past the base's position
/// in the same domain: then replaying the original GTIDs would put them out
/// of order in its history (a copy restored on the source server itself).
pub fn gtids_conflict(url: &DbUrl, password: &Password, base_gtid: Option<&str>) -> Result<bool, RestoreError> {
    let conn = MysqlConn::new(url, password)?;
    let rows = conn.query(None, "SELECT @@gtid_binlog_pos")?;
    let target = rows.first().and_then(|r| r.first()).cloned().flatten().unwrap_or_default();
    let parse = |s: &str| -> Vec<(u32, u64)> {
        s.split(',')
            .filter_map(|g| {
                let mut it = g.trim().split('-');
                let d = it.next()?.parse().ok()?;
                let _server: u32 = it.next()?.parse().ok()?;
                Some((d, it.next()?.parse().ok()?))
            })
            .collect()
    };
    let base = parse(base_gtid.unwrap_or_default());
    Ok(parse(&target).iter().any(|(d, seq)| base.iter().any(|(bd, bseq)| bd == d && seq > bseq)))
}
