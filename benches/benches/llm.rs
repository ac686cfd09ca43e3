//! The model cache: a hit through `ModelResponseCache::get_or_call` (fingerprint + lookup)
//! against `Cache::get_or_compute_with` with a prebuilt key; the fingerprint alone; a replay of
//! a 200-chunk recorded stream against iterating the same chunks; and the first chunk of a
//! cold streamed request through the tee against the provider stream read directly.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache::llm::{
    FinishReason, Message, ModelChunk, ModelRequest, ModelResponse, ModelResponseCache, Usage,
};
use aurelis_cache::{Cache, MokaStore, SetOptions, Tier};
use criterion::{criterion_group, criterion_main, Criterion};
use futures::StreamExt;

fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

fn memory_cache() -> Cache {
    Cache::builder()
        .tier(Tier::new(
            "memory",
            Arc::new(MokaStore::builder().max_entries(100_000).build().unwrap()),
        ))
        .build()
        .unwrap()
}

/// A six-message conversation with a tool, as a chat client sends it.
fn conversation(tag: usize) -> ModelRequest {
    ModelRequest::new("gpt-4o")
        .system("You are a helpful assistant. Answer briefly and cite sources.")
        .message(Message::user(format!("Question {tag}: what changed in the 2024 tax rules?")))
        .message(Message::assistant("Several things changed; which country?"))
        .message(Message::user("France, for a salaried employee."))
        .message(Message::assistant("Here is a summary of the main changes for employees ..."))
        .message(Message::user("And for freelancers?"))
        .tool(serde_json::json!({"type": "function", "function": {"name": "search",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}))
        .temperature(0.0)
        .max_tokens(512)
}

fn answer() -> ModelResponse {
    ModelResponse::success("gpt-4o", "x".repeat(1024)).usage(Usage::new(300, 250))
}

fn chunks(n: usize) -> Vec<ModelChunk> {
    let mut out: Vec<ModelChunk> =
        (0..n - 1).map(|i| ModelChunk::text(format!("tok{i} "))).collect();
    out.push(ModelChunk::finished(FinishReason::Stop));
    out
}

fn llm(c: &mut Criterion) {
    let rt = aurelis_cache_benches::runtime();
    let cache = memory_cache();
    let models = ModelResponseCache::new(cache.clone());
    let request = conversation(0);
    rt.block_on(async {
        models.get_or_call(&request, || async { Ok::<_, std::io::Error>(answer()) }).await.unwrap();
    });
    let key = models.key(&request).unwrap();
    let plain = cache.keys().build_key("bench", "answer", None).unwrap();
    rt.block_on(async {
        let _: ModelResponse = cache
            .get_or_compute_with(&plain, &SetOptions::new(), || async {
                Ok::<_, std::io::Error>(answer())
            })
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("model_hit");
    group.bench_function("get_or_call", |b| {
        b.to_async(&rt).iter(|| async {
            let r = models
                .get_or_call(&request, || async { Ok::<_, std::io::Error>(answer()) })
                .await
                .unwrap();
            assert!(r.from_cache);
        })
    });
    group.bench_function("cache_get_or_compute_with", |b| {
        b.to_async(&rt).iter(|| async {
            let _: ModelResponse = cache
                .get_or_compute_with(&plain, &SetOptions::new(), || async {
                    Ok::<_, std::io::Error>(answer())
                })
                .await
                .unwrap();
        })
    });
    group.bench_function("fingerprint_key", |b| {
        b.iter(|| models.key(&request).unwrap());
    });
    group.finish();
    let _ = key;

    let mut group = c.benchmark_group("stream_replay_200_chunks");
    let streamed = conversation(1).stream(true);
    let recorded = chunks(200);
    rt.block_on(async {
        let rec = recorded.clone();
        let s = models
            .stream(&streamed, move || async move {
                Ok::<_, std::io::Error>(futures::stream::iter(rec.into_iter().map(Ok)))
            })
            .await
            .unwrap();
        assert_eq!(s.count().await, 200);
    });
    group.bench_function("replay", |b| {
        b.to_async(&rt).iter(|| async {
            let s = models
                .stream(&streamed, || async {
                    Ok::<_, std::io::Error>(futures::stream::iter(Vec::<
                        Result<ModelChunk, std::io::Error>,
                    >::new()))
                })
                .await
                .unwrap();
            assert_eq!(s.count().await, 200);
        })
    });
    group.bench_function("iterate_chunks", |b| {
        b.to_async(&rt).iter(|| async {
            let s =
                futures::stream::iter(recorded.clone().into_iter().map(Ok::<_, std::io::Error>));
            assert_eq!(s.count().await, 200);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("stream_first_chunk_cold");
    let round = Arc::new(AtomicUsize::new(0));
    group.bench_function("through_cache", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (models, round) = (models.clone(), round.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let req = conversation(1000 + round.fetch_add(1, SeqCst)).stream(true);
                    let started = Instant::now();
                    let mut s = models
                        .stream(&req, || async {
                            Ok::<_, std::io::Error>(futures::stream::iter(
                                chunks(3).into_iter().map(Ok),
                            ))
                        })
                        .await
                        .unwrap();
                    s.next().await.unwrap().unwrap();
                    total += started.elapsed();
                    while s.next().await.is_some() {}
                }
                total
            }
        })
    });
    group.bench_function("direct", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let call = || async {
                    Ok::<_, std::io::Error>(futures::stream::iter(
                        chunks(3).into_iter().map(Ok::<_, std::io::Error>),
                    ))
                };
                let started = Instant::now();
                let mut s = call().await.unwrap();
                s.next().await.unwrap().unwrap();
                total += started.elapsed();
                while s.next().await.is_some() {}
            }
            total
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings();
    targets = llm
}
criterion_main!(benches);
