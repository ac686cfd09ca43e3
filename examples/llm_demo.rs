//! The main job on embedded defaults (memory + disk tiers, no server): a simulated slow model
//! behind the cache, a stream of repeated and new prompts, hits and misses per tier, latency
//! with and without the cache, and the stats report.
//!
//! ```text
//! cargo xtask demo                 # or: cargo run --release -p aurelis-cache --example llm_demo
//! cargo xtask demo -- --reset      # start from an empty disk tier
//! ```
//!
//! Run it twice: the second run starts with an empty memory tier but a warm disk tier, so the
//! repeated prompts are served from disk (and written back to memory) instead of the model.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache::core::stats::Histogram;
use aurelis_cache::{Cache, CacheConfig, Params, SetOptions};
use serde::{Deserialize, Serialize};

/// What the simulated model returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModelResponse {
    model: String,
    text: String,
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// A model that takes `latency` per call, counts its calls, and answers deterministically.
struct SlowModel {
    latency: Duration,
    calls: AtomicU64,
}

impl SlowModel {
    async fn complete(
        &self,
        model: &str,
        prompt: &str,
        temperature: f64,
    ) -> std::io::Result<ModelResponse> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        let words = prompt.split_whitespace().count() as u32;
        Ok(ModelResponse {
            model: model.to_string(),
            text: format!("[{model} @ t={temperature}] An answer to: {prompt}"),
            prompt_tokens: words * 4 / 3 + 1,
            completion_tokens: 64,
        })
    }
}

struct Args {
    requests: usize,
    concurrency: usize,
    latency_ms: u64,
    data_dir: PathBuf,
    reset: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 400,
        concurrency: 8,
        latency_ms: 120,
        data_dir: PathBuf::from("aurelis-demo-data"),
        reset: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--requests" => {
                args.requests =
                    value("--requests")?.parse().map_err(|e| format!("--requests: {e}"))?
            }
            "--concurrency" => {
                args.concurrency =
                    value("--concurrency")?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--latency-ms" => {
                args.latency_ms =
                    value("--latency-ms")?.parse().map_err(|e| format!("--latency-ms: {e}"))?
            }
            "--data-dir" => args.data_dir = PathBuf::from(value("--data-dir")?),
            "--reset" => args.reset = true,
            "-h" | "--help" => {
                println!(
                    "llm_demo [--requests N] [--concurrency N] [--latency-ms MS] [--data-dir DIR] [--reset]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.concurrency == 0 || args.requests == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    Ok(args)
}

/// A deterministic stream of prompts: a few popular ones asked again and again (Zipf-like),
/// and a tail of one-off prompts.
fn prompt_stream(n: usize) -> Vec<(String, String, f64)> {
    const TOPICS: [&str; 12] = [
        "What is Rust's ownership model?",
        "Explain async/await in Rust.",
        "How does a B-tree work?",
        "Summarise the CAP theorem.",
        "What is a bloom filter?",
        "How do I reverse a linked list?",
        "What does Redis pub/sub guarantee?",
        "Explain consistent hashing.",
        "What is a write-ahead log?",
        "Compare LRU and TinyLFU eviction.",
        "What is backpressure?",
        "How do circuit breakers work?",
    ];
    let models = ["gpt-4o", "gpt-4o-mini"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let r = next();
            let model = models[(r % 5 == 0) as usize];
            if r % 100 < 80 {
                // Popular prompts: index skewed towards the first ones.
                let idx = ((r >> 8) % 1000) as f64 / 1000.0;
                let topic = TOPICS[((idx * idx) * TOPICS.len() as f64) as usize];
                (model.to_string(), topic.to_string(), 0.0)
            } else {
                (
                    model.to_string(),
                    format!("One-off question number {i}: what is {}?", r % 997),
                    0.7,
                )
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    if args.reset && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)?;
    }
    let warm_start = args.data_dir.exists();

    // Embedded defaults (memory 300 s / 1000 entries over disk 86400 s), disk under data_dir;
    // AURELIS_CACHE__* environment variables still override.
    let mut config = CacheConfig::default();
    config.disk.store.path = Some(args.data_dir.clone());
    let config = config.with_overrides(std::env::vars())?;
    let cache: Cache = config.build().await?;
    let model = Arc::new(SlowModel {
        latency: Duration::from_millis(args.latency_ms),
        calls: AtomicU64::new(0),
    });

    println!(
        "Aurelis Cache demo: layers {:?}, disk tier at {}",
        cache.layer_names(),
        args.data_dir.display()
    );
    println!(
        "{} — {} requests, {} at a time, simulated model latency {} ms\n",
        if warm_start {
            "warm start: the disk tier holds a previous run's answers"
        } else {
            "cold start"
        },
        args.requests,
        args.concurrency,
        args.latency_ms
    );

    // Baseline: the model alone, a few calls.
    let baseline = Histogram::new();
    for (m, p, t) in prompt_stream(5) {
        let started = Instant::now();
        model.complete(&m, &p, t).await?;
        baseline.record(started.elapsed());
    }
    model.calls.store(0, Ordering::Relaxed);

    let with_cache = Arc::new(Histogram::new());
    let prompts = prompt_stream(args.requests);
    let started = Instant::now();
    for chunk in prompts.chunks(args.concurrency) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(m, p, t)| {
                let cache = cache.clone();
                let model = model.clone();
                let hist = with_cache.clone();
                tokio::spawn(async move {
                    let params = Params::new().with("temperature", t).with("max_tokens", 256);
                    let key = cache.keys().build_model_key(&m, &p, &params)?;
                    let begun = Instant::now();
                    let response: ModelResponse = cache
                        .get_or_compute_key(
                            &key,
                            SetOptions::new().tag(format!("model:{m}")),
                            || async { model.complete(&m, &p, t).await },
                        )
                        .await?;
                    hist.record(begun.elapsed());
                    Ok::<_, aurelis_cache::Error>(response)
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
    }
    let elapsed = started.elapsed();

    let report = cache.stats_report().await;
    let base = baseline.summary();
    let cached = with_cache.summary();
    println!("requests            {:>8}", args.requests);
    println!(
        "model calls         {:>8}   (without the cache: {})",
        model.calls.load(Ordering::Relaxed),
        args.requests
    );
    println!("coalesced waiters   {:>8}", report.overall.coalesced_waiters);
    println!("hit rate            {:>7.1}%", report.overall.hit_rate * 100.0);
    println!(
        "wall time           {:>8.2?}  (without the cache, sequentially: ~{:.1?})",
        elapsed,
        Duration::from_secs_f64(base.mean_us / 1e6 * args.requests as f64)
    );
    println!();
    println!("latency (us)        {:>10} {:>10} {:>10}", "p50", "p90", "p99");
    println!(
        "  model alone       {:>10.0} {:>10.0} {:>10.0}",
        base.p50_us, base.p90_us, base.p99_us
    );
    println!(
        "  through the cache {:>10.0} {:>10.0} {:>10.0}",
        cached.p50_us, cached.p90_us, cached.p99_us
    );
    println!();
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>11} {:>8} {:>10}",
        "tier", "hits", "misses", "writes", "write-backs", "entries", "bytes"
    );
    for t in &report.tiers {
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>11} {:>8} {:>10}",
            t.name,
            t.hits,
            t.misses,
            t.writes,
            t.writebacks,
            t.entries.map_or("?".into(), |v| v.to_string()),
            t.bytes.map_or("?".into(), |v| v.to_string()),
        );
    }
    if warm_start {
        let disk_hits = report.tiers.iter().find(|t| t.name == "disk").map_or(0, |t| t.hits);
        println!("\nthe disk tier served {disk_hits} answers left by an earlier run");
    } else {
        println!("\nrun it again: the disk tier keeps these answers across restarts");
    }
    println!("\nstats report (JSON):\n{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
