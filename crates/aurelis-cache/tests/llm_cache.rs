//! The model response cache: hits, errors and truncated answers not cached, TTL by status,
//! sampled requests, invalidate_model, undecodable entries, coalescing and cost accounting.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::llm::{
    provider_error_of, CachePolicy, FinishReason, Message, ModelRequest, ModelResponse,
    ModelResponseCache, Price, PriceTable, ResponseStatus, SampledPolicy, Usage,
};
use aurelis_cache::{Cache, Envelope, MokaStore, SledStore, Store, Tier};

fn memory_cache() -> Cache {
    Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap()
}

fn request(text: &str) -> ModelRequest {
    ModelRequest::new("gpt-4o").message(Message::user(text)).temperature(0.0)
}

/// A provider that counts its calls and answers `response`.
#[derive(Clone, Default)]
struct Provider {
    calls: Arc<AtomicUsize>,
}

impl Provider {
    fn answer(
        &self,
        response: ModelResponse,
    ) -> impl FnOnce() -> std::future::Ready<Result<ModelResponse, std::io::Error>> {
        let calls = self.calls.clone();
        move || {
            calls.fetch_add(1, SeqCst);
            std::future::ready(Ok(response))
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }
}

#[tokio::test]
async fn a_second_identical_request_is_a_hit() {
    let models = ModelResponseCache::new(memory_cache());
    let provider = Provider::default();
    let answer = ModelResponse::success("gpt-4o", "Paris").usage(Usage::new(20, 3));
    let first =
        models.get_or_call(&request("capital?"), provider.answer(answer.clone())).await.unwrap();
    let second = models
        .get_or_call(
            &request("capital?").user("bob").request_id("r2"),
            provider.answer(answer.clone()),
        )
        .await
        .unwrap();
    assert_eq!(provider.calls(), 1);
    assert!(!first.from_cache);
    assert!(second.from_cache);
    assert_eq!(second.content, "Paris");
    assert_eq!(second.usage, Some(Usage::new(20, 3)));
    // A different question is a miss.
    models.get_or_call(&request("capital of Italy?"), provider.answer(answer)).await.unwrap();
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn provider_errors_and_error_answers_are_never_cached() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let calls = calls.clone();
        let err = models
            .get_or_call(&request("q"), move || async move {
                calls.fetch_add(1, SeqCst);
                Err::<ModelResponse, _>(std::io::Error::other("rate limited"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), aurelis_cache::ErrorKind::Loader);
        assert_eq!(provider_error_of::<std::io::Error>(&err).unwrap().to_string(), "rate limited");
    }
    assert_eq!(calls.load(SeqCst), 2, "an error is not cached");

    let provider = Provider::default();
    for _ in 0..2 {
        let r = models
            .get_or_call(
                &request("q"),
                provider.answer(ModelResponse::error("gpt-4o", "overloaded")),
            )
            .await
            .unwrap();
        assert_eq!(r.status, ResponseStatus::Error);
        assert!(!r.from_cache);
    }
    assert_eq!(provider.calls(), 2, "an error answer is returned, not cached");
    assert!(models.get_response(&request("q")).await.unwrap().is_none());
    let report = models.cost_report();
    assert_eq!(report.models["gpt-4o"].not_stored, 2);
}

#[tokio::test]
async fn truncated_answers_are_cached_only_when_the_policy_says_so() {
    let cut = ModelResponse::success("gpt-4o", "The answer is").finish(FinishReason::Length);
    let strict = ModelResponseCache::new(memory_cache());
    let provider = Provider::default();
    for _ in 0..2 {
        let r = strict.get_or_call(&request("long"), provider.answer(cut.clone())).await.unwrap();
        assert_eq!(r.status, ResponseStatus::Incomplete);
    }
    assert_eq!(provider.calls(), 2);

    let filtered = ModelResponse::success("gpt-4o", "").finish(FinishReason::ContentFilter);
    let provider = Provider::default();
    for _ in 0..2 {
        strict.get_or_call(&request("bad"), provider.answer(filtered.clone())).await.unwrap();
    }
    assert_eq!(provider.calls(), 2, "content-filtered answers are truncated too");

    let lenient = ModelResponseCache::builder(memory_cache())
        .policy(CachePolicy::new().cache_truncated(true))
        .build()
        .unwrap();
    let provider = Provider::default();
    for _ in 0..2 {
        lenient.get_or_call(&request("long"), provider.answer(cut.clone())).await.unwrap();
    }
    assert_eq!(provider.calls(), 1);
}

/// The TTL each tier was given, read from the disk tier's envelope.
async fn stored_ttl(disk: &SledStore, key: &str) -> Duration {
    let bytes = disk.get(key).await.unwrap().expect("stored on disk");
    let env = Envelope::decode(bytes).unwrap();
    Duration::from_millis(env.expires_at_ms.unwrap() - env.created_at_ms)
}

#[tokio::test]
async fn the_ttl_depends_on_the_status_and_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SledStore::builder().path(dir.path()).build().unwrap());
    let cache = Cache::builder()
        .tier(Tier::new("disk", disk.clone()).ttl(Duration::from_secs(86_400)))
        .build()
        .unwrap();
    let models = ModelResponseCache::builder(cache)
        .policy(CachePolicy::new().cache_truncated(true))
        .build()
        .unwrap();
    let provider = Provider::default();
    let ok = request("ok");
    models.get_or_call(&ok, provider.answer(ModelResponse::success("gpt-4o", "x"))).await.unwrap();
    assert_eq!(
        stored_ttl(&disk, models.key(&ok).unwrap().as_str()).await,
        Duration::from_secs(3600)
    );
    let cut = request("cut");
    let truncated = ModelResponse::success("gpt-4o", "x").finish(FinishReason::Length);
    models.get_or_call(&cut, provider.answer(truncated)).await.unwrap();
    assert_eq!(
        stored_ttl(&disk, models.key(&cut).unwrap().as_str()).await,
        Duration::from_secs(300)
    );
    // And it is a hit afterwards.
    let r = models
        .get_or_call(&cut, provider.answer(ModelResponse::success("gpt-4o", "new")))
        .await
        .unwrap();
    assert!(r.from_cache && r.content == "x");

    let custom = request("custom");
    assert!(models
        .cache_response(
            &custom,
            &ModelResponse::success("gpt-4o", "y"),
            Some(Duration::from_secs(42))
        )
        .await
        .unwrap());
    assert_eq!(
        stored_ttl(&disk, models.key(&custom).unwrap().as_str()).await,
        Duration::from_secs(42)
    );

    let dir2 = tempfile::tempdir().unwrap();
    let disk2 = Arc::new(SledStore::builder().path(dir2.path()).build().unwrap());
    let cache2 = Cache::builder().tier(Tier::new("disk", disk2.clone())).build().unwrap();
    let models2 = ModelResponseCache::builder(cache2)
        .policy(CachePolicy::new().success_ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    models2.get_or_call(&ok, provider.answer(ModelResponse::success("gpt-4o", "x"))).await.unwrap();
    assert_eq!(
        stored_ttl(&disk2, models2.key(&ok).unwrap().as_str()).await,
        Duration::from_secs(60)
    );
}

#[tokio::test]
async fn sampled_requests_follow_the_policy() {
    let sampled = ModelRequest::new("gpt-4o").message(Message::user("poem")).temperature(0.9);
    let default = ModelResponseCache::new(memory_cache());
    let provider = Provider::default();
    for _ in 0..2 {
        default
            .get_or_call(&sampled, provider.answer(ModelResponse::success("gpt-4o", "roses")))
            .await
            .unwrap();
    }
    assert_eq!(provider.calls(), 1, "cached by default, as the reference");

    let skip = ModelResponseCache::builder(memory_cache())
        .policy(CachePolicy::new().sampled(SampledPolicy::Skip))
        .build()
        .unwrap();
    let provider = Provider::default();
    for _ in 0..2 {
        let r = skip
            .get_or_call(&sampled, provider.answer(ModelResponse::success("gpt-4o", "roses")))
            .await
            .unwrap();
        assert!(!r.from_cache);
    }
    assert_eq!(provider.calls(), 2);
    assert!(skip.get_response(&sampled).await.unwrap().is_none());
    assert_eq!(skip.cost_report().models["gpt-4o"].bypassed, 2);
    // Greedy requests are still cached under Skip.
    let provider = Provider::default();
    for _ in 0..2 {
        skip.get_or_call(&request("q"), provider.answer(ModelResponse::success("gpt-4o", "a")))
            .await
            .unwrap();
    }
    assert_eq!(provider.calls(), 1);
}

#[tokio::test]
async fn invalidate_model_drops_only_that_models_answers() {
    let models = ModelResponseCache::new(memory_cache());
    let provider = Provider::default();
    let other = ModelRequest::new("claude").message(Message::user("q")).temperature(0.0);
    models
        .get_or_call(&request("q"), provider.answer(ModelResponse::success("gpt-4o", "a")))
        .await
        .unwrap();
    models
        .get_or_call(&other, provider.answer(ModelResponse::success("claude", "b")))
        .await
        .unwrap();
    models.invalidate_model("gpt-4o").await.unwrap();
    assert!(models.get_response(&request("q")).await.unwrap().is_none());
    assert_eq!(models.get_response(&other).await.unwrap().unwrap().content, "b");
    models
        .get_or_call(&request("q"), provider.answer(ModelResponse::success("gpt-4o", "a2")))
        .await
        .unwrap();
    assert_eq!(provider.calls(), 3);
}

#[tokio::test]
async fn an_entry_that_does_not_decode_is_a_counted_miss() {
    let cache = memory_cache();
    let models = ModelResponseCache::new(cache.clone());
    let key = models.key(&request("q")).unwrap();
    // Something else under the model's key (an older format, a foreign writer).
    cache.set(&key, &"not a model answer").await.unwrap();
    let provider = Provider::default();
    let r = models
        .get_or_call(&request("q"), provider.answer(ModelResponse::success("gpt-4o", "fresh")))
        .await
        .unwrap();
    assert_eq!(r.content, "fresh");
    assert_eq!(provider.calls(), 1);
    let stats = cache.stats().snapshot();
    assert!(stats.type_mismatches + stats.corrupt >= 1, "{stats:?}");
    assert!(models.get_response(&request("q")).await.unwrap().unwrap().from_cache);
}

/// Waits (bounded) until `n` callers wait for another caller's load.
async fn wait_for_waiters(models: &ModelResponseCache, n: u64) {
    for _ in 0..10_000 {
        if models.cache().stats().snapshot().coalesced_waiters >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{n} callers never waited for the load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_make_one_call() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (models, calls, gate) = (models.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            models
                .get_or_call(&request("same").request_id(format!("r{i}")), move || async move {
                    if calls.fetch_add(1, SeqCst) == 0 {
                        gate.notified().await;
                    }
                    Ok::<_, std::io::Error>(
                        ModelResponse::success("gpt-4o", "one").usage(Usage::new(5, 5)),
                    )
                })
                .await
                .unwrap()
        }));
    }
    wait_for_waiters(&models, 15).await;
    gate.notify_one();
    let mut from_provider = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.content, "one");
        from_provider += usize::from(!r.from_cache);
    }
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(from_provider, 1);
    let cost = &models.cost_report().models["gpt-4o"];
    assert_eq!((cost.requests, cost.hits, cost.provider_calls), (16, 15, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_get_an_answer_that_is_not_cached_without_calling_again() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (models, calls, gate) = (models.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            models
                .get_or_call(&request("overloaded"), move || async move {
                    // Only the first call waits: a second one fails the oracle, never hangs.
                    if calls.fetch_add(1, SeqCst) == 0 {
                        gate.notified().await;
                    }
                    Ok::<_, std::io::Error>(ModelResponse::error("gpt-4o", "try later"))
                })
                .await
                .unwrap()
        }));
    }
    // Release the call once the seven others wait for it (the answer is not stored, so a
    // late caller would make a call of its own).
    wait_for_waiters(&models, 7).await;
    gate.notify_one();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, ResponseStatus::Error);
        assert_eq!(r.error.as_deref(), Some("try later"));
    }
    assert_eq!(calls.load(SeqCst), 1, "the waiters shared the one call");
    assert!(models.get_response(&request("overloaded")).await.unwrap().is_none(), "not cached");
}

#[tokio::test]
async fn the_cost_report_prices_what_hits_saved() {
    let models = ModelResponseCache::builder(memory_cache())
        .prices(PriceTable::new().price("gpt-4o", Price::per_million(2.5, 10.0)))
        .build()
        .unwrap();
    let mut answer = ModelResponse::success("gpt-4o", "a").usage(Usage::new(1_000, 500));
    answer.provider_latency = Duration::from_millis(1_200);
    let provider = Provider::default();
    for _ in 0..5 {
        models.get_or_call(&request("q"), provider.answer(answer.clone())).await.unwrap();
    }
    let report = models.cost_report();
    let m = &report.models["gpt-4o"];
    assert_eq!((m.requests, m.hits, m.provider_calls), (5, 4, 1));
    assert_eq!((m.prompt_tokens_saved, m.completion_tokens_saved), (4_000, 2_000));
    assert!((m.cost_saved - (4_000.0 * 2.5 + 2_000.0 * 10.0) / 1e6).abs() < 1e-12);
    assert_eq!(m.provider_latency_saved, Duration::from_millis(4_800));
    assert_eq!(report.total.hits, 4);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["models"]["gpt-4o"]["hits"], 4);
}
