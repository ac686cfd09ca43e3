//! Memory-hit throughput with two threads reading at once: the facade's memory tier against
//! raw moka, 10,000 entries of 1 KiB, each thread reading keys in its own pseudo-random order.
//!
//! One criterion iteration is [`READS_PER_THREAD`] reads on each of two threads (each with its
//! own current-thread runtime), started together; the time is until both finished. The ratio
//! of the two rows is the inverse of the throughput ratio.
//!
//! After the criterion group, the same two-thread runs of the facade and of raw moka take turns
//! ([`INTERLEAVED_ROUNDS`] rounds, each started by the other way than the last), so that both
//! share the machine's changes of speed: `memory_throughput_interleaved.json`, the table the
//! throughput target is judged on (`µs per read` there is the wall time of a run over the reads
//! of both threads, the inverse of the throughput).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aurelis_cache::{Cache, MokaStore, Tier};
use aurelis_cache_benches::{
    criterion, interleaved_turns, report_interleaved, value, Turns, Way, CATEGORY, VALUE_LEN,
};
use criterion::{criterion_group, criterion_main, Criterion};

const ENTRIES: usize = 10_000;
const THREADS: usize = 2;
const READS_PER_THREAD: usize = 10_000;

fn ids() -> Vec<String> {
    (0..ENTRIES).map(|i| format!("item-{i}")).collect()
}

/// Runs `read(i)` for READS_PER_THREAD pseudo-random `i` on each of THREADS threads.
fn run_threads<F>(read: F) -> Duration
where
    F: Fn(&tokio::runtime::Runtime, usize) + Send + Sync + 'static,
{
    let read = Arc::new(read);
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (read, barrier) = (read.clone(), barrier.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                barrier.wait();
                for _ in 0..READS_PER_THREAD {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    read(&rt, (x % ENTRIES as u64) as usize);
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    started.elapsed()
}

fn throughput(c: &mut Criterion) {
    let value = value(VALUE_LEN);
    let ids = Arc::new(ids());
    let store = MokaStore::builder().max_entries(2 * ENTRIES as u64).build().unwrap();
    let cache = Cache::builder()
        .tier(Tier::new("memory", Arc::new(store)).ttl(Duration::from_secs(300)))
        .build()
        .unwrap();
    let keys: Arc<Vec<_>> = Arc::new(
        ids.iter().map(|id| cache.keys().build_key(CATEGORY, id, None).unwrap()).collect(),
    );
    let moka: moka::future::Cache<String, String> = moka::future::Cache::builder()
        .max_capacity(2 * ENTRIES as u64)
        .time_to_live(Duration::from_secs(300))
        .build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for key in keys.iter() {
            cache.set(key, &value).await.unwrap();
            // Read once: the memory tier keeps it decoded from then on.
            let _: Option<String> = cache.get(key).await.unwrap();
            moka.insert(key.as_str().to_owned(), value.clone()).await;
        }
    });

    let mut group = c.benchmark_group("memory_throughput");
    group.throughput(criterion::Throughput::Elements((THREADS * READS_PER_THREAD) as u64));
    {
        let (cache, keys) = (cache.clone(), keys.clone());
        group.bench_function("aurelis_facade", move |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (cache, keys) = (cache.clone(), keys.clone());
                    total += run_threads(move |rt, i| {
                        let v: Option<String> = rt.block_on(cache.get(&keys[i])).unwrap();
                        black_box(v.unwrap());
                    });
                }
                total
            })
        });
    }
    let facade_run = {
        let (cache, keys) = (cache.clone(), keys.clone());
        move || {
            let (cache, keys) = (cache.clone(), keys.clone());
            run_threads(move |rt, i| {
                let v: Option<String> = rt.block_on(cache.get(&keys[i])).unwrap();
                black_box(v.unwrap());
            })
        }
    };
    let raw_run = {
        let (moka, keys) = (moka.clone(), keys.clone());
        move || {
            let (moka, keys) = (moka.clone(), keys.clone());
            run_threads(move |rt, i| {
                black_box(rt.block_on(moka.get(keys[i].as_str())).unwrap());
            })
        }
    };
    {
        let (moka, keys) = (moka.clone(), keys.clone());
        group.bench_function("raw_moka", move |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (moka, keys) = (moka.clone(), keys.clone());
                    total += run_threads(move |rt, i| {
                        black_box(rt.block_on(moka.get(keys[i].as_str())).unwrap());
                    });
                }
                total
            })
        });
    }
    group.finish();

    let reads = (THREADS * READS_PER_THREAD) as u32;
    let Some((Turns { rounds, .. }, file)) = interleaved_turns(
        "memory_throughput_interleaved",
        Turns { reads, rounds: INTERLEAVED_ROUNDS },
        "memory_throughput_interleaved.json",
    ) else {
        return;
    };
    let ways: [Way; 2] = [
        ("raw_moka", "raw moka get, 2 threads"),
        ("aurelis_facade", "facade get(&key), 2 threads"),
    ];
    let runs: [&dyn Fn() -> Duration; 2] = [&raw_run, &facade_run];
    let mut wall_ns = [0u128; 2];
    for round in 0..rounds {
        for i in 0..2 {
            let way = (round as usize + i) % 2;
            let took = runs[way]();
            if round > 0 {
                wall_ns[way] += took.as_nanos();
            }
        }
    }
    let measured = u64::from(rounds.saturating_sub(1)) * u64::from(reads);
    eprintln!("memory_throughput_interleaved: {} rounds of both ways", rounds.saturating_sub(1));
    report_interleaved(
        "memory_throughput_interleaved",
        file,
        &ways,
        reads,
        measured,
        &wall_ns,
        &[None, None],
    );
}

/// Rounds of the interleaved measurement, the first of which only warms up (a run of both
/// threads takes 3 to 5 ms here: about 2 s in all).
const INTERLEAVED_ROUNDS: u32 = 301;

criterion_group! {
    name = benches;
    config = criterion();
    targets = throughput
}
criterion_main!(benches);
