//! One list of store semantics (docs: `Store` trait), run against the local
//! store, the S3 store on a real Garage server, and a fault-injecting wrapper
//! (failing calls, delays, truncated bodies) behind the retry layer.

mod common;

use common::garage;
use drtool::store::fault::{FaultPlan, FaultStore};
use drtool::store::s3::{S3Options, S3Store};
use drtool::store::{LocalStore, RetryPolicy, RetryStore, Store, StoreError};
use std::time::Duration;

fn fast_retries() -> RetryPolicy {
    RetryPolicy { max_retries: 8, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(20) }
}

fn data(n: usize, seed: u64) -> Vec<u8> {
    common::random_bytes(seed, n)
}

/// The conformance list. Every store must pass all of it.
async fn conformance(s: &dyn Store) {
    // put/get, including an empty object, and replacing with identical content.
    s.put("config", b"cfg".to_vec()).await.unwrap();
    assert_eq!(s.get("config").await.unwrap(), b"cfg");
    s.put("keys/empty", Vec::new()).await.unwrap();
    assert_eq!(s.get("keys/empty").await.unwrap(), Vec::<u8>::new());
    let pack = data(3 << 20, 1);
    s.put("data/ab/abcdef", pack.clone()).await.unwrap();
    s.put("data/ab/abcdef", pack.clone()).await.unwrap();
    assert_eq!(s.get("data/ab/abcdef").await.unwrap(), pack);
    assert_eq!(s.size("data/ab/abcdef").await.unwrap(), pack.len() as u64);

    // Exact ranges; a range past the end is an error, never silently short.
    assert_eq!(s.get_range("data/ab/abcdef", 1000, 5000).await.unwrap(), pack[1000..6000]);
    assert_eq!(s.get_range("data/ab/abcdef", 0, 1).await.unwrap(), pack[..1]);
    let end = pack.len() as u64;
    assert_eq!(s.get_range("data/ab/abcdef", end - 10, 10).await.unwrap(), pack[pack.len() - 10..]);
    assert!(s.get_range("data/ab/abcdef", end - 10, 20).await.is_err());

    // Listing: by prefix, nested, complete with sizes, nothing from other prefixes.
    s.put("data/cd/cdef01", data(10, 2)).await.unwrap();
    s.put("index/1234", data(20, 3)).await.unwrap();
    let mut listed: Vec<(String, u64)> = s.list("data/").await.unwrap().into_iter().map(|o| (o.name, o.size)).collect();
    listed.sort();
    assert_eq!(listed, vec![("data/ab/abcdef".to_string(), pack.len() as u64), ("data/cd/cdef01".to_string(), 10)]);
    assert_eq!(s.list("index/").await.unwrap().len(), 1);
    assert!(s.list("snapshots/").await.unwrap().is_empty());

    // Capped reads refuse an object over the limit, found before or while
    // reading the body; listings say when an object was last written.
    assert_eq!(s.get_limited("data/ab/abcdef", pack.len() as u64).await.unwrap(), pack);
    let capped = s.get_limited("data/ab/abcdef", 1000).await;
    assert!(matches!(capped, Err(StoreError::TooLarge { limit: 1000, .. })), "{capped:?}");
    assert!(matches!(s.get_limited("snapshots/none", 10).await, Err(StoreError::NotFound { .. })));
    assert!(s.list("index/").await.unwrap().iter().all(|o| o.modified.is_some()));

    // Missing objects are NotFound; delete is idempotent.
    assert!(matches!(s.get("snapshots/none").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(s.size("snapshots/none").await, Err(StoreError::NotFound { .. })));
    s.delete("data/cd/cdef01").await.unwrap();
    s.delete("data/cd/cdef01").await.unwrap();
    assert_eq!(s.list("data/").await.unwrap().len(), 1);

    // Names that could escape the namespace are refused.
    assert!(matches!(s.put("../escape", vec![1]).await, Err(StoreError::InvalidName(_))));
    assert!(matches!(s.get("/abs").await, Err(StoreError::InvalidName(_))));

    // Many objects (listing pages, concurrency).
    let names: Vec<String> = (0..120).map(|i| format!("locks/{i:04}")).collect();
    let puts = names.iter().enumerate().map(|(i, n)| s.put(n, vec![i as u8]));
    for r in futures_util::future::join_all(puts).await {
        r.unwrap();
    }
    assert_eq!(s.list("locks/").await.unwrap().len(), 120);
}

#[tokio::test]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&LocalStore::new(dir.path())).await;
}

#[tokio::test]
async fn faulty_local_store_conforms_behind_retries() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan {
        fail_calls: vec![1, 2, 5, 9],
        fail_rate: 0.2,
        seed: 7,
        delay: Duration::from_millis(1),
        truncate_rate: 0.2,
    };
    let faulty = FaultStore::new(LocalStore::new(dir.path()), plan);
    let s = RetryStore::new(faulty, fast_retries());
    conformance(&s).await;
    assert!(s.inner().injected() >= 10, "only {} faults injected", s.inner().injected());
}

#[test]
fn s3_store_on_garage_conforms() {
    let Some(g) = garage::shared() else { return };
    let store = g.store(&g.fresh_url());
    garage::runtime().block_on(conformance(&store));
}

#[test]
fn s3_multipart_upload_roundtrips() {
    let Some(g) = garage::shared() else { return };
    let url = format!("{}?multipart_threshold_mib=5&part_size_mib=5&part_concurrency=3", g.fresh_url());
    let store = g.store(&url);
    let big = data(17 << 20, 9);
    garage::put(&store, "data/00/big", big.clone());
    assert_eq!(garage::get(&store, "data/00/big"), big);
    assert_eq!(garage::list(&store, "data/"), vec![("data/00/big".to_string(), big.len() as u64)]);
}

#[test]
fn faulty_s3_store_conforms_behind_retries() {
    let Some(g) = garage::shared() else { return };
    let url = g.fresh_url();
    let opts = S3Options::parse(&url, |k| g.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap();
    let s3 = garage::runtime().block_on(S3Store::connect(opts)).unwrap();
    let plan = FaultPlan { fail_rate: 0.1, seed: 3, truncate_rate: 0.1, ..Default::default() };
    let s = RetryStore::new(FaultStore::new(s3, plan), fast_retries());
    garage::runtime().block_on(conformance(&s));
    assert!(s.inner().injected() >= 5, "only {} faults injected", s.inner().injected());
}
