//! Repository locks: sealed files under `locks/`.
//!
//! Backups, restores and checks take shared locks; operations that delete data
//! (prune) take an exclusive one. A lock whose holder is gone (same host, pid
//! dead) or that has not been refreshed for `STALE_AFTER` is ignored, so a
//! crashed run never blocks the next cron job forever.

use super::error::{RepoError, Result};
use super::{MetaKind, Repository, json_bytes, random_hex, seal_meta};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Locks are refreshed every `REFRESH`; one older than `STALE_AFTER` is stale.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
pub const STALE_AFTER_MINUTES: i64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    pub operation: String,
}

impl LockInfo {
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        if now - self.refreshed > Duration::minutes(STALE_AFTER_MINUTES) {
            return true;
        }
        self.host == hostname() && !pid_alive(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.operation,
            self.pid,
            self.host,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence/permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A held lock. Call [`LockGuard::release`]; if dropped instead (panic,
/// crash), the lock goes stale and others ignore it.
pub struct LockGuard {
    repo: Arc<Repository>,
    name: String,
    refresher: tokio::task::JoinHandle<()>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl LockGuard {
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        self.repo.store().delete(&self.name).await?;
        Ok(())
    }
}

/// Read every lock; unreadable ones (damaged, other repository key) are skipped.
pub async fn list_locks(repo: &Repository) -> Result<Vec<(String, LockInfo)>> {
    let mut out = Vec::new();
    for obj in repo.store().list("locks/").await? {
        let Ok(plain) = repo.get_meta(MetaKind::Lock, &obj.name).await else {
            continue;
        };
        if let Ok(info) = serde_json::from_slice::<LockInfo>(&plain) {
            out.push((obj.name, info));
        }
    }
    Ok(out)
}

fn conflict(locks: &[(String, LockInfo)], me: Option<&str>, exclusive: bool) -> Option<RepoError> {
    let now = Utc::now();
    locks
        .iter()
        .filter(|(name, l)| Some(name.as_str()) != me && !l.is_stale(now) && (exclusive || l.exclusive))
        .map(|(name, l)| RepoError::Locked { holder: l.describe(), lock: name.clone() })
        .next()
}

pub async fn acquire(repo: &Arc<Repository>, exclusive: bool, operation: &str) -> Result<LockGuard> {
    if let Some(e) = conflict(&list_locks(repo).await?, None, exclusive) {
        return Err(e);
    }
    let now = Utc::now();
    let info = LockInfo {
        exclusive,
        host: hostname(),
        pid: std::process::id(),
        created: now,
        refreshed: now,
        operation: operation.into(),
    };
    let name = format!("locks/{}", random_hex(16)?);
    repo.store().put(&name, seal_meta(repo.keys(), MetaKind::Lock, &json_bytes(&info)?)?).await?;
    // Two runs may have checked at the same instant: look again now that our
    // lock is visible, and back off if we collide.
    if let Some(e) = conflict(&list_locks(repo).await?, Some(&name), exclusive) {
        repo.store().delete(&name).await?;
        return Err(e);
    }
    let refresher = tokio::spawn(refresh_loop(repo.clone(), name.clone(), info));
    Ok(LockGuard { repo: repo.clone(), name, refresher })
}

async fn refresh_loop(repo: Arc<Repository>, name: String, mut info: LockInfo) {
    loop {
        tokio::time::sleep(REFRESH).await;
        info.refreshed = Utc::now();
        let Ok(bytes) = json_bytes(&info).and_then(|j| seal_meta(repo.keys(), MetaKind::Lock, &j)) else {
            continue;
        };
        if let Err(e) = repo.store().put(&name, bytes).await {
            tracing::warn!("could not refresh lock {name}: {}", super::error::chain(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_by_age_and_dead_pid() {
        let now = Utc::now();
        let mut l = LockInfo {
            exclusive: true,
            host: hostname(),
            pid: std::process::id(),
            created: now,
            refreshed: now,
            operation: "t".into(),
        };
        assert!(!l.is_stale(now));
        l.refreshed = now - Duration::minutes(31);
        assert!(l.is_stale(now));
        l.refreshed = now;
        l.pid = 999_999_999;
        assert!(l.is_stale(now));
        l.host = "elsewhere".into();
        assert!(!l.is_stale(now));
    }
}
