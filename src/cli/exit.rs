//! Exit codes (documented in docs/EXIT_CODES.md and the README).

use crate::engine::EngineError;
use crate::job::JobError;
use crate::repo::RepoError;
use crate::source::db::DumpError;
use crate::source::snapshot::SnapshotError;
use crate::store::{BackendErrorKind, StoreError};
use crate::target::db::RestoreError;

pub fn store_code(e: &StoreError) -> u8 {
    match e.backend_kind() {
        Some(BackendErrorKind::Unreachable | BackendErrorKind::Transient) => STORE_UNREACHABLE,
        Some(BackendErrorKind::AccessDenied) => STORE_ACCESS_DENIED,
        Some(BackendErrorKind::NoSuchBucket) => STORE_NO_BUCKET,
        _ => ERROR,
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::new(store_code(&e), e)
    }
}

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const PARTIAL: u8 = 3;
pub const DAMAGED: u8 = 4;
pub const SOURCE_FAILED: u8 = 5;
pub const REFUSED: u8 = 6;
pub const TARGET_FAILED: u8 = 7;
pub const DRILL_FAILED: u8 = 8;
pub const NO_REPOSITORY: u8 = 10;
pub const LOCKED: u8 = 11;
pub const WRONG_PASSWORD: u8 = 12;
pub const NOT_FOUND: u8 = 13;
pub const STORE_UNREACHABLE: u8 = 14;
pub const STORE_ACCESS_DENIED: u8 = 15;
pub const STORE_NO_BUCKET: u8 = 16;
pub const INTERRUPTED: u8 = 130;

/// An error that carries its exit code to `main`.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Self { code, error: error.into() }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Self { code: USAGE, error: anyhow::anyhow!(msg.into()) }
    }
}

pub fn repo_code(e: &RepoError) -> u8 {
    match e {
        RepoError::NoRepository { .. } => NO_REPOSITORY,
        RepoError::Locked { .. } | RepoError::LockLost { .. } => LOCKED,
        RepoError::WrongPassword { .. } => WRONG_PASSWORD,
        RepoError::SnapshotNotFound(_) | RepoError::AmbiguousSnapshot(_) | RepoError::KeyNotFound(_) => NOT_FOUND,
        RepoError::Corrupt { .. } | RepoError::MissingChunk { .. } => DAMAGED,
        RepoError::Store(s) => store_code(s),
        _ => ERROR,
    }
}

impl From<RepoError> for Failure {
    fn from(e: RepoError) -> Self {
        Failure::new(repo_code(&e), e)
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        let code = match &e {
            JobError::Repo(r) => repo_code(r),
            JobError::Source(_) => SOURCE_FAILED,
            JobError::Target(_) => ERROR,
            JobError::Interrupted(_) | JobError::RestoreInterrupted(_) | JobError::Stopped { .. } => INTERRUPTED,
            JobError::Refused(_) => REFUSED,
            JobError::Restore(RestoreError::Engine(EngineError::Usage(_))) => USAGE,
            JobError::Restore(_) => TARGET_FAILED,
            JobError::Usage(_) => USAGE,
            JobError::Dump(d) => dump_code(d),
            JobError::Snapshot(SnapshotError::Usage(_)) => USAGE,
            JobError::Snapshot(SnapshotError::Cleanup { .. }) | JobError::SnapshotLeft { .. } => ERROR,
            JobError::Snapshot(_) => SOURCE_FAILED,
        };
        Failure::new(code, e)
    }
}

pub fn dump_code(e: &DumpError) -> u8 {
    match e {
        DumpError::Engine(EngineError::Usage(_)) => USAGE,
        _ => SOURCE_FAILED,
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(ERROR, e)
    }
}
