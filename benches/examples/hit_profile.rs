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
//! `raw_moka`, `disk_facade`, `disk_store`, `raw_sled`, `redis_facade`, `redis_store`,
//! `raw_redis`; the Redis reads start their own `redis-server`), the second how many reads. Run it
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
    let memory = what.starts_with("memory") || what == "raw_moka";
    let redis = what.contains("redis");
    let server = redis.then(|| RedisServer::start().expect("redis-server"));
    let store: Arc<dyn Store> = if memory {
        Arc::new(MokaStore::builder().max_entries(10_000).build().expect("moka"))
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
        moka::future::Cache::builder().max_capacity(10_000).time_to_live(ttl).build();
    rt.block_on(moka.insert(key.as_str().to_owned(), value.clone()));
    let db = sled::Config::new().path(dir.path().join("raw")).open().expect("sled");
    db.insert(key.as_str().as_bytes(), value.as_bytes()).expect("insert");
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
    for _ in 0..n {
        one(&rt, &what, &cache, &key, &store, &moka, &db, conn.as_ref());
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
    moka: &moka::future::Cache<String, String>,
    db: &sled::Db,
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
            "disk_store" | "redis_store" => {
                black_box(store.get(black_box(key.as_str())).await.unwrap().unwrap());
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
