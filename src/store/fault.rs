//! A fault-injecting store wrapper for tests: fails chosen or random calls with
//! transient errors, delays calls, or returns truncated bodies. It is a test
//! double for faults only; the data underneath is always a real store.

use super::{BackendErrorKind, ObjectInfo, Store, StoreError};
use async_trait::async_trait;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// 1-based call numbers that fail with a transient error.
    pub fail_calls: Vec<u64>,
    /// Probability (0..1) that any call fails transiently.
    pub fail_rate: f64,
    /// Seed for the random failures, so a run is reproducible.
    pub seed: u64,
    /// Added before every call.
    pub delay: Duration,
    /// Probability (0..1) that a read returns a truncated body.
    pub truncate_rate: f64,
}

#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    plan: FaultPlan,
    calls: AtomicU64,
    rng: Mutex<u64>,
    injected: AtomicU64,
}

impl<S: Store> FaultStore<S> {
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        let seed = plan.seed | 1;
        Self { inner, plan, calls: AtomicU64::new(0), rng: Mutex::new(seed), injected: AtomicU64::new(0) }
    }

    /// Calls made so far (each retry is a call).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn random(&self) -> f64 {
        let mut g = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        // xorshift64*: deterministic per seed, good enough for fault dice.
        *g ^= *g >> 12;
        *g ^= *g << 25;
        *g ^= *g >> 27;
        (g.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn before(&self, name: &str) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.plan.delay.is_zero() {
            tokio::time::sleep(self.plan.delay).await;
        }
        if self.plan.fail_calls.contains(&n) || (self.plan.fail_rate > 0.0 && self.random() < self.plan.fail_rate) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Backend {
                kind: BackendErrorKind::Transient,
                message: format!("{name}: injected transient fault (call {n})"),
            });
        }
        Ok(())
    }

    fn maybe_truncate(&self, mut data: Vec<u8>) -> Vec<u8> {
        if self.plan.truncate_rate > 0.0 && !data.is_empty() && self.random() < self.plan.truncate_rate {
            self.injected.fetch_add(1, Ordering::SeqCst);
            data.truncate(data.len() / 2);
        }
        data
    }
}

#[async_trait]
impl<S: Store> Store for FaultStore<S> {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.before(name).await?;
        self.inner.put(name, data).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.before(name).await?;
        let data = self.inner.get(name).await?;
        let expected = data.len() as u64;
        let data = self.maybe_truncate(data);
        // A remote store detects a short body from Content-Length; so do we.
        if data.len() as u64 != expected {
            return Err(StoreError::ShortRead { name: name.into(), expected, got: data.len() as u64 });
        }
        Ok(data)
    }
    async fn get_limited(&self, name: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        self.before(name).await?;
        let data = self.inner.get_limited(name, limit).await?;
        let expected = data.len() as u64;
        let data = self.maybe_truncate(data);
        if data.len() as u64 != expected {
            return Err(StoreError::ShortRead { name: name.into(), expected, got: data.len() as u64 });
        }
        Ok(data)
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.before(name).await?;
        let data = self.maybe_truncate(self.inner.get_range(name, offset, len).await?);
        if data.len() as u64 != len {
            return Err(StoreError::ShortRead { name: name.into(), expected: len, got: data.len() as u64 });
        }
        Ok(data)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.before(prefix).await?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.before(name).await?;
        self.inner.delete(name).await
    }
    async fn size(&self, name: &str) -> Result<u64, StoreError> {
        self.before(name).await?;
        self.inner.size(name).await
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn upload_concurrency(&self) -> usize {
        self.inner.upload_concurrency()
    }
    fn read_concurrency(&self) -> usize {
        self.inner.read_concurrency()
    }
}
