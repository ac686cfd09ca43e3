//! Instruction counts of single hits, for `valgrind --tool=callgrind` (repeatable where
//! wall-clock times on a shared virtual machine are not).
//!
//! ```sh
//! cargo build --release -p aurelis-cache-benches --example hit_profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/hit_profile disk_facade 20000
//! ```
//!
//! The first argument picks the read (`memory_tuple`, `memory_key`, `memory_shared`,
//! `raw_moka`, `raw_moka_sync` (moka's sync cache, which `MokaStore` uses), `disk_facade`,
//! `disk_store`, `raw_sled`, `redis_facade`, `redis_store`, `raw_redis`; the Redis reads start their own `redis-server`; `sizes` prints the size of the
//! read futures instead; `threads:memory_key,raw_moka` has two threads read 10,000 entries at
//! once), the second how many reads. Run it
//! with two counts and divide the difference of the totals by the difference of the counts
//! for the cost of one read without the set-up.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, MokaStore, RedisStore, SledStore, Store, Tier};
use aurelis_cache_benches::{runtime, value, CATEGORY, IDENTIFIER, VALUE_LEN};
use aurelis_redis_harness::RedisServer;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "memory_tuple".into());
    let n: usize = args.next().map_or(10_000, |n| n.parse().expect("a count"));
    let rt = runtime();
    let value = value(VALUE_LEN);
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = what.starts_with("memory") || what.starts_with("raw_moka");
    let redis = what.contains("redis");
    let memory = memory
        || (what.starts_with("interleave:") && what.contains("memory"))
        || what.starts_with("threads:");
    let server = redis.then(|| RedisServer::start().expect("redis-server"));
    let store: Arc<dyn Store> = if memory {
        Arc::new(MokaStore::builder().max_entries(20_000).build().expect("moka"))
    } else if let Some(server) = &server {
        let url = server.url();
        Arc::new(
            rt.block_on(RedisStore::builder().url(url.as_str()).timeout_ms(60_000).build())
                .expect("redis"),
        )
    } else {
        Arc::new(SledStore::builder().path(dir.path().join("s")).build().expect("sled"))
    };
    let ttl = if memory { Duration::from_secs(300) } else { Duration::from_secs(86_400) };
    let cache =
        Cache::builder().tier(Tier::new("t", store.clone()).ttl(ttl)).build().expect("cache");
    rt.block_on(cache.set((CATEGORY, IDENTIFIER), &value)).expect("set");
    let key = cache.keys().build_key(CATEGORY, IDENTIFIER, None).expect("key");
    let moka: moka::future::Cache<String, String> =
        moka::future::Cache::builder().max_capacity(20_000).time_to_live(ttl).build();
    rt.block_on(moka.insert(key.as_str().to_owned(), value.clone()));
    let moka_sync: moka::sync::Cache<String, String> =
        moka::sync::Cache::builder().max_capacity(20_000).time_to_live(ttl).build();
    moka_sync.insert(key.as_str().to_owned(), value.clone());
    let db = sled::Config::new().path(dir.path().join("raw")).open().expect("sled");
    db.insert(key.as_str().as_bytes(), value.as_bytes()).expect("insert");
    let mut checked = value.as_bytes().to_vec();
    checked.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(value.as_bytes()).to_le_bytes());
    // Under the facade's key, in a tree of its own (as `benches/disk.rs` does): sled's lookup
    // costs more for a longer key, so the peer reads the same key as the facade.
    let checked_tree = db.open_tree("checksummed").expect("tree");
    checked_tree.insert(key.as_str().as_bytes(), checked).expect("insert");
    let conn = server.as_ref().map(|server| {
        let client = redis::Client::open(server.url().as_str()).expect("client");
        // Long time limits: everything is slow under valgrind.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(60)))
            .set_response_timeout(Some(Duration::from_secs(60)));
        let conn = rt
            .block_on(client.get_multiplexed_async_connection_with_config(&config))
            .expect("connection");
        let mut set = redis::cmd("SET");
        set.arg("raw").arg(&value);
        rt.block_on(set.query_async::<()>(&mut conn.clone())).expect("SET");
        conn
    });
    if let Some(ways) = what.strip_prefix("threads:") {
        // `threads:a,b N`: two threads read 10,000 entries at once (pseudo-random keys, as
        // the `memory_throughput` bench), `N` reads each per turn; the ways take 20 turns
        // each, alternating, so that they share the machine's changes of speed.
        let ways: Vec<String> = ways.split(',').map(str::to_owned).collect();
        threads(&rt, &cache, &moka, &value, &ways, n);
        return;
    }
    if what == "sizes" {
        // The size of the futures a caller holds across a read (their moves show up as
        // `memcpy` in a profile).
        let get = cache.get::<String>((CATEGORY, IDENTIFIER));
        let get_key = cache.get::<String>(&key);
        let shared = cache.get_shared::<String>(&key);
        let raw = moka.get(key.as_str());
        println!("Cache::get (tuple)  {} bytes", std::mem::size_of_val(&get));
        println!("Cache::get (&Key)   {} bytes", std::mem::size_of_val(&get_key));
        println!("Cache::get_shared   {} bytes", std::mem::size_of_val(&shared));
        println!("moka future get     {} bytes", std::mem::size_of_val(&raw));
        return;
    }
    // One read of `way`, through `one` (the function callgrind counts).
    let read = |way: &str| {
        one(
            &rt,
            way,
            &cache,
            &key,
            &store,
            (&moka, &moka_sync),
            (&db, &checked_tree),
            conn.as_ref(),
        )
    };
    if let Some(ways) = what.strip_prefix("interleave:") {
        // `interleave:a,b,...`: the reads take turns in blocks of 1000, `n` reads each; the
        // wall time per read of each, and its ratio to the first.
        let ways: Vec<&str> = ways.split(',').collect();
        let mut total = vec![std::time::Duration::ZERO; ways.len()];
        for _ in 0..n.div_ceil(1000) {
            for (way, sum) in ways.iter().zip(&mut total) {
                let started = std::time::Instant::now();
                for _ in 0..1000 {
                    read(way);
                }
                *sum += started.elapsed();
            }
        }
        for (way, sum) in ways.iter().zip(&total) {
            let per = sum.as_nanos() as f64 / (n.div_ceil(1000) * 1000) as f64;
            println!(
                "{way:<22} {per:8.1} ns per read, {:.3}x",
                sum.as_secs_f64() / total[0].as_secs_f64()
            );
        }
        return;
    }
    for _ in 0..n {
        read(&what);
    }
}

/// The `threads:` mode: wall time per read of each way, two threads reading at once.
fn threads(
    rt: &tokio::runtime::Runtime,
    cache: &Cache,
    moka: &moka::future::Cache<String, String>,
    value: &str,
    ways: &[String],
    n: usize,
) {
    const ENTRIES: usize = 10_000;
    let keys: Arc<Vec<aurelis_cache::Key>> = Arc::new(
        (0..ENTRIES)
            .map(|i| cache.keys().build_key(CATEGORY, &format!("item-{i}"), None).unwrap())
            .collect(),
    );
    rt.block_on(async {
        for key in keys.iter() {
            cache.set(key, &value.to_owned()).await.unwrap();
            let _: Option<String> = cache.get(key).await.unwrap();
            moka.insert(key.as_str().to_owned(), value.to_owned()).await;
        }
    });
    let mut total = vec![std::time::Duration::ZERO; ways.len()];
    for _ in 0..20 {
        for (way, sum) in ways.iter().zip(&mut total) {
            let barrier = Arc::new(std::sync::Barrier::new(3));
            let handles: Vec<_> = (0..2u64)
                .map(|t| {
                    let (cache, moka, keys) = (cache.clone(), moka.clone(), keys.clone());
                    let (way, barrier) = (way.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                        barrier.wait();
                        for _ in 0..n {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let key = &keys[(x % ENTRIES as u64) as usize];
                            match way.as_str() {
                                "memory_key" => {
                                    let v: Option<String> = rt.block_on(cache.get(key)).unwrap();
                                    black_box(v.unwrap());
                                }
                                "raw_moka" => {
                                    black_box(rt.block_on(moka.get(key.as_str())).unwrap());
                                }
                                other => panic!("unknown way {other} (memory_key, raw_moka)"),
                            }
                        }
                    })
                })
                .collect();
            barrier.wait();
            let started = std::time::Instant::now();
            for h in handles {
                h.join().unwrap();
            }
            *sum += started.elapsed();
        }
    }
    for (way, sum) in ways.iter().zip(&total) {
        let per = sum.as_nanos() as f64 / (20 * n) as f64;
        println!(
            "{way:<12} {per:8.1} ns per read (two threads), {:.3}x the time of the first",
            sum.as_secs_f64() / total[0].as_secs_f64()
        );
    }
}

/// One read, on the runtime (callgrind: `--toggle-collect='hit_profile::one'` counts only
/// these calls, not the set-up or the stores' background threads).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn one(
    rt: &tokio::runtime::Runtime,
    what: &str,
    cache: &Cache,
    key: &aurelis_cache::Key,
    store: &Arc<dyn Store>,
    (moka, moka_sync): (&moka::future::Cache<String, String>, &moka::sync::Cache<String, String>),
    (db, checked_tree): (&sled::Db, &sled::Tree),
    conn: Option<&redis::aio::MultiplexedConnection>,
) {
    rt.block_on(async {
        match what {
            "memory_tuple" | "disk_facade" | "redis_facade" => {
                let v: Option<String> =
                    cache.get((black_box(CATEGORY), black_box(IDENTIFIER))).await.unwrap();
                black_box(v.unwrap());
            }
            "memory_key" | "disk_key" => {
                let v: Option<String> = cache.get(black_box(key)).await.unwrap();
                black_box(v.unwrap());
            }
            "memory_shared" => {
                let v = cache.get_shared::<String>(black_box(key)).await.unwrap();
                black_box(v.unwrap());
            }
            "raw_moka" => {
                black_box(moka.get(black_box(key.as_str())).await.unwrap());
            }
            "raw_moka_sync" => {
                black_box(moka_sync.get(black_box(key.as_str())).unwrap());
            }
            "disk_store" | "redis_store" => {
                black_box(store.get(black_box(key.as_str())).await.unwrap().unwrap());
            }
            "raw_sled_checksummed" => {
                let v = checked_tree.get(black_box(key.as_str()).as_bytes()).unwrap().unwrap();
                let (payload, sum) = v.split_at(v.len() - 8);
                let sum = u64::from_le_bytes(sum.try_into().unwrap());
                assert_eq!(xxhash_rust::xxh3::xxh3_64(payload), sum, "checksum");
                black_box(std::str::from_utf8(payload).unwrap().to_owned());
            }
            "raw_sled" => {
                let v = db.get(black_box(key.as_str()).as_bytes()).unwrap().unwrap();
                black_box(std::str::from_utf8(&v).unwrap().to_owned());
            }
            "raw_redis" => {
                let mut conn = conn.expect("a connection").clone();
                let hit: Option<String> =
                    redis::cmd("GET").arg("raw").query_async(&mut conn).await.expect("GET");
                black_box(hit.expect("hit"));
            }
            "nothing" => {}
            other => panic!("unknown read {other}"),
        }
    });
}
