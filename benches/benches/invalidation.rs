//! What invalidation and bookkeeping cost as the cache grows: 10k, 100k and 1M stored entries
//! (~140-byte values) in memory over disk, and in Redis.
//!
//! - `invalidation/category_mark/{n}`: `Cache::invalidate_category` (a durable mark, O(1)),
//!   memory (moka) over disk (sled) holding `n` entries, 100 of them in the invalidated
//!   category.
//! - `invalidation/category_scan/{n}`: the same 100 entries removed the way the cache did it
//!   before marks: `delete_prefix` on both stores (moka walks every entry; sled scans the
//!   range). Re-written before every measured call.
//! - `invalidation/redis_category_mark/{n}` and `invalidation/redis_category_scan/{n}`: the same
//!   on a Redis tier holding `n` keys (`SCAN MATCH` + `UNLINK` walks every key of the database).
//! - `invalidation/stats_report/{n}`: `Cache::stats_report` over memory and disk.
//!
//! The growth ratios (1M / 10k) are in docs/performance.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache::{Cache, MokaStore, RedisConfig, RedisStore, SledStore, Store, Tier};
use aurelis_cache_benches::{runtime, value};
use aurelis_redis_harness::RedisServer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const VALUE_LEN: usize = 140;
const MATCHED: usize = 100;
const BATCH: usize = 1_000;

fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

async fn fill(cache: &Cache, n: usize) {
    let v = value(VALUE_LEN);
    let ids: Vec<String> = (0..n - MATCHED).map(|i| format!("e{i}")).collect();
    for chunk in ids.chunks(BATCH) {
        let entries: Vec<(&str, &String)> = chunk.iter().map(|id| (id.as_str(), &v)).collect();
        cache
            .set_many(
                &entries.iter().map(|(id, v)| (("filler", *id), v)).collect::<Vec<_>>(),
                &Default::default(),
            )
            .await
            .expect("fill");
    }
    refill(cache).await;
}

async fn refill(cache: &Cache) {
    let v = value(VALUE_LEN);
    let ids: Vec<String> = (0..MATCHED).map(|i| format!("m{i}")).collect();
    let entries: Vec<(&str, &String)> = ids.iter().map(|id| (id.as_str(), &v)).collect();
    cache
        .set_many(
            &entries.iter().map(|(id, v)| (("hot", *id), v)).collect::<Vec<_>>(),
            &Default::default(),
        )
        .await
        .expect("refill");
}

fn invalidation(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("invalidation");
    for &n in &SIZES {
        let dir = tempfile::tempdir().expect("tempdir");
        let memory =
            Arc::new(MokaStore::builder().max_entries(2 * n as u64).build().expect("moka"));
        let disk =
            Arc::new(SledStore::builder().path(dir.path().join("db")).build().expect("sled"));
        let cache = Cache::builder()
            .tier(Tier::new("memory", memory.clone()).priority(2))
            .tier(Tier::new("disk", disk.clone()).priority(1))
            .build()
            .expect("cache");
        rt.block_on(fill(&cache, n));
        let prefix = cache.keys().category_prefix("hot").expect("prefix");

        group.bench_with_input(BenchmarkId::new("category_mark", n), &n, |b, _| {
            b.to_async(&rt).iter(|| async { cache.invalidate_category("hot").await.expect("mark") })
        });
        group.bench_with_input(BenchmarkId::new("category_scan", n), &n, |b, _| {
            b.to_async(&rt).iter_custom(|iters| {
                let (cache, memory, disk, prefix) = (&cache, &memory, &disk, &prefix);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        refill(cache).await;
                        let started = Instant::now();
                        let removed = memory.delete_prefix(prefix).await.expect("moka")
                            + disk.delete_prefix(prefix).await.expect("sled");
                        total += started.elapsed();
                        black_box(removed);
                    }
                    total
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("stats_report", n), &n, |b, _| {
            b.to_async(&rt).iter(|| async { black_box(cache.stats_report().await) })
        });
        drop(cache);
    }

    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.url = server.url();
    config.timeout_ms = 60_000;
    config.connect_timeout_ms = 10_000;
    for &n in &SIZES {
        server.command(&["FLUSHALL"]).expect("flush");
        let redis = Arc::new(rt.block_on(RedisStore::from_config(&config)).expect("redis"));
        let cache =
            Cache::builder().tier(Tier::new("redis", redis.clone())).build().expect("cache");
        rt.block_on(fill(&cache, n));
        let prefix = cache.keys().category_prefix("hot").expect("prefix");
        group.bench_with_input(BenchmarkId::new("redis_category_mark", n), &n, |b, _| {
            b.to_async(&rt).iter(|| async { cache.invalidate_category("hot").await.expect("mark") })
        });
        group.bench_with_input(BenchmarkId::new("redis_category_scan", n), &n, |b, _| {
            b.to_async(&rt).iter_custom(|iters| {
                let (cache, redis, prefix) = (&cache, &redis, &prefix);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        refill(cache).await;
                        let started = Instant::now();
                        black_box(redis.delete_prefix(prefix).await.expect("scan"));
                        total += started.elapsed();
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings();
    targets = invalidation
}
criterion_main!(benches);
