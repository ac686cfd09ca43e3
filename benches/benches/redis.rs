//! Redis tier: hits through the facade over one `RedisStore` layer against the store alone, a
//! raw held multiplexed connection and the `cached` crate's async Redis store; a 100-key
//! `get_many` against 100 sequential gets and one raw `MGET`; a memory tier in front of Redis
//! against Redis alone.
//!
//! The benches start their own `redis-server` on a free port (aurelis-redis-harness), the
//! first time a Redis bench runs (a filter that leaves them all out starts nothing); a missing
//! `redis-server` is a panic with the harness's message. All clients run on the same tokio
//! runtime. Values are 1 KiB strings; every read returns an owned `String` (or the store's
//! bytes for the store rows).

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, Key, MokaStore, RedisStore, Store, Tier};
use aurelis_cache_benches::{criterion, runtime, value, CATEGORY, IDENTIFIER, VALUE_LEN};
use aurelis_redis_harness::RedisServer;
use cached::prelude::ConcurrentCachedAsync;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use redis::aio::MultiplexedConnection;

/// Keys read by the `redis_get_many_100` group.
const MANY: usize = 100;
/// The Redis tier's TTL cap (the default L2: 3,600 s).
const REDIS_TTL: Duration = Duration::from_secs(3_600);
/// The memory tier's TTL cap (300 s).
const MEMORY_TTL: Duration = Duration::from_secs(300);
/// The raw and `cached` rows' key (the facade's key is `aurelis:v1:bench:item-42`).
const RAW_KEY: &str = "raw:item-42";

/// Everything the Redis benches read, written once.
struct Fixture {
    /// Kept alive for the whole run; stopped on drop.
    _server: RedisServer,
    store: Arc<RedisStore>,
    /// One Redis layer.
    redis_only: Cache,
    /// A memory layer over the same Redis layer.
    memory_plus_redis: Cache,
    key: Key,
    conn: MultiplexedConnection,
    cached: cached::AsyncRedisCache<String, String>,
    many_keys: Vec<String>,
    raw_many_keys: Vec<String>,
}

impl Fixture {
    fn new(rt: &tokio::runtime::Runtime) -> Fixture {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("redis benches: {e}"));
        let url = server.url();
        let value = value(VALUE_LEN);
        rt.block_on(async {
            let store = Arc::new(
                RedisStore::builder().url(url.as_str()).build().await.expect("redis store"),
            );
            let redis_layer = || Tier::new("redis", store.clone() as Arc<dyn Store>).ttl(REDIS_TTL);
            let redis_only = Cache::builder().tier(redis_layer()).build().expect("cache");
            let memory = MokaStore::builder().max_entries(10_000).build().expect("moka store");
            let memory_plus_redis = Cache::builder()
                .tier(Tier::new("memory", Arc::new(memory)).ttl(MEMORY_TTL))
                .tier(redis_layer())
                .build()
                .expect("cache");
            // Written through the two-tier cache: Redis holds the entry and memory too.
            memory_plus_redis.set((CATEGORY, IDENTIFIER), &value).await.expect("set");
            let key = redis_only.keys().build_key(CATEGORY, IDENTIFIER, None).expect("key");

            let client = redis::Client::open(url.as_str()).expect("redis client");
            let mut conn = client.get_multiplexed_async_connection().await.expect("connection");
            redis::cmd("SET")
                .arg(RAW_KEY)
                .arg(&value)
                .query_async::<()>(&mut conn)
                .await
                .expect("SET");

            let cached = cached::AsyncRedisCache::<String, String>::builder("bench")
                .connection_string(&url)
                .ttl(REDIS_TTL)
                .build()
                .await
                .expect("cached AsyncRedisCache");
            cached.async_cache_set(RAW_KEY.to_owned(), value.clone()).await.expect("cached set");

            let mut many_keys = Vec::with_capacity(MANY);
            let mut raw_many_keys = Vec::with_capacity(MANY);
            for i in 0..MANY {
                let id = format!("many-{i:03}");
                redis_only.set((CATEGORY, &id), &value).await.expect("set");
                many_keys.push(
                    redis_only.keys().build_key(CATEGORY, &id, None).expect("key").into_string(),
                );
                let raw = format!("raw:{id}");
                redis::cmd("SET")
                    .arg(&raw)
                    .arg(&value)
                    .query_async::<()>(&mut conn)
                    .await
                    .expect("SET");
                raw_many_keys.push(raw);
            }

            // Every row reads what it should.
            assert_eq!(
                redis_only.get::<String>((CATEGORY, IDENTIFIER)).await.unwrap(),
                Some(value.clone())
            );
            assert_eq!(
                memory_plus_redis.get::<String>((CATEGORY, IDENTIFIER)).await.unwrap(),
                Some(value.clone())
            );
            assert!(store.get(key.as_str()).await.unwrap().is_some());
            let raw: Option<String> =
                redis::cmd("GET").arg(RAW_KEY).query_async(&mut conn).await.unwrap();
            assert_eq!(raw.as_ref(), Some(&value));
            assert_eq!(
                cached.async_cache_get(&RAW_KEY.to_owned()).await.unwrap(),
                Some(value.clone())
            );
            let refs: Vec<&str> = many_keys.iter().map(String::as_str).collect();
            assert!(store.get_many(&refs).await.unwrap().iter().all(Option::is_some));

            Fixture {
                _server: server,
                store,
                redis_only,
                memory_plus_redis,
                key,
                conn,
                cached,
                many_keys,
                raw_many_keys,
            }
        })
    }
}

fn redis_benches(c: &mut Criterion) {
    let rt = runtime();
    let fixture = OnceCell::new();
    let fx = || fixture.get_or_init(|| Fixture::new(&rt));

    let mut group = c.benchmark_group("redis_hit");
    group.bench_function("aurelis_facade", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            let hit: Option<String> =
                fx.redis_only.get((black_box(CATEGORY), black_box(IDENTIFIER))).await.unwrap();
            black_box(hit.unwrap())
        })
    });
    group.bench_function("redis_store", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            black_box(fx.store.get(black_box(fx.key.as_str())).await.unwrap().unwrap())
        })
    });
    group.bench_function("raw_redis_held_conn", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            let mut conn = fx.conn.clone();
            let hit: Option<String> =
                redis::cmd("GET").arg(black_box(RAW_KEY)).query_async(&mut conn).await.unwrap();
            black_box(hit.unwrap())
        })
    });
    group.bench_function("cached_crate_redis", |b| {
        let fx = fx();
        let key = RAW_KEY.to_owned();
        b.to_async(&rt).iter(|| async {
            black_box(fx.cached.async_cache_get(black_box(&key)).await.unwrap().unwrap())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("redis_get_many_100");
    // One iteration of `sequential_gets` is 100 round trips: flat sampling keeps the group
    // within its measurement time.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("redis_store_get_many", |b| {
        let fx = fx();
        let refs: Vec<&str> = fx.many_keys.iter().map(String::as_str).collect();
        b.to_async(&rt)
            .iter(|| async { black_box(fx.store.get_many(black_box(&refs)).await.unwrap()) })
    });
    group.bench_function("sequential_gets", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            let mut out = Vec::with_capacity(MANY);
            for key in &fx.many_keys {
                out.push(fx.store.get(black_box(key.as_str())).await.unwrap());
            }
            black_box(out)
        })
    });
    group.bench_function("raw_mget", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            let mut conn = fx.conn.clone();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(black_box(&fx.raw_many_keys))
                .query_async(&mut conn)
                .await
                .unwrap();
            black_box(values)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("redis_memory_front");
    group.bench_function("memory_plus_redis", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            let hit: Option<String> = fx
                .memory_plus_redis
                .get((black_box(CATEGORY), black_box(IDENTIFIER)))
                .await
                .unwrap();
            black_box(hit.unwrap())
        })
    });
    group.bench_function("redis_only", |b| {
        let fx = fx();
        b.to_async(&rt).iter(|| async {
            let hit: Option<String> =
                fx.redis_only.get((black_box(CATEGORY), black_box(IDENTIFIER))).await.unwrap();
            black_box(hit.unwrap())
        })
    });
    group.finish();

    // The connections close inside the runtime, before the server stops.
    if let Some(fixture) = fixture.into_inner() {
        rt.block_on(async move { drop(fixture) });
    }
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = redis_benches
}
criterion_main!(benches);
