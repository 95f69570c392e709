//! `drtool daemon`: every policy on its schedule, in one long-running process.
//!
//! Each due policy runs as a child `drtool run` process, so a crash in one run
//! cannot take the scheduler down, and the per-policy run lock keeps a policy
//! from overlapping itself. A run still going when its next time comes is
//! skipped (logged), not queued. SIGTERM/SIGINT stop scheduling, are passed on
//! to running children, and the daemon exits once they have finished.

use super::shutdown_signal;
use crate::policy::file::Policy;
use chrono::{DateTime, Local};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Re-read the clock at least this often (clock changes, suspend, DST).
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub async fn run(policies: &[Policy], dir: &Path, exe: &str) -> std::io::Result<()> {
    let now = Local::now();
    let mut next: Vec<Option<DateTime<Local>>> =
        policies.iter().map(|p| p.schedule.as_ref().and_then(|s| s.next_after(&now))).collect();
    for (p, t) in policies.iter().zip(&next) {
        tracing::info!(policy = %p.name, next = ?t.map(|t| t.to_rfc3339()), "scheduled");
    }
    let mut running: HashMap<String, tokio::process::Child> = HashMap::new();
    loop {
        reap(&mut running);
        let now = Local::now();
        let earliest = next.iter().flatten().min().copied();
        let wait = earliest.map_or(MAX_SLEEP, |t| (t - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            sig = shutdown_signal() => {
                tracing::info!("{sig}: stopping; waiting for {} running policies", running.len());
                for child in running.values() {
                    if let Some(pid) = child.id() {
                        // SAFETY: signalling our own child process.
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    }
                }
                for (name, mut child) in running.drain() {
                    let status = child.wait().await;
                    tracing::info!(policy = %name, ?status, "run ended");
                }
                return Ok(());
            }
        }
        let now = Local::now();
        for (i, p) in policies.iter().enumerate() {
            let Some(due) = next[i] else { continue };
            if due > now {
                continue;
            }
            next[i] = p.schedule.as_ref().and_then(|s| s.next_after(&now));
            if running.contains_key(&p.name) {
                tracing::warn!(policy = %p.name, "previous run still going: this run is skipped");
                continue;
            }
            let child = tokio::process::Command::new(exe)
                .arg("--policies")
                .arg(dir)
                .arg("run")
                .arg(&p.name)
                .stdin(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(c) => {
                    tracing::info!(policy = %p.name, "run started");
                    running.insert(p.name.clone(), c);
                }
                Err(e) => tracing::error!(policy = %p.name, "cannot start run: {e}"),
            }
        }
    }
}

/// Forget children that have exited, logging how.
fn reap(running: &mut HashMap<String, tokio::process::Child>) {
    running.retain(|name, child| match child.try_wait() {
        Ok(Some(status)) => {
            if status.success() {
                tracing::info!(policy = %name, "run succeeded");
            } else {
                tracing::error!(policy = %name, %status, "run failed");
            }
            false
        }
        Ok(None) => true,
        Err(e) => {
            tracing::error!(policy = %name, "cannot wait for run: {e}");
            false
        }
    });
}
