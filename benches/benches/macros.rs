//! `#[cached]` against the `cached` crate's `#[cached]`, on the same functions:
//!
//! - `macro_hit`: a hit of a function of one `u64` returning a 1 KiB `String`. Ours: a cache
//!   with one memory tier (the key is derived from the argument on every call: canonical JSON,
//!   blake3, the key builder); theirs: the default in-memory store (`UnboundCache` behind a
//!   lock, keyed by the argument's `Hash`).
//! - `macro_concurrent`: 1000 concurrent calls over 100 distinct keys with a 10 ms body, each
//!   iteration on fresh keys. Ours: plain `#[cached]` (calls coalesce through
//!   `get_or_compute`); theirs: `sync_writes = "by_key"` (bucketed per-key locks, 64 buckets by
//!   default, held across the body). Both must run the body exactly 100 times per iteration
//!   (checked; the bench panics otherwise). The time is from the first call to the last answer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use aurelis_cache::{Cache, MokaStore, Tier};
use aurelis_cache_benches::{runtime, value, VALUE_LEN};
use criterion::{criterion_group, criterion_main, Criterion};

const CALLS: usize = 1000;
const KEYS: u64 = 100;
const BODY: Duration = Duration::from_millis(10);

static CACHE: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .tier(Tier::new(
            "memory",
            Arc::new(MokaStore::builder().max_entries(1_000_000).build().expect("moka")),
        ))
        .build()
        .expect("cache")
});

// ----- the hit ------------------------------------------------------------------------------

#[aurelis_cache::cached(cache = *CACHE, category = "bench_hit")]
async fn answer(id: u64) -> String {
    let mut v = value(VALUE_LEN);
    v.push_str(&id.to_string());
    v
}

#[cached::proc_macro::cached]
async fn answer_cached_crate(id: u64) -> String {
    let mut v = value(VALUE_LEN);
    v.push_str(&id.to_string());
    v
}

// ----- 1000 calls over 100 keys -------------------------------------------------------------

static OUR_RUNS: AtomicUsize = AtomicUsize::new(0);
static THEIR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[aurelis_cache::cached(cache = *CACHE, category = "bench_concurrent")]
async fn slow(round: u64, id: u64) -> u64 {
    OUR_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(BODY).await;
    round * KEYS + id
}

#[cached::proc_macro::cached(sync_writes = "by_key")]
async fn slow_cached_crate(round: u64, id: u64) -> u64 {
    THEIR_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(BODY).await;
    round * KEYS + id
}

fn settings() -> Criterion {
    aurelis_cache_benches::criterion()
}

fn hit(c: &mut Criterion) {
    let rt = runtime();
    rt.block_on(async {
        assert_eq!(answer(42).await, answer_cached_crate(42).await);
    });
    let mut group = c.benchmark_group("macro_hit");
    group.bench_function("aurelis_cached", |b| {
        b.to_async(&rt).iter(|| async { std::hint::black_box(answer(42).await) })
    });
    // The same hit through `get_or_compute` with a key built once: the cache's share of
    // `aurelis_cached` (the rest is deriving the key from the argument).
    let key = answer_cache_key(42).expect("key");
    group.bench_function("aurelis_get_or_compute_prebuilt_key", |b| {
        b.to_async(&rt).iter(|| async {
            let v: String = CACHE
                .get_or_compute(&key, || async {
                    Err::<String, _>(std::io::Error::other("a miss in a bench of hits"))
                })
                .await
                .expect("hit");
            std::hint::black_box(v)
        })
    });
    group.bench_function("key_derivation", |b| {
        b.iter(|| std::hint::black_box(answer_cache_key(std::hint::black_box(42)).expect("key")))
    });
    group.bench_function("cached_crate", |b| {
        b.to_async(&rt).iter(|| async { std::hint::black_box(answer_cached_crate(42).await) })
    });
    group.finish();
}

/// Runs `CALLS` concurrent calls of `call` over `KEYS` keys of a fresh round; returns the time
/// from the first call to the last answer.
async fn burst<F, Fut>(round: u64, call: F) -> Duration
where
    F: Fn(u64, u64) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLS as u64)
        .map(|i| {
            let id = i % KEYS;
            let call = call(round, id);
            tokio::spawn(async move { (id, call.await) })
        })
        .collect();
    for task in tasks {
        let (id, got) = task.await.expect("task");
        assert_eq!(got, round * KEYS + id);
    }
    started.elapsed()
}

fn concurrent(c: &mut Criterion) {
    let rt = runtime();
    let round = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("macro_concurrent");
    group.sample_size(10);
    {
        let round = round.clone();
        group.bench_function("aurelis_cached", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let round = round.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let r = round.fetch_add(1, SeqCst);
                        let before = OUR_RUNS.load(SeqCst);
                        total += burst(r, slow).await;
                        assert_eq!(OUR_RUNS.load(SeqCst) - before, KEYS as usize, "body runs");
                    }
                    total
                }
            })
        });
    }
    group.bench_function("cached_crate_by_key", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let round = round.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let r = round.fetch_add(1, SeqCst);
                    let before = THEIR_RUNS.load(SeqCst);
                    total += burst(r, slow_cached_crate).await;
                    assert_eq!(THEIR_RUNS.load(SeqCst) - before, KEYS as usize, "body runs");
                }
                total
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings();
    targets = hit, concurrent
}
criterion_main!(benches);
