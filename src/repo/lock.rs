//! Repository locks: sealed files under `locks/`.
//!
//! Backups, restores, checks and forget take shared locks. Prune takes a
//! *prune* lock: it excludes other prunes but not shared holders, because
//! prune's two-phase protocol (docs/PRUNE.md) waits for every shared holder
//! that could have missed its marks instead of excluding them. An exclusive
//! lock (no user yet) excludes everything. A lock whose holder is gone (same
//! host, pid dead) or that has not been refreshed for `STALE_AFTER_MINUTES` is
//! ignored, so a crashed run never blocks the next cron job forever.
//!
//! A lock object that cannot be read (damaged, sealed with another key, too
//! large) is a live lock of unknown kind, not an absent one: prune waits for
//! it like for any holder. It ages out like others, by the time the store last
//! wrote it, since a live holder rewrites its lock every `REFRESH`.

use super::error::{RepoError, Result, chain};
use super::{MetaKind, Repository, json_bytes, random_hex, seal_meta};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Locks are refreshed every `REFRESH`; one older than `STALE_AFTER` is stale.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
pub const STALE_AFTER_MINUTES: i64 = 30;

/// What a lock excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Reads and appends (backup, restore, check, forget): many at once.
    Shared,
    /// Prune: one at a time; compatible with shared holders.
    Prune,
    /// Excludes every other lock.
    Exclusive,
}

impl LockKind {
    /// Whether a holder of `self` and a holder of `other` may run at once.
    pub fn compatible_with(self, other: LockKind) -> bool {
        matches!(
            (self, other),
            (LockKind::Shared, LockKind::Shared)
                | (LockKind::Shared, LockKind::Prune)
                | (LockKind::Prune, LockKind::Shared)
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    /// A prune lock (see [`LockKind::Prune`]); absent in other locks. Readers
    /// that predate it see a shared lock, which prune is towards backups.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    pub host: String,
    pub pid: u32,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    pub operation: String,
}

impl LockInfo {
    pub fn kind(&self) -> LockKind {
        match (self.exclusive, self.prune) {
            (true, _) => LockKind::Exclusive,
            (false, true) => LockKind::Prune,
            (false, false) => LockKind::Shared,
        }
    }

    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        if now - self.refreshed > Duration::minutes(STALE_AFTER_MINUTES) {
            return true;
        }
        self.host == hostname() && !pid_alive(self.pid)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.operation,
            self.pid,
            self.host,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// Whether `other` is this lock, perhaps refreshed since.
    fn same_holder(&self, other: &LockInfo) -> bool {
        (self.kind(), &self.host, self.pid, self.created, &self.operation)
            == (other.kind(), &other.host, other.pid, other.created, &other.operation)
    }
}

/// What a lock object says, as far as it can be read.
#[derive(Debug, Clone)]
pub enum LockState {
    Readable(LockInfo),
    /// Damaged, sealed with another key, too large: held by someone unknown.
    Unreadable {
        reason: String,
    },
}

/// A lock found under `locks/`.
#[derive(Debug, Clone)]
pub struct ListedLock {
    pub name: String,
    /// When the store last wrote the object, if it says.
    pub modified: Option<DateTime<Utc>>,
    pub state: LockState,
}

impl ListedLock {
    /// A readable lock by its own record; an unreadable one when the store
    /// has not rewritten it for `STALE_AFTER_MINUTES` (a live holder would
    /// have). One the store gives no time for never ages out: remove it by
    /// hand once sure that no run holds it (docs/PRUNE.md).
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        match &self.state {
            LockState::Readable(info) => info.is_stale(now),
            LockState::Unreadable { .. } => {
                self.modified.is_some_and(|m| now - m > Duration::minutes(STALE_AFTER_MINUTES))
            }
        }
    }

    /// Whether a run wanting `kind` must not run beside this lock. An
    /// unreadable lock may be of any kind that a run with our key could not
    /// have written, so only what excludes every holder (an exclusive lock)
    /// is refused; prune waits for it instead (see `live_lock_names`).
    fn excludes(&self, kind: LockKind) -> bool {
        match &self.state {
            LockState::Readable(info) => !kind.compatible_with(info.kind()),
            LockState::Unreadable { .. } => kind == LockKind::Exclusive,
        }
    }

    pub fn describe(&self) -> String {
        match &self.state {
            LockState::Readable(info) => info.describe(),
            LockState::Unreadable { reason } => format!("an unreadable lock ({reason})"),
        }
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
    /// What we stored, to recognise our lock when reading it back.
    info: LockInfo,
    refresher: tokio::task::JoinHandle<()>,
    health: Arc<Health>,
}

/// What the refresher learned about whether others still see our lock.
#[derive(Debug)]
struct Health {
    started: std::time::Instant,
    /// Milliseconds after `started` of the last successful refresh.
    refreshed_ms: std::sync::atomic::AtomicU64,
    /// The lock object disappeared (someone removed it as stale).
    vanished: std::sync::atomic::AtomicBool,
}

/// A lock not refreshed for this long may already look stale elsewhere
/// (`STALE_AFTER_MINUTES`, less a margin for clock differences).
const HELD_FOR_SURE: std::time::Duration = std::time::Duration::from_secs((STALE_AFTER_MINUTES as u64 - 10) * 60);

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl LockGuard {
    /// The lock's object name (`locks/<id>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fail unless others still see this lock: its object must be in the
    /// store and be ours (read back, not remembered), and its refreshes must
    /// not have failed for most of `STALE_AFTER_MINUTES`. A prune ignores a
    /// lock it took for stale, so a backup calls this right before it writes
    /// its index and snapshot, and gives up instead (docs/PRUNE.md).
    pub async fn ensure_held(&self) -> Result<()> {
        let lost = |reason| RepoError::LockLost { lock: self.name.clone(), reason };
        if let Some(reason) = self.health_problem() {
            return Err(lost(reason));
        }
        let reason = match self.repo.get_meta(MetaKind::Lock, &self.name).await {
            Ok(plain) => match serde_json::from_slice::<LockInfo>(&plain) {
                Ok(info) if info.same_holder(&self.info) => return Ok(()),
                Ok(info) => format!("its lock object now names another run, {}", info.describe()),
                Err(e) => format!("its lock object was replaced by something else ({e})"),
            },
            Err(RepoError::Store(e)) if e.is_not_found() => {
                "its lock object is gone (another run may have removed it as stale)".to_string()
            }
            Err(e @ RepoError::Corrupt { .. }) => {
                format!("its lock object was replaced by one it cannot read ({})", chain(&e))
            }
            Err(e) => return Err(e),
        };
        Err(lost(reason))
    }

    /// What the refresher learned: why others may no longer see this lock.
    fn health_problem(&self) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let since_refresh = self
            .health
            .started
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(self.health.refreshed_ms.load(Relaxed)));
        if self.health.vanished.load(Relaxed) {
            Some("its lock was removed by another run that took it for stale".to_string())
        } else if since_refresh > HELD_FOR_SURE {
            Some(format!("its lock could not be refreshed for {} minutes", since_refresh.as_secs() / 60))
        } else {
            None
        }
    }

    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        self.repo.store().delete(&self.name).await?;
        Ok(())
    }
}

/// Read every lock. One that cannot be read (damaged, sealed with another
/// key, larger than any lock) is listed as unreadable, never left out: to
/// prune, an absent lock means nobody to wait for.
pub async fn list_locks(repo: &Repository) -> Result<Vec<ListedLock>> {
    let mut out = Vec::new();
    for obj in repo.store().list("locks/").await? {
        let state = match repo.get_meta(MetaKind::Lock, &obj.name).await {
            Ok(plain) => match serde_json::from_slice::<LockInfo>(&plain) {
                Ok(info) => LockState::Readable(info),
                Err(e) => LockState::Unreadable { reason: format!("not a lock: {e}") },
            },
            // Released since the listing.
            Err(RepoError::Store(e)) if e.is_not_found() => continue,
            Err(e @ RepoError::Corrupt { .. }) => LockState::Unreadable { reason: chain(&e) },
            Err(e) => return Err(e),
        };
        let modified = obj.modified.map(DateTime::<Utc>::from);
        out.push(ListedLock { name: obj.name, modified, state });
    }
    Ok(out)
}

fn conflict(locks: &[ListedLock], me: Option<&str>, kind: LockKind) -> Option<RepoError> {
    let now = Utc::now();
    locks
        .iter()
        .filter(|l| Some(l.name.as_str()) != me && !l.is_stale(now) && l.excludes(kind))
        .map(|l| RepoError::Locked { holder: l.describe(), lock: l.name.clone() })
        .next()
}

/// Longest `operation` stored in a lock, so that every lock stays far below
/// the size a reader accepts.
const MAX_OPERATION: usize = 512;

/// Take a lock or fail at once with [`RepoError::Locked`].
pub async fn acquire(repo: &Arc<Repository>, exclusive: bool, operation: &str) -> Result<LockGuard> {
    acquire_kind(repo, if exclusive { LockKind::Exclusive } else { LockKind::Shared }, operation).await
}

pub async fn acquire_kind(repo: &Arc<Repository>, kind: LockKind, operation: &str) -> Result<LockGuard> {
    if let Some(e) = conflict(&list_locks(repo).await?, None, kind) {
        return Err(e);
    }
    let now = Utc::now();
    let info = LockInfo {
        exclusive: kind == LockKind::Exclusive,
        prune: kind == LockKind::Prune,
        host: hostname(),
        pid: std::process::id(),
        created: now,
        refreshed: now,
        operation: operation[..operation.floor_char_boundary(MAX_OPERATION)].to_string(),
    };
    let name = format!("locks/{}", random_hex(16)?);
    repo.store().put(&name, seal_meta(repo.keys(), MetaKind::Lock, &json_bytes(&info)?)?).await?;
    // Two runs may have checked at the same instant: look again now that our
    // lock is visible, and back off if we collide.
    if let Some(e) = conflict(&list_locks(repo).await?, Some(&name), kind) {
        repo.store().delete(&name).await?;
        return Err(e);
    }
    let health =
        Arc::new(Health { started: std::time::Instant::now(), refreshed_ms: 0.into(), vanished: false.into() });
    let refresher = tokio::spawn(refresh_loop(repo.clone(), name.clone(), info.clone(), health.clone()));
    Ok(LockGuard { repo: repo.clone(), name, info, refresher, health })
}

/// Like [`acquire_kind`], but while the lock is held by others, try again with
/// jittered exponential backoff (0.5 s doubling to 15 s) for up to `max_wait`;
/// then fail with [`RepoError::Locked`]. A holder that crashed stops blocking
/// once its lock is stale. `max_wait` zero means a single attempt.
pub async fn acquire_wait(
    repo: &Arc<Repository>,
    kind: LockKind,
    operation: &str,
    max_wait: std::time::Duration,
) -> Result<LockGuard> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(500);
    let mut told = false;
    loop {
        match acquire_kind(repo, kind, operation).await {
            Err(RepoError::Locked { holder, lock }) => {
                let left = max_wait.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(RepoError::Locked { holder, lock });
                }
                if !told {
                    tracing::warn!("repository is locked by {holder}; waiting up to {}s", max_wait.as_secs());
                    told = true;
                }
                // Full jitter, so runs that collided do not collide again in step.
                let mut r = [0u8; 2];
                let _ = getrandom::fill(&mut r);
                let jittered = pause.mul_f64(0.5 + f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) / 2.0);
                tokio::time::sleep(jittered.min(left)).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(15));
            }
            other => return other,
        }
    }
}

/// Names of the locks that are held now (not stale), except `except`.
/// Unreadable locks count: whoever holds one is waited for.
pub async fn live_lock_names(repo: &Repository, except: Option<&str>) -> Result<Vec<String>> {
    let now = Utc::now();
    let mut names: Vec<String> = list_locks(repo)
        .await?
        .into_iter()
        .filter(|l| Some(l.name.as_str()) != except && !l.is_stale(now))
        .map(|l| l.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Delete locks that are stale (their holder is gone). Returns how many.
/// Safe: a stale lock is ignored by every check anyway; this only tidies.
pub async fn remove_stale(repo: &Repository) -> Result<usize> {
    let now = Utc::now();
    let mut removed = 0;
    for l in list_locks(repo).await? {
        if l.is_stale(now) {
            tracing::info!("removing stale lock {}: {}", l.name, l.describe());
            repo.store().delete(&l.name).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

async fn refresh_loop(repo: Arc<Repository>, name: String, mut info: LockInfo, health: Arc<Health>) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        tokio::time::sleep(REFRESH).await;
        // Gone means someone judged it stale; putting it back would not undo
        // what they did meanwhile, so remember it for `ensure_held`.
        if let Err(e) = repo.store().size(&name).await
            && e.is_not_found()
        {
            health.vanished.store(true, Relaxed);
        }
        info.refreshed = Utc::now();
        let Ok(bytes) = json_bytes(&info).and_then(|j| seal_meta(repo.keys(), MetaKind::Lock, &j)) else {
            continue;
        };
        match repo.store().put(&name, bytes).await {
            Ok(()) => health.refreshed_ms.store(health.started.elapsed().as_millis() as u64, Relaxed),
            Err(e) => tracing::warn!("could not refresh lock {name}: {}", super::error::chain(&e)),
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
            prune: false,
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

    #[tokio::test]
    async fn a_lock_others_may_take_for_stale_is_not_held() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let store: crate::store::DynStore = Arc::new(crate::store::LocalStore::new(dir.path()));
        let kdf = crate::repo::keys::KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 };
        let opts = crate::repo::InitOptions { kdf, ..Default::default() };
        let repo = Arc::new(Repository::init(store, b"pw", opts).await.unwrap());
        let guard = acquire_kind(&repo, LockKind::Prune, "prune").await.unwrap();
        assert!(guard.ensure_held().await.is_ok());
        assert!(matches!(acquire_kind(&repo, LockKind::Prune, "prune").await, Err(RepoError::Locked { .. })));
        let backup = acquire_kind(&repo, LockKind::Shared, "backup").await.unwrap();
        guard.health.vanished.store(true, Relaxed);
        assert!(matches!(guard.ensure_held().await, Err(RepoError::LockLost { .. })));
        guard.health.vanished.store(false, Relaxed);
        // Read back, not remembered: a lock object removed or replaced behind
        // the refresher's back is lost at once.
        let sealed = repo.store().get(guard.name()).await.unwrap();
        repo.store().put(guard.name(), sealed[..sealed.len() - 1].to_vec()).await.unwrap();
        let e = guard.ensure_held().await.unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        repo.store().put(guard.name(), repo.store().get(backup.name()).await.unwrap()).await.unwrap();
        let e = guard.ensure_held().await.unwrap_err();
        assert!(e.to_string().contains("another run"), "{e}");
        repo.store().delete(guard.name()).await.unwrap();
        let e = guard.ensure_held().await.unwrap_err();
        assert!(e.to_string().contains("is gone"), "{e}");
        repo.store().put(guard.name(), sealed).await.unwrap();
        assert!(guard.ensure_held().await.is_ok());
        // Never refreshed since long before others would call it stale (the
        // monotonic clock may be younger than that on a fresh machine).
        if let Some(started) = std::time::Instant::now().checked_sub(HELD_FOR_SURE * 2) {
            let health = Arc::new(Health { started, refreshed_ms: 0.into(), vanished: false.into() });
            let refresher = tokio::spawn(async {});
            let info = guard.info.clone();
            let stale = LockGuard { repo: repo.clone(), name: "locks/x".into(), info, refresher, health };
            assert!(stale.ensure_held().await.is_err());
        }
        let live = live_lock_names(&repo, Some(guard.name())).await.unwrap();
        assert_eq!(live, vec![backup.name().to_string()]);
        backup.release().await.unwrap();
        guard.release().await.unwrap();
        assert!(list_locks(&repo).await.unwrap().is_empty());
    }

    #[test]
    fn prune_locks_exclude_each_other_but_not_backups() {
        use LockKind::*;
        assert!(Shared.compatible_with(Shared));
        assert!(Shared.compatible_with(Prune) && Prune.compatible_with(Shared));
        assert!(!Prune.compatible_with(Prune));
        for k in [Shared, Prune, Exclusive] {
            assert!(!Exclusive.compatible_with(k) && !k.compatible_with(Exclusive));
        }
        let now = Utc::now();
        let info = |exclusive, prune| LockInfo {
            exclusive,
            prune,
            host: "elsewhere".into(),
            pid: 1,
            created: now,
            refreshed: now,
            operation: "t".into(),
        };
        let listed = |name: &str, state| ListedLock { name: name.into(), modified: None, state };
        let held = vec![listed("locks/a", LockState::Readable(info(false, true)))];
        assert!(conflict(&held, None, Shared).is_none());
        assert!(matches!(conflict(&held, None, Prune), Some(RepoError::Locked { .. })));
        assert!(conflict(&held, Some("locks/a"), Prune).is_none());
        // Old readers see a prune lock as shared: it round-trips with `prune` only when set.
        let j = serde_json::to_string(&info(false, false)).unwrap();
        assert!(!j.contains("prune"));
        let back: LockInfo = serde_json::from_str(&serde_json::to_string(&info(false, true)).unwrap()).unwrap();
        assert_eq!(back.kind(), Prune);
        // An unreadable lock is live until the store has not rewritten it for
        // the stale age; only an exclusive lock is refused beside it.
        let mut unknown = listed("locks/u", LockState::Unreadable { reason: "damaged".into() });
        assert!(!unknown.is_stale(now));
        let u = vec![unknown.clone()];
        assert!(conflict(&u, None, Shared).is_none() && conflict(&u, None, Prune).is_none());
        assert!(matches!(conflict(&u, None, Exclusive), Some(RepoError::Locked { .. })));
        unknown.modified = Some(now - Duration::minutes(STALE_AFTER_MINUTES - 1));
        assert!(!unknown.is_stale(now));
        unknown.modified = Some(now - Duration::minutes(STALE_AFTER_MINUTES + 1));
        assert!(unknown.is_stale(now));
    }
}
