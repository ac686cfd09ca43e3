//! Store layers: the conformance suite through layers (a time limit, fault injection, both
//! nested), forwarding that keeps what a layer does not override (decoded values of the
//! memory tier), and the circuit breaker as a layer that keeps calls from the store.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::core::layer::{BoxFuture, Layer, LayeredStore, Operation};
use aurelis_cache::core::testkit::{FaultyStore, Fixture};
use aurelis_cache::layer::TimeoutLayer;
use aurelis_cache::{BreakerConfig, Cache, MokaStore, Result, SledStore, Store, Tier};
use common::eventually;

mod through_timeout {
    use super::*;

    async fn fixture() -> Fixture {
        let moka = MokaStore::builder().build().expect("moka");
        Fixture::new(Arc::new(TimeoutLayer::new(Duration::from_secs(5)).layer(moka)))
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod through_faults_off_over_sled {
    use super::*;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let sled = SledStore::builder().path(dir.path().join("db")).build().expect("sled");
        Fixture::new(Arc::new(FaultyStore::new(Arc::new(sled)))).with_guard(dir)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod through_nested_layers {
    use super::*;

    async fn fixture() -> Fixture {
        let moka: Arc<dyn Store> = Arc::new(MokaStore::builder().build().expect("moka"));
        let store = TimeoutLayer::new(Duration::from_secs(5)).layer(FaultyStore::new(moka));
        Fixture::new(Arc::new(store))
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

/// Counts the operations it sees; overrides only `around`.
#[derive(Debug)]
struct Counting<S> {
    inner: S,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl<S: Store> LayeredStore for Counting<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if op.is_write() { &self.writes } else { &self.reads }.fetch_add(1, Ordering::SeqCst);
        call
    }
}

#[tokio::test]
async fn a_layer_sees_every_operation_and_keeps_what_it_does_not_override() {
    let moka = MokaStore::builder().build().expect("moka");
    let counting = Arc::new(Counting { inner: moka, reads: 0.into(), writes: 0.into() });
    // The layered store still offers the memory tier's decoded values (forwarded), so the
    // cache keeps its synchronous hit path through the layer.
    assert!(Store::as_value_store(&*counting).is_some());
    assert_eq!(Store::name(&*counting), "memory");
    let cache =
        Cache::builder().tier(Tier::new("memory", counting.clone())).build().expect("cache");

    cache.set(("doc", "d"), &"answer".to_string()).await.unwrap();
    assert!(counting.writes.load(Ordering::SeqCst) >= 1, "the write went through the layer");
    let first = cache.get_shared::<String>(("doc", "d")).await.unwrap().expect("hit");
    let second = cache.get_shared::<String>(("doc", "d")).await.unwrap().expect("hit");
    assert!(Arc::ptr_eq(&first, &second), "decoded once, shared through the layer");

    let before = counting.writes.load(Ordering::SeqCst);
    assert!(cache.delete(("doc", "d")).await.unwrap());
    assert_eq!(counting.writes.load(Ordering::SeqCst), before + 1);
    let reads = counting.reads.load(Ordering::SeqCst);
    assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap(), None);
    assert!(counting.reads.load(Ordering::SeqCst) > reads, "a miss asks the store");
}

#[tokio::test]
async fn an_open_breaker_keeps_calls_from_the_store_until_the_repair_closes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled: Arc<dyn Store> =
        Arc::new(SledStore::builder().path(dir.path().join("db")).build().expect("sled"));
    let faulty = FaultyStore::new(sled);
    let faults = faulty.control();
    let memory = MokaStore::builder().build().expect("moka");
    let cache = Cache::builder()
        .tier(Tier::new("memory", Arc::new(memory)).priority(2))
        .tier(
            Tier::new("disk", Arc::new(faulty))
                .priority(1)
                .breaker(BreakerConfig::new(2, Duration::from_millis(50))),
        )
        .build()
        .expect("cache");

    faults.fail_all(true);
    for i in 0..4 {
        // Served by the memory tier; the disk tier fails and its breaker opens.
        cache.set(("k", i.to_string()), &i).await.unwrap();
    }
    assert!(cache.is_tier_down("disk"));
    let sets_before = faults.sets();
    for i in 0..20 {
        cache.set(("other", i.to_string()), &i).await.unwrap();
        assert_eq!(cache.get::<i32>(("other", i.to_string())).await.unwrap(), Some(i));
    }
    // While open, the breaker refuses writes before they reach the store (the repair task
    // probes with reads and removes missed keys with deletes, never writes).
    let sets_while_open = faults.sets();
    assert_eq!(sets_while_open, sets_before, "no write reached the store while open");
    let report = cache.stats_report().await;
    let disk = common::tier(&report, "disk");
    assert!(disk.skipped >= 20, "skipped calls are counted: {}", disk.skipped);

    faults.fail_all(false);
    assert!(eventually(Duration::from_secs(5), || async { !cache.is_tier_down("disk") }).await);
    // Every key it missed was removed from it before it served again.
    assert_eq!(cache.tier_pending("disk"), 0);
    cache.set(("k", "after"), &1).await.unwrap();
    assert!(faults.sets() > sets_while_open, "closed again: writes reach the store");
}

/// A store with a synchronous read that fails on demand, counting its synchronous and its
/// asynchronous reads.
#[derive(Debug)]
struct SyncReads<S> {
    inner: S,
    failing: std::sync::atomic::AtomicBool,
    sync_reads: AtomicU64,
    async_reads: AtomicU64,
}

impl<S: Store> LayeredStore for SyncReads<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<aurelis_cache::core::Bytes>>> {
        self.sync_reads.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Some(Err(aurelis_cache::Error::new(
                aurelis_cache::ErrorKind::Backend,
                "injected synchronous read failure",
            )));
        }
        self.inner.get_sync(key)
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if op == Operation::Get {
            self.async_reads.fetch_add(1, Ordering::SeqCst);
        }
        call
    }
}

/// The synchronous read path (taken by disk tiers) goes through the tier's layers like an
/// asynchronous read: its errors are counted, skipped (the loader answers) and open the
/// breaker; a fault-injecting layer, which offers no synchronous read, still sees every read.
#[tokio::test]
async fn synchronous_reads_are_counted_and_break_like_asynchronous_ones() {
    let store = Arc::new(SyncReads {
        inner: aurelis_cache::core::testkit::MemoryMapStore::new("disk"),
        failing: false.into(),
        sync_reads: 0.into(),
        async_reads: 0.into(),
    });
    let cache = Cache::builder()
        .tier(
            Tier::new("disk", store.clone())
                .breaker(BreakerConfig::new(2, Duration::from_secs(60))),
        )
        .build()
        .expect("cache");
    cache.set(("doc", "d"), &7u32).await.unwrap();
    assert_eq!(cache.get::<u32>(("doc", "d")).await.unwrap(), Some(7));
    assert_eq!(store.sync_reads.load(Ordering::SeqCst), 1, "read synchronously");
    assert_eq!(store.async_reads.load(Ordering::SeqCst), 0, "and not also asynchronously");

    store.failing.store(true, Ordering::SeqCst);
    for i in 0..2u32 {
        let v = cache
            .get_or_compute(("doc", "d"), || async move { Ok::<_, std::io::Error>(100 + i) })
            .await
            .unwrap();
        assert_eq!(v, 100 + i, "a failing read is skipped and the loader answers");
    }
    let report = cache.stats_report().await;
    assert!(common::tier(&report, "disk").errors >= 2, "synchronous read errors are counted");
    assert!(cache.is_tier_down("disk"), "two failed synchronous reads open the breaker");
    let sync_reads = store.sync_reads.load(Ordering::SeqCst);
    assert_eq!(cache.get::<u32>(("doc", "other")).await.unwrap(), None);
    assert_eq!(
        store.sync_reads.load(Ordering::SeqCst),
        sync_reads,
        "an open breaker keeps reads off"
    );

    // Under a fault-injecting layer (no synchronous read), reads are asynchronous and faults apply.
    let faulty = FaultyStore::new(Arc::new(aurelis_cache::core::testkit::MemoryMapStore::new("f")));
    let faults = faulty.control();
    let cache = Cache::builder().tier(Tier::new("f", Arc::new(faulty))).build().expect("cache");
    cache.set(("doc", "d"), &1u8).await.unwrap();
    faults.fail_reads(true);
    assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), None, "the injected fault applies");
    faults.fail_reads(false);
    assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), Some(1));
}

/// A store whose reads fail, one in `every`, as reads of a dead shard's keys do (transport
/// errors): failures are never consecutive when `every > 1`, so only the breaker's failure
/// rate can open it.
#[derive(Debug)]
struct DeadShard {
    inner: Arc<dyn Store>,
    every: u64,
    reads: AtomicU64,
}

impl DeadShard {
    fn over_memory(every: u64) -> Arc<dyn Store> {
        let inner = Arc::new(aurelis_cache::core::testkit::MemoryMapStore::new("shards"));
        Arc::new(DeadShard { inner, every, reads: AtomicU64::new(0) })
    }
}

impl LayeredStore for DeadShard {
    type Inner = dyn Store;

    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<aurelis_cache::core::Bytes>>> {
        if self.reads.fetch_add(1, Ordering::SeqCst) % self.every == self.every - 1 {
            return Box::pin(async {
                Err(aurelis_cache::Error::new(aurelis_cache::ErrorKind::Unavailable, "shard down"))
            });
        }
        self.inner.get(key)
    }

    // No synchronous read (the default): every read goes through `get` above.
    fn as_value_store(&self) -> Option<&dyn aurelis_cache::core::value::ValueStore> {
        None
    }
}

fn shard_cache(store: Arc<dyn Store>) -> Cache {
    // Opens at 5 failures that are 25 % of the calls in one second (the default rate).
    let breaker = BreakerConfig::new(5, Duration::from_secs(60));
    Cache::builder().tier(Tier::new("shards", store).breaker(breaker)).build().expect("cache")
}

#[tokio::test]
async fn the_failure_rate_opens_the_breaker_of_a_tier_failing_one_read_in_three() {
    let cache = shard_cache(DeadShard::over_memory(3));
    let mut reads = 0;
    while !cache.is_tier_down("shards") {
        assert_eq!(cache.get::<u8>(("doc", &reads.to_string())).await.unwrap(), None);
        reads += 1;
        assert!(reads < 100, "one read in three failing never opened the breaker");
    }
    // Failures 1 to 5 at reads 3, 6, ..., 15: the fifth is 5 of the 13 calls since the
    // window started at the first (38 % >= 25 %).
    assert_eq!(reads, 15);
}

#[tokio::test]
async fn a_failure_rate_below_the_limit_leaves_the_breaker_closed() {
    // One read in ten fails: 10 % of the calls, under the 25 % limit. The successful reads
    // (misses here) are what the rate is taken over: were they not counted, five failures
    // would be 100 % of the calls and open the breaker.
    let cache = shard_cache(DeadShard::over_memory(10));
    for i in 0..400 {
        assert_eq!(cache.get::<u8>(("doc", &i.to_string())).await.unwrap(), None);
        assert!(!cache.is_tier_down("shards"), "opened after {} reads", i + 1);
    }
    let report = cache.stats_report().await;
    assert_eq!(report.tiers[0].errors, 40);
    assert_eq!(report.tiers[0].misses, 360);
}
