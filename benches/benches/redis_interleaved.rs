//! The `redis_hit` ratios measured so that they do not depend on when each row ran (not a
//! criterion timing): the measurement the Redis hit target is judged on.
//!
//! Criterion measures the rows of a group one after another, several seconds each. On a
//! virtual machine the latency of a loopback round trip can change between those seconds
//! (idle virtual CPUs wake up slowly), which moves a ratio such as facade / raw GET by more
//! than the facade's own cost. Here the three ways of reading one 1 KiB value, a raw `GET` on
//! a held multiplexed connection, `RedisStore::get` and the facade's `get`, take turns in
//! rounds of 200 reads (140 measured rounds after one warm-up round, a few milliseconds per
//! turn, each round started by the next way), on the same runtime as the criterion benches, so that they share every change of
//! conditions. It prints, for each, the wall time per read, the ratio to the raw `GET`, and
//! the bench thread's CPU time per read (from `/proc/thread-self/schedstat`, when present).
//!
//! A full run also writes `<target dir>/aurelis-bench/redis_interleaved.json` (see
//! `output_dir` in the benches' lib), which `cargo xtask bench` puts in docs/performance.md:
//! `{"reads_per_way":N,"reads_per_turn":200,"rows":[{"name":..,"us_per_read":..,
//! "cpu_us_per_read":..}]}`, one row per way named like its `redis_hit` criterion function,
//! `cpu_us_per_read` `null` when the kernel does not tell. The quick `--test` run writes nothing.
//!
//! Run it alone with `cargo bench -p aurelis-cache-benches --bench redis_interleaved`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, RedisStore, Store, Tier};
use aurelis_cache_benches::{
    interleave, interleaved_turns, runtime, value, Turns, Way, CATEGORY, IDENTIFIER, VALUE_LEN,
};
use aurelis_redis_harness::RedisServer;

/// Reads per turn, and rounds (the first of which only warms up).
const TURNS: Turns = Turns { reads: 200, rounds: 141 };
/// The raw row's key.
const RAW_KEY: &str = "raw:item-42";
/// The ways of reading (named like their `redis_hit` criterion functions); the first is the
/// one the others are compared with.
const WAYS: [Way; 3] = [
    ("raw_redis_held_conn", "raw GET, held connection"),
    ("redis_store", "RedisStore::get"),
    ("aurelis_facade", "facade get"),
];

fn main() {
    let Some((turns, file)) =
        interleaved_turns("redis_interleaved", TURNS, "redis_interleaved.json")
    else {
        return;
    };
    let server = RedisServer::start().unwrap_or_else(|e| panic!("redis_interleaved: {e}"));
    let url = server.url();
    let value = value(VALUE_LEN);
    let rt = runtime();
    rt.block_on(async {
        let store = Arc::new(RedisStore::builder().url(url.as_str()).build().await.expect("store"));
        let cache = Cache::builder()
            .tier(
                Tier::new("redis", store.clone() as Arc<dyn Store>).ttl(Duration::from_secs(3_600)),
            )
            .build()
            .expect("cache");
        cache.set((CATEGORY, IDENTIFIER), &value).await.expect("set");
        let key = cache.keys().build_key(CATEGORY, IDENTIFIER, None).expect("key");
        let client = redis::Client::open(url.as_str()).expect("client");
        let conn = client.get_multiplexed_async_connection().await.expect("connection");
        redis::cmd("SET")
            .arg(RAW_KEY)
            .arg(&value)
            .query_async::<()>(&mut conn.clone())
            .await
            .expect("SET");

        interleave("redis_interleaved", file, &WAYS, turns, |way| {
            let (conn, store, cache, key) = (&conn, &store, &cache, &key);
            async move {
                match way {
                    0 => {
                        let mut conn = conn.clone();
                        let hit: Option<String> = redis::cmd("GET")
                            .arg(RAW_KEY)
                            .query_async(&mut conn)
                            .await
                            .expect("GET");
                        black_box(hit.expect("hit"));
                    }
                    1 => {
                        black_box(store.get(key.as_str()).await.expect("get").expect("hit"));
                    }
                    _ => {
                        let hit: Option<String> =
                            cache.get((CATEGORY, IDENTIFIER)).await.expect("get");
                        black_box(hit.expect("hit"));
                    }
                }
            }
        })
        .await;
    });
    drop(rt);
    drop(server);
}
