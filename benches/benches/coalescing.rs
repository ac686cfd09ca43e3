//! Request coalescing: 1000 concurrent callers of one cold key with a 50 ms loader, through
//! `Cache::get_or_compute_key` against moka's `get_with`. Each iteration uses a new key (cold),
//! and counts loader calls: both must call the loader exactly once per iteration (checked, the
//! bench panics otherwise). The time is from the first call to the last answer.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache::{Cache, MokaStore, Tier};
use criterion::{criterion_group, criterion_main, Criterion};

const CALLERS: usize = 1000;
const LOAD: Duration = Duration::from_millis(50);

fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
}

fn coalescing(c: &mut Criterion) {
    let rt = aurelis_cache_benches::runtime();
    let cache = Cache::builder()
        .tier(Tier::new(
            "memory",
            Arc::new(MokaStore::builder().max_entries(100_000).build().unwrap()),
        ))
        .build()
        .unwrap();
    let moka: moka::future::Cache<String, String> =
        moka::future::Cache::builder().max_capacity(100_000).build();
    let round = Arc::new(AtomicUsize::new(0));
    let mut group = c.benchmark_group("coalesced_get_or_compute");
    {
        let (cache, round) = (cache.clone(), round.clone());
        group.bench_function("aurelis_facade", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (cache, round) = (cache.clone(), round.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let id = format!("cold-{}", round.fetch_add(1, SeqCst));
                        let key = cache.keys().build_key("bench", &id, None).unwrap();
                        let calls = Arc::new(AtomicUsize::new(0));
                        let started = Instant::now();
                        let tasks: Vec<_> = (0..CALLERS)
                            .map(|_| {
                                let (cache, key, calls) =
                                    (cache.clone(), key.clone(), calls.clone());
                                tokio::spawn(async move {
                                    cache
                                        .get_or_compute(&key, || async move {
                                            calls.fetch_add(1, SeqCst);
                                            tokio::time::sleep(LOAD).await;
                                            Ok::<_, std::io::Error>("answer".to_string())
                                        })
                                        .await
                                        .unwrap()
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        total += started.elapsed();
                        assert_eq!(calls.load(SeqCst), 1, "the loader ran more than once");
                    }
                    total
                }
            })
        });
    }
    {
        let (moka, round) = (moka.clone(), round.clone());
        group.bench_function("moka_get_with", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (moka, round) = (moka.clone(), round.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let key = format!("aurelis:v1:bench:cold-{}", round.fetch_add(1, SeqCst));
                        let calls = Arc::new(AtomicUsize::new(0));
                        let started = Instant::now();
                        let tasks: Vec<_> = (0..CALLERS)
                            .map(|_| {
                                let (moka, key, calls) = (moka.clone(), key.clone(), calls.clone());
                                tokio::spawn(async move {
                                    moka.get_with(key, async move {
                                        calls.fetch_add(1, SeqCst);
                                        tokio::time::sleep(LOAD).await;
                                        "answer".to_string()
                                    })
                                    .await
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        total += started.elapsed();
                        assert_eq!(calls.load(SeqCst), 1, "moka ran the init more than once");
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
    targets = coalescing
}
criterion_main!(benches);
