//! Similar-prompt lookup: `SimilarityCache::lookup` (exact first, candidate index, guard)
//! with 1k, 10k and 100k stored prompts, against the reference's approach in the same run:
//! a linear scan computing a difflib-style ratio (rapidfuzz `ratio`, lowercase) against
//! every stored prompt.
//!
//! Prompts are synthesised from a vocabulary with a fixed seed. Each iteration looks up the
//! next query of a fixed mix: stored prompts with a greeting or a typo (hits), one-word
//! edits (refused by the guard) and new prompts (misses). Percentiles and memory per prompt
//! come from `cargo run --release -p aurelis-cache-similarity --example similarity_speed`.

use std::hint::black_box;

use aurelis_cache_benches::{criterion, runtime};
use aurelis_cache_similarity::{Scope, SimilarityCache};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// A seeded generator (64-bit LCG), so every run stores the same prompts.
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

fn similarity_lookup(c: &mut Criterion) {
    let rt = runtime();
    let scope = Scope::for_model("bench-model");
    let mut group = c.benchmark_group("similarity_lookup");
    for n in [1_000usize, 10_000, 100_000] {
        let mut rng = Lcg(0x5eed_0000 + n as u64);
        let cache = SimilarityCache::<u32>::builder().build().expect("defaults are valid");
        let mut stored = Vec::with_capacity(n);
        rt.block_on(async {
            while stored.len() < n {
                let p = prompt(&mut rng);
                cache.insert(&scope, &p, stored.len() as u32, None).await.expect("insert");
                stored.push(p);
            }
        });
        let queries: Vec<String> = (0..1_024).map(|_| query(&mut rng, &stored)).collect();

        let mut i = 0;
        group.bench_function(BenchmarkId::new("index", n), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % queries.len();
                let q = &queries[i];
                let cache = &cache;
                let scope = &scope;
                async move { black_box(cache.lookup(scope, q).await.hit.is_some()) }
            })
        });

        // The reference's approach over the same prompts.
        let lowered: Vec<String> = stored.iter().map(|s| s.to_lowercase()).collect();
        let mut j = 0;
        group.bench_function(BenchmarkId::new("linear_scan", n), |b| {
            b.iter(|| {
                j = (j + 1) % queries.len();
                let q = queries[j].to_lowercase();
                let mut best = (0.0f64, usize::MAX);
                for (k, s) in lowered.iter().enumerate() {
                    let r = rapidfuzz::fuzz::ratio(q.chars(), s.chars());
                    if r > best.0 {
                        best = (r, k);
                    }
                }
                black_box(best)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion().sample_size(10);
    targets = similarity_lookup
}
criterion_main!(benches);
