//! The `redis_hit` ratios measured so that they do not depend on when each row ran (not a
//! criterion timing): the measurement the Redis hit target is judged on.
//!
//! Criterion measures the rows of a group one after another, several seconds each. On a
//! virtual machine the latency of a loopback round trip can change between those seconds
//! (idle virtual CPUs wake up slowly), which moves a ratio such as facade / raw GET by more
//! than the facade's own cost. Here the three ways of reading one 1 KiB value, a raw `GET` on
//! a held multiplexed connection, `RedisStore::get` and the facade's `get`, take turns in
//! rounds of 200 reads (140 measured rounds after one warm-up round, a few milliseconds per
//! turn), on the same runtime as the criterion benches, so that they share every change of
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
use std::time::{Duration, Instant};

use aurelis_cache::{Cache, RedisStore, Store, Tier};
use aurelis_cache_benches::{
    json_string, plain_run, runtime, value, write_output, PlainRun, CATEGORY, IDENTIFIER, VALUE_LEN,
};
use aurelis_redis_harness::RedisServer;

/// Reads per round and per way of reading.
const READS: u32 = 200;
/// Rounds, the first of which only warms up.
const ROUNDS: u32 = 141;
/// The raw row's key.
const RAW_KEY: &str = "raw:item-42";
/// The ways of reading, in the order they take turns: the name in the JSON file (the
/// `redis_hit` criterion function of the same read) and the label printed on stderr.
const WAYS: [(&str, &str); 3] = [
    ("raw_redis_held_conn", "raw GET, held connection"),
    ("redis_store", "RedisStore::get"),
    ("aurelis_facade", "facade get"),
];

/// Nanoseconds this thread has spent on a CPU, when the kernel tells.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn main() {
    let full = match plain_run("redis_interleaved") {
        PlainRun::Full => true,
        PlainRun::Quick => false,
        PlainRun::Skip => return,
    };
    let (reads, rounds) = if full { (READS, ROUNDS) } else { (10, 2) };
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

        let mut wall_ns = [0u128; 3];
        let mut cpu_ns = [Some(0u64); 3];
        let mut measured = 0u64;
        for round in 0..rounds {
            for (way, (wall, cpu)) in wall_ns.iter_mut().zip(cpu_ns.iter_mut()).enumerate() {
                let cpu_before = thread_cpu_ns();
                let started = Instant::now();
                for _ in 0..reads {
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
                let elapsed = started.elapsed();
                if round == 0 {
                    continue;
                }
                *wall += elapsed.as_nanos();
                *cpu = match (*cpu, cpu_before, thread_cpu_ns()) {
                    (Some(sum), Some(before), Some(after)) => Some(sum + (after - before)),
                    _ => None,
                };
            }
            if round > 0 {
                measured += u64::from(reads);
            }
        }
        let per_read = |ns: f64| ns / measured as f64 / 1_000.0;
        eprintln!("redis_interleaved: {measured} reads each, in {} rounds", rounds - 1);
        let mut rows = Vec::new();
        for (i, (name, label)) in WAYS.iter().enumerate() {
            let wall_us = per_read(wall_ns[i] as f64);
            let cpu_us = cpu_ns[i].map(|ns| per_read(ns as f64));
            let cpu = cpu_us
                .map(|us| format!("{us:6.2} µs CPU"))
                .unwrap_or_else(|| "CPU time unknown".into());
            eprintln!(
                "redis_interleaved: {label:<26} {wall_us:7.2} µs per read ({:.3}× raw), {cpu}",
                wall_ns[i] as f64 / wall_ns[0] as f64,
            );
            let cpu_us = cpu_us.map_or_else(|| "null".to_owned(), |us| format!("{us:.4}"));
            rows.push(format!(
                "{{\"name\":{},\"us_per_read\":{wall_us:.4},\"cpu_us_per_read\":{cpu_us}}}",
                json_string(name)
            ));
        }
        if full {
            let json = format!(
                "{{\"reads_per_way\":{measured},\"reads_per_turn\":{reads},\"rows\":[\n{}\n]}}\n",
                rows.join(",\n")
            );
            write_output("redis_interleaved", "redis_interleaved.json", &json);
        }
    });
    drop(rt);
    drop(server);
}
