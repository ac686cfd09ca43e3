//! Lookup latency of the similarity index with 1k, 10k and 100k stored prompts, against a
//! linear difflib-style scan (rapidfuzz ratio over every stored prompt) in the same run,
//! and memory per indexed prompt.
//!
//! ```text
//! cargo run --release -p aurelis-cache-similarity --example similarity_speed [-- SIZES...]
//! ```
//!
//! Prompts are synthesised from a vocabulary with a fixed seed, so every run stores the same
//! prompts. Queries are a mix of stored prompts with a typo or a greeting (hits), one-word
//! edits (traps the guard refuses) and new prompts (misses).

use std::time::{Duration, Instant};

use aurelis_cache_similarity::{Scope, SimilarityCache};

use aurelis_cache_similarity::synthetic::{prompt, query, Lcg};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident * 4096)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        if args.is_empty() {
            vec![1_000, 10_000, 100_000]
        } else {
            args
        }
    };
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>12} {:>12}",
        "prompts",
        "index p50",
        "index p99",
        "index max",
        "scan p50",
        "scan p99",
        "hit rate",
        "B/prompt",
        "RSS B/prompt"
    );
    let scope = Scope::for_model("bench-model");
    for &n in &sizes {
        let mut rng = Lcg::new(0x5eed_0000 + n as u64);
        let rss_before = rss_bytes();
        let cache = SimilarityCache::<u32>::builder().build().expect("defaults are valid");
        let mut stored = Vec::with_capacity(n);
        while stored.len() < n {
            let p = prompt(&mut rng);
            cache.insert(&scope, &p, stored.len() as u32, None).await.expect("insert");
            stored.push(p);
        }
        let rss_after = rss_bytes();
        let per_prompt = cache.approx_index_bytes() / cache.len().max(1);
        let rss_per_prompt = match (rss_before, rss_after) {
            (Some(a), Some(b)) => format!("{}", b.saturating_sub(a) / n as u64),
            _ => "-".to_string(),
        };

        let queries: Vec<String> = (0..2_000).map(|_| query(&mut rng, &stored)).collect();
        for q in queries.iter().take(100) {
            cache.lookup(&scope, q).await; // warm up
        }
        let mut times = Vec::with_capacity(queries.len());
        let mut hits = 0;
        for q in &queries {
            let t = Instant::now();
            let found = cache.lookup(&scope, q).await;
            times.push(t.elapsed());
            hits += usize::from(found.hit.is_some());
        }
        times.sort();

        // The reference's approach: lowercase, then a ratio against every stored prompt.
        let lowered: Vec<String> = stored.iter().map(|s| s.to_lowercase()).collect();
        let scan_queries = (20_000 / n.max(1)).clamp(20, 500);
        let mut scan = Vec::with_capacity(scan_queries);
        for q in queries.iter().take(scan_queries) {
            let t = Instant::now();
            let q = q.to_lowercase();
            let mut best = (0.0f64, usize::MAX);
            for (i, s) in lowered.iter().enumerate() {
                let r = rapidfuzz::fuzz::ratio(q.chars(), s.chars());
                if r > best.0 {
                    best = (r, i);
                }
            }
            std::hint::black_box(best);
            scan.push(t.elapsed());
        }
        scan.sort();
        println!(
            "{:>8} {:>12?} {:>12?} {:>12?} {:>14?} {:>14?} {:>9.1}% {:>12} {:>12}",
            n,
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            times[times.len() - 1],
            percentile(&scan, 0.50),
            percentile(&scan, 0.99),
            100.0 * hits as f64 / queries.len() as f64,
            per_prompt,
            rss_per_prompt
        );
    }
}
