//! Errors of the repository layer; callers branch on the variants.

use crate::pipeline::SealError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no repository at {location} (run `drtool init` first)")]
    NoRepository { location: String },
    #[error("a repository already exists at {location}")]
    AlreadyExists { location: String },
    #[error("wrong password: no key slot of the repository at {location} opens with it")]
    WrongPassword { location: String },
    #[error("repository is locked by {holder} (lock {lock}); if that run crashed, the lock expires when stale")]
    Locked { holder: String, lock: String },
    /// Our own lock was removed or replaced: a prune may have taken it for
    /// stale and deleted what this run wrote, so it must not commit.
    #[error(
        "lost lock {lock}: {reason}; stopping without writing a snapshot, since a prune may have deleted data this run relies on"
    )]
    LockLost { lock: String, reason: String },
    #[error("repository format version {found} is not supported by this drtool (supports {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {0} is ambiguous; give more characters")]
    AmbiguousSnapshot(String),
    #[error("{object} is damaged: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("chunk {chunk} is not in the index (repository incomplete or damaged)")]
    MissingChunk { chunk: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("key slot {0} not found")]
    KeyNotFound(String),
    #[error("refusing to remove the last key slot (the repository would become unreadable)")]
    LastKey,
    #[error("refusing to remove the key slot in use; open the repository with another password to remove it")]
    CurrentKey,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("backup pipeline stopped: {0}")]
    Pipeline(String),
}

impl RepoError {
    pub fn corrupt(object: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        RepoError::Corrupt { object: object.into(), reason: reason.to_string() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RepoError::Io { context: context.into(), source }
    }

    pub fn seal(object: impl Into<String>, e: SealError) -> Self {
        RepoError::corrupt(object, e)
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// An error with its causes, `outer: inner: innermost`, for reports and logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
