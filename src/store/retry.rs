//! Retries with exponential backoff and full jitter for transient store errors.
//!
//! Only errors that [`StoreError::is_transient`] calls transient are retried;
//! permanent ones (access denied, missing bucket) fail at once, so a wrong
//! credential never causes a retry storm. Every operation of the `Store`
//! trait is idempotent, which is what makes retrying safe.

use super::{ObjectInfo, Store, StoreError};
use async_trait::async_trait;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 retries: waits of up to 0.5, 1, 2, 4, 8 s (about 15 s in all at worst).
    fn default() -> Self {
        Self { max_retries: 5, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniformly random wait in [0, min(max, base * 2^attempt)].
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let mut r = [0u8; 8];
        let frac = match getrandom::fill(&mut r) {
            Ok(()) => (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        cap.mul_f64(frac)
    }
}

#[derive(Debug)]
pub struct RetryStore<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: Store> RetryStore<S> {
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn run<T, F, Fut>(&self, what: &str, name: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.policy.max_retries => {
                    let wait = self.policy.delay(attempt);
                    attempt += 1;
                    tracing::warn!(
                        "{what} {name}: {e}; retry {attempt}/{} in {:.1} s",
                        self.policy.max_retries,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                r => return r,
            }
        }
    }
}

#[async_trait]
impl<S: Store> Store for RetryStore<S> {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), StoreError> {
        // The body is cloned per attempt; the original stays for the next retry.
        self.run("put", name, || self.inner.put(name, data.clone())).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.run("get", name, || self.inner.get(name)).await
    }
    async fn get_limited(&self, name: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        self.run("get", name, || self.inner.get_limited(name, limit)).await
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.run("get", name, || self.inner.get_range(name, offset, len)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.run("list", prefix, || self.inner.list(prefix)).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.run("delete", name, || self.inner.delete(name)).await
    }
    async fn size(&self, name: &str) -> Result<u64, StoreError> {
        self.run("stat", name, || self.inner.size(name)).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use crate::store::fault::{FaultPlan, FaultStore};

    fn fast() -> RetryPolicy {
        RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let dir = tempfile::tempdir().unwrap();
        let faulty =
            FaultStore::new(LocalStore::new(dir.path()), FaultPlan { fail_calls: vec![1, 2], ..Default::default() });
        let s = RetryStore::new(faulty, fast());
        s.put("a/b", b"x".to_vec()).await.unwrap();
        assert_eq!(s.get("a/b").await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn retries_are_bounded_and_permanent_errors_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultStore::new(
            LocalStore::new(dir.path()),
            FaultPlan { fail_calls: (1..=10).collect(), ..Default::default() },
        );
        let s = RetryStore::new(faulty, fast());
        assert!(s.put("a/b", b"x".to_vec()).await.unwrap_err().is_transient());
        assert_eq!(s.inner.calls(), 4);
        let s = RetryStore::new(FaultStore::new(LocalStore::new(dir.path()), FaultPlan::default()), fast());
        assert!(s.get("missing").await.unwrap_err().is_not_found());
        assert_eq!(s.inner.calls(), 1);
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p =
            RetryPolicy { max_retries: 9, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for a in 0..10 {
            assert!(p.delay(a) <= Duration::from_secs(1));
        }
    }
}
