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

/// A seeded generator (64-bit LCG), so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.next() % v.len()]
    }
}

const OPENERS: &[&str] = &[
    "How do I",
    "Can I",
    "Where can I",
    "When can I",
    "Why can't I",
    "Is it possible to",
    "What do I need to",
    "Who do I contact to",
    "How long does it take to",
    "How much does it cost to",
];
const VERBS: &[&str] = &[
    "cancel",
    "renew",
    "update",
    "change",
    "transfer",
    "close",
    "open",
    "book",
    "pay for",
    "order",
    "return",
    "upgrade",
    "downgrade",
    "pause",
    "resume",
    "report",
    "replace",
    "register",
    "claim",
    "split",
    "share",
    "move",
    "freeze",
    "unlock",
    "reset",
    "extend",
    "reduce",
    "increase",
    "check",
    "track",
];
const ADJECTIVES: &[&str] = &[
    "",
    "",
    "",
    "new",
    "old",
    "second",
    "joint",
    "business",
    "student",
    "family",
    "annual",
    "monthly",
    "premium",
    "basic",
    "international",
    "local",
    "shared",
    "backup",
    "spare",
    "temporary",
];
const NOUNS: &[&str] = &[
    "subscription",
    "gym membership",
    "parking permit",
    "broadband contract",
    "savings account",
    "table reservation",
    "energy tariff",
    "hotel booking",
    "debit card",
    "phone plan",
    "council tax bill",
    "library card",
    "car insurance",
    "pension",
    "passport",
    "driving licence",
    "tenancy agreement",
    "mortgage",
    "credit limit",
    "direct debit",
    "standing order",
    "delivery slot",
    "meter reading",
    "prescription",
    "appointment",
    "train ticket",
    "season ticket",
    "flight",
    "seat",
    "baggage allowance",
    "refund",
    "invoice",
    "password",
    "email address",
    "home address",
    "phone number",
    "API key",
    "workspace",
    "project",
    "repository",
    "deployment",
    "domain",
    "SSL certificate",
    "mailbox",
    "calendar",
    "meeting room",
    "locker",
    "bike",
    "charger",
    "router",
    "boiler service",
    "window repair",
    "bin collection",
    "school place",
    "nursery place",
    "blue badge",
    "tax return",
    "payslip",
    "expense claim",
    "holiday request",
];
const TAILS: &[&str] = &[
    "",
    "",
    "",
    " online",
    " by phone",
    " this week",
    " before Friday",
    " for my partner",
    " for my son",
    " in Leeds",
    " in Bristol",
    " in Glasgow",
    " from abroad",
    " after the deadline",
    " without a fee",
    " on the app",
    " at the branch",
    " next month",
    " for two people",
    " for 12 months",
];

fn prompt(rng: &mut Lcg) -> String {
    let adjective = rng.pick(ADJECTIVES);
    let space = if adjective.is_empty() { "" } else { " " };
    let number = if rng.next().is_multiple_of(4) {
        format!(" number {}", rng.next() % 10_000)
    } else {
        String::new()
    };
    format!(
        "{} {} my {adjective}{space}{}{number}{}?",
        rng.pick(OPENERS),
        rng.pick(VERBS),
        rng.pick(NOUNS),
        rng.pick(TAILS)
    )
}

fn query(rng: &mut Lcg, stored: &[String]) -> String {
    let base = &stored[rng.next() % stored.len()];
    match rng.next() % 4 {
        0 => format!("Hi, {} Thanks!", base.to_lowercase()),
        1 => base.replacen("my", "my my", 1).replacen("the", "teh", 1),
        2 => {
            let (from, to) = (rng.pick(VERBS), rng.pick(VERBS));
            base.replacen(from, to, 1)
        }
        _ => prompt(rng),
    }
}

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
        let mut rng = Lcg(0x5eed_0000 + n as u64);
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
