//! Bytes by name. Stores know nothing of the repository format.
//!
//! Names are `/`-separated relative paths such as `data/ab/ab12...` or
//! `snapshots/<id>`; a store maps them onto its own namespace.

pub mod fault;
pub mod local;
pub mod retry;
pub mod s3;

use async_trait::async_trait;
use std::sync::Arc;

pub use local::LocalStore;
pub use retry::{RetryPolicy, RetryStore};

/// What kind of failure a remote store reported; decides retrying and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Throttling, 5xx, timeouts, resets: worth retrying.
    Transient,
    /// Could not connect at all (refused, DNS, TLS): retried a few times.
    Unreachable,
    /// Credentials rejected or permission missing (403, bad signature).
    AccessDenied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// Anything else the store refused; not retried.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{name}: not found")]
    NotFound { name: String },
    #[error("{name}")]
    Io {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}: read {got} bytes, expected {expected}")]
    ShortRead { name: String, expected: u64, got: u64 },
    /// Larger than the reader allows for its kind; the body was not read whole.
    #[error("{name}: larger than the {limit} bytes allowed{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    TooLarge { name: String, size: Option<u64>, limit: u64 },
    #[error("invalid object name {0:?}")]
    InvalidName(String),
    #[error("{message}")]
    Backend { kind: BackendErrorKind, message: String },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Worth trying again after a pause.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Backend { kind, .. } => {
                matches!(kind, BackendErrorKind::Transient | BackendErrorKind::Unreachable)
            }
            // A short body is a dropped connection, not a short object, on remote stores.
            StoreError::ShortRead { .. } => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            StoreError::Backend { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full name, including the listed prefix (e.g. `data/ab/ab12...`).
    pub name: String,
    pub size: u64,
    /// When the object was last written, where the store says (local
    /// directories and S3 do); lets a reader age out objects it cannot open.
    pub modified: Option<std::time::SystemTime>,
}

/// A flat namespace of immutable objects.
///
/// Semantics every implementation must provide:
/// - `put` is atomic and durable: once it returns `Ok`, the whole object is
///   stored and survives a crash; a reader never sees a partial object. A put
///   over an existing name replaces it whole (the repository only does this
///   with identical content, so it does not rely on create-if-absent).
/// - `get`/`get_range` return exactly the requested bytes or an error;
///   a short object is `ShortRead`, never silently truncated data.
/// - `list(prefix)` returns every complete object whose name starts with
///   `prefix` (in-progress uploads and temp files are never listed), in no
///   particular order.
/// - `get_limited` is `get` for an object that must not exceed `limit`
///   bytes: a larger one is `TooLarge`, found before the body is read where
///   the store tells the size up front, and while reading otherwise, so a
///   planted huge object never has to fit in memory.
/// - `delete` is idempotent: deleting a missing object is `Ok`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError>;
    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError>;
    /// Fallback for stores without a cheaper way: ask the size first. The
    /// object may be replaced between the two calls, so the length is checked
    /// again; an implementation that streams should stop at `limit` instead.
    async fn get_limited(&self, name: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let size = self.size(name).await?;
        if size > limit {
            return Err(StoreError::TooLarge { name: name.to_string(), size: Some(size), limit });
        }
        let data = self.get(name).await?;
        if data.len() as u64 > limit {
            return Err(StoreError::TooLarge { name: name.to_string(), size: Some(data.len() as u64), limit });
        }
        Ok(data)
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// Size of an object, or `NotFound`.
    async fn size(&self, name: &str) -> Result<u64, StoreError>;
    /// Human-readable location for messages (never contains credentials).
    fn location(&self) -> String;
    /// How many pack uploads to keep in flight: a local disk gains nothing from
    /// more than two, a remote store hides latency with more.
    fn upload_concurrency(&self) -> usize {
        2
    }
    /// How many range reads a bulk reader (tree restore) keeps in flight: a
    /// remote store hides its per-request latency only with many at once.
    fn read_concurrency(&self) -> usize {
        4
    }
}

pub type DynStore = Arc<dyn Store>;

/// A shared store is a store, so wrappers (retry, faults) compose over `DynStore`.
#[async_trait]
impl<T: Store + ?Sized> Store for Arc<T> {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        (**self).put(name, data).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        (**self).get(name).await
    }
    async fn get_limited(&self, name: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        (**self).get_limited(name, limit).await
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        (**self).get_range(name, offset, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        (**self).list(prefix).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        (**self).delete(name).await
    }
    async fn size(&self, name: &str) -> Result<u64, StoreError> {
        (**self).size(name).await
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn upload_concurrency(&self) -> usize {
        (**self).upload_concurrency()
    }
    fn read_concurrency(&self) -> usize {
        (**self).read_concurrency()
    }
}

/// Reject names that could escape the store's root or are not plain paths.
pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.split('/').any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with(".tmp"))
        || name.contains('\0');
    if bad { Err(StoreError::InvalidName(name.to_string())) } else { Ok(()) }
}

/// A repository address that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turn a repository address into a store: a local path, `file:///path`, or
/// `s3://bucket/prefix?options`. S3 stores are probed here, so bad
/// credentials, a missing bucket or an unreachable endpoint fail at once.
pub async fn open_address(addr: &str) -> Result<DynStore, AddressError> {
    if addr.starts_with("s3://") {
        let opts = s3::S3Options::from_url(addr).map_err(AddressError::Invalid)?;
        let s3 = s3::S3Store::connect(opts).await?;
        return Ok(std::sync::Arc::new(RetryStore::new(s3, RetryPolicy::default())));
    }
    if let Some(path) = addr.strip_prefix("file://") {
        return Ok(std::sync::Arc::new(LocalStore::new(path)));
    }
    if addr.contains("://") {
        return Err(AddressError::Invalid(format!(
            "unsupported repository address {addr:?} (use a local path, file:///path or s3://bucket/prefix)"
        )));
    }
    Ok(std::sync::Arc::new(LocalStore::new(addr)))
}
