//! One run of an operation: source -> repository -> report, or repository -> target.

pub mod backup;
pub mod binlog;
pub mod daemon;
pub mod dbbackup;
pub mod dbrestore;
pub mod devrestore;
pub mod forget;
pub mod include;
pub mod interrupt;
mod notify;
mod paths;
pub mod pgbase;
pub mod pitr;
pub mod pitr_mysql;
pub mod policyrun;
pub mod restore;
pub mod restore_batch;
mod volume;
pub mod wal;
pub mod walprune;

use crate::repo::RepoError;
use crate::source::SourceError;
use crate::source::db::DumpError;
use crate::target::db::RestoreError;
use crate::target::tree::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error("interrupted by {0}; no snapshot was written")]
    Interrupted(&'static str),
    #[error("interrupted by {0}; the restore stopped part-way")]
    RestoreInterrupted(&'static str),
    /// A signal stopped a step after the backup's own watch (hooks, retention,
    /// or right after the commit); `phase` says where and what was kept.
    #[error("interrupted by {signal} {phase}")]
    Stopped { signal: &'static str, phase: String },
    /// The restore would overwrite data, or was not confirmed.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("{0}")]
    Usage(String),
    /// Taking, reading or checking a file-system snapshot failed; no snapshot was written.
    #[error(transparent)]
    Snapshot(#[from] crate::source::snapshot::SnapshotError),
    /// The backup was saved, but the file-system snapshot it was read from is still there.
    #[error("backup snapshot {saved} was saved, but the file-system snapshot it was read from is left over")]
    SnapshotLeft {
        saved: String,
        #[source]
        source: crate::source::snapshot::SnapshotError,
    },
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM): at once
/// if it already was, since the listener started (see [`interrupt`]).
pub async fn shutdown_signal() -> &'static str {
    interrupt::wait_since(interrupt::Mark::START).await
}
