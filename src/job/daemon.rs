//! `drtool daemon`: every policy on its schedule, in one long-running process.
//!
//! Each due policy runs as a child `drtool run` process, so a crash in one run
//! cannot take the scheduler down, and the per-policy run lock keeps a policy
//! from overlapping itself. A run still going when its next time comes is
//! skipped (logged), not queued. SIGTERM/SIGINT stop scheduling, are passed on
//! to running children, and the daemon exits once they have finished.

use super::shutdown_signal;
use crate::policy::file::Policy;
use crate::policy::schedule::CronSchedule;
use chrono::{DateTime, Local};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Re-read the clock at least this often (clock changes, suspend, DST).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// A scheduled job: a policy's backup run, or its restore drill.
pub struct Job {
    /// e.g. "shop" or "drill shop": names the job in logs; one of each runs at a time.
    pub name: String,
    /// `run` or `drill`.
    pub command: &'static str,
    pub policy: String,
    pub schedule: CronSchedule,
}

/// The backup runs and drills of `policies` that have schedules.
pub fn jobs(policies: &[Policy]) -> Vec<Job> {
    let mut out = Vec::new();
    for p in policies {
        if let Some(s) = &p.schedule {
            out.push(Job { name: p.name.clone(), command: "run", policy: p.name.clone(), schedule: s.clone() });
        }
        if let Some(s) = p.drill.as_ref().and_then(|d| d.schedule.as_deref()).and_then(|s| CronSchedule::parse(s).ok())
        {
            out.push(Job { name: format!("drill {}", p.name), command: "drill", policy: p.name.clone(), schedule: s });
        }
    }
    out
}

pub async fn run(policies: &[Policy], dir: &Path, exe: &str) -> std::io::Result<()> {
    let jobs = jobs(policies);
    let now = Local::now();
    let mut next: Vec<Option<DateTime<Local>>> = jobs.iter().map(|j| j.schedule.next_after(&now)).collect();
    for (j, t) in jobs.iter().zip(&next) {
        tracing::info!(job = %j.name, next = ?t.map(|t| t.to_rfc3339()), "scheduled");
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
                    tracing::info!(job = %name, ?status, "ended");
                }
                return Ok(());
            }
        }
        let now = Local::now();
        for (i, j) in jobs.iter().enumerate() {
            let Some(due) = next[i] else { continue };
            if due > now {
                continue;
            }
            next[i] = j.schedule.next_after(&now);
            if running.contains_key(&j.name) {
                tracing::warn!(job = %j.name, "previous run still going: this run is skipped");
                continue;
            }
            let child = tokio::process::Command::new(exe)
                .arg("--policies")
                .arg(dir)
                .arg(j.command)
                .arg(&j.policy)
                .stdin(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(c) => {
                    tracing::info!(job = %j.name, "started");
                    running.insert(j.name.clone(), c);
                }
                Err(e) => tracing::error!(job = %j.name, "cannot start: {e}"),
            }
        }
    }
}

/// Forget children that have exited, logging how.
fn reap(running: &mut HashMap<String, tokio::process::Child>) {
    running.retain(|name, child| match child.try_wait() {
        Ok(Some(status)) => {
            if status.success() {
                tracing::info!(job = %name, "succeeded");
            } else {
                tracing::error!(job = %name, %status, "failed");
            }
            false
        }
        Ok(None) => true,
        Err(e) => {
            tracing::error!(job = %name, "cannot wait: {e}");
            false
        }
    });
}
