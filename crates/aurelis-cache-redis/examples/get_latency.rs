//! Sequential loopback `GET` of a 1 KiB value: a raw held multiplexed connection, a deadpool
//! checkout per operation, and `RedisStore::get`. A quick check that the store does not pay a
//! checkout round trip per operation (not a benchmark: see `benches/` for that).
//!
//! `cargo run --release -p aurelis-cache-redis --example get_latency`

use std::time::{Duration, Instant};

use aurelis_cache_core::Store;
use aurelis_cache_redis::RedisStore;
use aurelis_redis_harness::RedisServer;
use deadpool_redis::redis::{self, AsyncCommands};

const ROUNDS: usize = 5;
const OPS: usize = 5_000;

fn report(name: &str, samples: &mut [Duration]) -> f64 {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / samples.len() as f64;
    let at = |q: f64| samples[(samples.len() as f64 * q) as usize].as_secs_f64() * 1e6;
    println!("{name:<26} mean {mean:7.1} us   p50 {:7.1} us   p90 {:7.1} us", at(0.5), at(0.9));
    at(0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RedisServer::start()?;
    let value = vec![0xabu8; 1024];

    let client = redis::Client::open(server.url())?;
    let mut raw = client.get_multiplexed_async_connection().await?;
    let _: () = raw.set("lat:k", value.as_slice()).await?;

    let pool = deadpool_redis::Config::from_url(server.url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let store = RedisStore::builder().url(server.url()).build().await?;

    // Interleaved in a rotating order, so load from other processes and any order effect
    // hit the three alike.
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..=ROUNDS {
        for i in 0..OPS {
            for k in 0..3 {
                let which = (i + k) % 3;
                let t = Instant::now();
                let v = match which {
                    0 => raw.get::<_, Option<Vec<u8>>>("lat:k").await?,
                    1 => {
                        let mut c = pool.get().await?;
                        c.get::<_, Option<Vec<u8>>>("lat:k").await?
                    }
                    _ => store.get("lat:k").await?.map(|b| b.to_vec()),
                };
                let d = t.elapsed();
                assert_eq!(v.as_deref(), Some(value.as_slice()));
                if round > 0 {
                    samples[which].push(d);
                }
            }
        }
    }
    let [mut raw_t, mut pool_t, mut store_t] = samples;
    let raw_mean = report("held connection GET", &mut raw_t);
    let pool_mean = report("deadpool checkout + GET", &mut pool_t);
    let store_mean = report("RedisStore::get", &mut store_t);
    println!(
        "p50 ratios: store / held = {:.3}   checkout / held = {:.3}",
        store_mean / raw_mean,
        pool_mean / raw_mean
    );
    Ok(())
}
