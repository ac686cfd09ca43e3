//! The main job on embedded defaults (memory + disk tiers, no server): a simulated slow model
//! behind the cache, a stream of repeated and new prompts, hits and misses per tier, latency
//! with and without the cache, and the stats report.
//!
//! ```text
//! cargo xtask demo                 # or: cargo run --release -p aurelis-cache --example llm_demo
//! cargo xtask demo -- --reset      # start from an empty disk tier
//! cargo xtask demo -- --json       # also print the full JSON performance report
//! ```
//!
//! The model sits behind a `ModelResponseCache` with a price table: the report at the end
//! shows the tokens, money and model time the cache saved per model. It first warms the
//! popular prompts (with a progress bar), then serves the stream, and prints the monitor's
//! per-tier table and the cost report. Run it twice: the second run starts with
//! an empty memory tier but a warm disk tier, so the warm-up finds every popular prompt
//! already cached and the repeated prompts are served from disk (and written back to memory)
//! instead of the model.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache::core::stats::Histogram;
use aurelis_cache::llm::{
    Message, ModelRequest, ModelResponse, ModelResponseCache, Price, PriceTable, Usage,
};
use aurelis_cache::{Cache, CacheConfig, CacheMonitor};
use futures::StreamExt;

/// A model that takes `latency` per call, counts its calls, and answers deterministically.
struct SlowModel {
    latency: Duration,
    calls: AtomicU64,
}

impl SlowModel {
    async fn complete(&self, request: &ModelRequest) -> std::io::Result<ModelResponse> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        let prompt = request.messages.last().map(Message::text).unwrap_or_default();
        let words = prompt.split_whitespace().count() as u64;
        let temperature = request.temperature.unwrap_or(1.0);
        let mut answer = ModelResponse::success(
            request.model.clone(),
            format!("[{} @ t={temperature}] An answer to: {prompt}", request.model),
        )
        .usage(Usage::new(words * 4 / 3 + 40, 256));
        answer.provider_latency = self.latency;
        Ok(answer)
    }
}

struct Args {
    requests: usize,
    concurrency: usize,
    latency_ms: u64,
    data_dir: PathBuf,
    reset: bool,
    json: bool,
    warm: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 400,
        concurrency: 8,
        latency_ms: 120,
        data_dir: PathBuf::from("aurelis-demo-data"),
        reset: false,
        json: false,
        warm: true,
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
            "--json" => args.json = true,
            "--no-warm" => args.warm = false,
            "-h" | "--help" => {
                println!(
                    "llm_demo [--requests N] [--concurrency N] [--latency-ms MS] [--data-dir DIR] [--reset] [--no-warm] [--json]"
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

/// The popular prompts.
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

/// The models asked.
const MODELS: [&str; 2] = ["gpt-4o", "gpt-4o-mini"];

/// One chat request.
fn request(model: &str, prompt: &str, temperature: f64) -> ModelRequest {
    ModelRequest::new(model)
        .system("You are a concise technical assistant.")
        .message(Message::user(prompt))
        .temperature(temperature)
        .max_tokens(256)
}

/// List prices per million input / output tokens (USD).
fn prices() -> PriceTable {
    PriceTable::new()
        .price("gpt-4o", Price::per_million(2.50, 10.00))
        .price("gpt-4o-mini", Price::per_million(0.15, 0.60))
}

/// A deterministic stream of prompts: a few popular ones asked again and again (Zipf-like),
/// and a tail of one-off prompts.
fn prompt_stream(n: usize) -> Vec<(String, String, f64)> {
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
            let model = MODELS[(r % 5 == 0) as usize];
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

/// Loads every popular prompt of every model before the traffic, showing a progress bar.
async fn warm_popular(
    models: &ModelResponseCache,
    model: &Arc<SlowModel>,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let bar = indicatif::ProgressBar::new((TOPICS.len() * MODELS.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("warming  {bar:40} {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let requests: Vec<ModelRequest> =
        MODELS.iter().flat_map(|m| TOPICS.iter().map(move |p| request(m, p, 0.0))).collect();
    let mut loaded = 0;
    let mut present = 0;
    let mut answers = futures::stream::iter(requests)
        .map(|r| {
            let (models, model) = (models.clone(), model.clone());
            async move { models.get_or_call(&r, || model.complete(&r)).await }
        })
        .buffer_unordered(concurrency);
    while let Some(answer) = answers.next().await {
        if answer?.from_cache {
            present += 1;
        } else {
            loaded += 1;
        }
        bar.inc(1);
        bar.set_message(format!("{loaded} loaded, {present} already cached"));
    }
    bar.finish_and_clear();
    println!(
        "warm-up: {loaded} popular prompts loaded, {present} already cached ({:.2?})\n",
        bar.elapsed()
    );
    Ok(())
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
    let models = ModelResponseCache::builder(cache.clone()).prices(prices()).build()?;

    println!(
        "Aurelis Cache demo: layers {:?}, disk tier at {}",
        cache.tier_names(),
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
        model.complete(&request(&m, &p, t)).await?;
        baseline.record(started.elapsed());
    }
    model.calls.store(0, Ordering::Relaxed);

    if args.warm {
        warm_popular(&models, &model, args.concurrency).await?;
        model.calls.store(0, Ordering::Relaxed);
    }

    let with_cache = Arc::new(Histogram::new());
    let prompts = prompt_stream(args.requests);
    let started = Instant::now();
    for chunk in prompts.chunks(args.concurrency) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(m, p, t)| {
                let models = models.clone();
                let model = model.clone();
                let hist = with_cache.clone();
                tokio::spawn(async move {
                    let request = request(&m, &p, t);
                    let begun = Instant::now();
                    let response =
                        models.get_or_call(&request, || model.complete(&request)).await?;
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

    let monitor = CacheMonitor::new(cache.clone()).with_model_cache(&models);
    let report = cache.stats_report().await;
    let base = baseline.summary();
    let cached = with_cache.summary();
    println!("requests            {:>8}", args.requests);
    println!(
        "model calls         {:>8}   (without the cache: {})",
        model.calls.load(Ordering::Relaxed),
        args.requests
    );
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
    let performance = monitor.performance_report().await;
    print!("{performance}");
    if warm_start {
        let disk_hits = report.tiers.iter().find(|t| t.name == "disk").map_or(0, |t| t.hits);
        println!("\nthe disk tier served {disk_hits} answers left by an earlier run");
    } else {
        println!("\nrun it again: the disk tier keeps these answers across restarts");
    }
    if args.json {
        println!("\nperformance report (JSON):\n{}", performance.to_json_pretty());
    } else {
        println!("(--json prints the full report)");
    }
    Ok(())
}
