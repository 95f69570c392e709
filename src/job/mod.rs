//! One run of an operation: source -> repository -> report, or repository -> target.

pub mod backup;
pub mod daemon;
pub mod dbbackup;
pub mod dbrestore;
pub mod forget;
mod notify;
mod paths;
pub mod policyrun;
pub mod restore;

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
    /// The restore would overwrite data, or was not confirmed.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("{0}")]
    Usage(String),
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        // Without signal handlers the default action (terminate) still applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
