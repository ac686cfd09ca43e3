//! Write strategies over a data store that takes 1 ms per call (a `tokio::time::sleep`, as a
//! database round trip would): how fast writes are acknowledged.
//!
//! Every measured iteration is a burst of 1,000 writes of distinct records (256-byte values)
//! from 16 concurrent writers, in front of a memory tier (moka):
//!
//! - `strategies/write_through`: `WriteThrough::set` (store, then cache): a write is
//!   acknowledged after its store call.
//! - `strategies/write_behind`: `WriteBehind::set` (queue of 10,000, no journal):
//!   acknowledged once cached and queued. The queue is flushed after each iteration, outside
//!   the measured time, with batches of 100 (so that the untimed drain does not make the run
//!   last minutes; the batch size does not change what an acknowledgement costs).
//! - `strategies/write_behind_journal`: the same with the sled journal: acknowledged once
//!   journaled and flushed to disk (concurrent writers share a flush).
//! - `strategies/write_behind_until_stored`: the burst and then `flush()`, timed together:
//!   the time until the store holds every write, with the default batches of 10 (one worker,
//!   so about 100 store calls one after another).
//!
//! Throughput is reported in acknowledged writes per second (criterion's elements/s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aurelis_cache::strategy::{DataStore, RecordKey, WriteBehind, WriteThrough};
use aurelis_cache::{Cache, MokaStore, Tier};
use aurelis_cache_benches::{runtime, value};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parking_lot::Mutex;

const BURST: u64 = 1_000;
const WRITERS: u64 = 16;
const VALUE_LEN: usize = 256;
const STORE_LATENCY: Duration = Duration::from_millis(1);

/// A data store that answers every call after `STORE_LATENCY`.
#[derive(Default)]
struct SlowStore {
    data: Mutex<HashMap<RecordKey, String>>,
}

#[async_trait]
impl DataStore for SlowStore {
    type Value = String;
    type Error = std::io::Error;

    async fn get(&self, key: &RecordKey) -> Result<Option<String>, Self::Error> {
        tokio::time::sleep(STORE_LATENCY).await;
        Ok(self.data.lock().get(key).cloned())
    }

    async fn set(&self, key: &RecordKey, value: &String) -> Result<(), Self::Error> {
        tokio::time::sleep(STORE_LATENCY).await;
        self.data.lock().insert(key.clone(), value.clone());
        Ok(())
    }

    async fn set_many(&self, entries: &[(RecordKey, String)]) -> Result<(), Self::Error> {
        tokio::time::sleep(STORE_LATENCY).await;
        let mut data = self.data.lock();
        for (k, v) in entries {
            data.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    async fn delete(&self, key: &RecordKey) -> Result<(), Self::Error> {
        tokio::time::sleep(STORE_LATENCY).await;
        self.data.lock().remove(key);
        Ok(())
    }
}

fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

fn cache() -> Cache {
    let memory = MokaStore::builder().max_entries(1_000_000).build().expect("moka");
    Cache::builder().tier(Tier::new("memory", Arc::new(memory))).build().expect("cache")
}

/// Runs one burst of `BURST` writes from `WRITERS` concurrent writers; `write(n)` writes
/// record `n`. Record numbers continue across bursts, so no write coalesces with an older one.
async fn burst<F, Fut>(next: &AtomicU64, write: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = next.fetch_add(BURST, Ordering::Relaxed);
    let writers = (0..WRITERS).map(|w| {
        let write = &write;
        async move {
            let mut n = start + w;
            while n < start + BURST {
                write(n).await;
                n += WRITERS;
            }
        }
    });
    futures::future::join_all(writers).await;
}

fn strategies(c: &mut Criterion) {
    let rt = runtime();
    let v = value(VALUE_LEN);
    let mut group = c.benchmark_group("strategies");
    group.throughput(Throughput::Elements(BURST));

    let wt = WriteThrough::new(cache(), SlowStore::default());
    let next = AtomicU64::new(0);
    group.bench_function("write_through", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (wt, v, next) = (&wt, &v, &next);
            async move {
                let t = Instant::now();
                for _ in 0..iters {
                    burst(next, |n| async move {
                        wt.set("bench", &n.to_string(), v).await.expect("write-through");
                    })
                    .await;
                }
                t.elapsed()
            }
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    for (name, journal) in [("write_behind", false), ("write_behind_journal", true)] {
        let mut builder = WriteBehind::builder(cache(), SlowStore::default()).batch_size(100);
        if journal {
            builder = builder.journal(dir.path().join("journal"));
        }
        let wb = rt.block_on(builder.build()).expect("write-behind");
        let next = AtomicU64::new(0);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (wb, v, next) = (&wb, &v, &next);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        burst(next, |n| async move {
                            wb.set("bench", &n.to_string(), v.clone()).await.expect("write-behind");
                        })
                        .await;
                        total += t.elapsed();
                        wb.flush().await;
                    }
                    total
                }
            })
        });
        assert!(rt.block_on(wb.shutdown(Duration::from_secs(60))).is_complete());
    }

    let wb = rt.block_on(WriteBehind::builder(cache(), SlowStore::default()).build()).expect("wb");
    let next = AtomicU64::new(0);
    group.bench_function("write_behind_until_stored", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (wb, v, next) = (&wb, &v, &next);
            async move {
                let t = Instant::now();
                for _ in 0..iters {
                    burst(next, |n| async move {
                        wb.set("bench", &n.to_string(), v.clone()).await.expect("write-behind");
                    })
                    .await;
                    wb.flush().await;
                }
                t.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings();
    targets = strategies
}
criterion_main!(benches);
