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

use aurelis_cache_similarity::synthetic::{prompt, query, Lcg};

fn similarity_lookup(c: &mut Criterion) {
    let rt = runtime();
    let scope = Scope::for_model("bench-model");
    let mut group = c.benchmark_group("similarity_lookup");
    for n in [1_000usize, 10_000, 100_000] {
        let mut rng = Lcg::new(0x5eed_0000 + n as u64);
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
