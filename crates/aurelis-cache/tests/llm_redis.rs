//! The model cache across "processes" (caches with their own memory tier and coalescing)
//! sharing a real Redis tier with single-flight leases: identical requests, whole or
//! streamed, make one provider call in the whole fleet.

#![cfg(feature = "redis")]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::llm::{
    FinishReason, Message, ModelChunk, ModelRequest, ModelResponse, ModelResponseCache, Usage,
};
use aurelis_cache::{Cache, MokaStore, RedisConfig, RedisStore, SingleFlight, Tier};
use aurelis_redis_harness::RedisServer;
use futures::StreamExt;

async fn instance(server: &RedisServer) -> ModelResponseCache {
    let mut config = RedisConfig::default();
    config.url = server.url();
    config.timeout_ms = 2_000;
    let redis = Arc::new(RedisStore::from_config(&config).await.expect("redis store"));
    let cache = Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())).priority(2))
        .tier(Tier::new("redis", redis.clone()).priority(1))
        .single_flight(SingleFlight::new(redis).lease_ttl(Duration::from_secs(10)))
        .build_connected()
        .await
        .expect("cache");
    ModelResponseCache::new(cache)
}

fn request() -> ModelRequest {
    ModelRequest::new("gpt-4o").message(Message::user("the fleet asks once")).temperature(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_makes_one_provider_call_per_request() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let fleet = [instance(&server).await, instance(&server).await, instance(&server).await];
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let ask = |models: &ModelResponseCache| {
        let (models, calls, gate) = (models.clone(), calls.clone(), gate.clone());
        tokio::spawn(async move {
            models
                .get_or_call(&request(), move || async move {
                    // Only the first call waits: a second one fails the oracle, never hangs.
                    if calls.fetch_add(1, SeqCst) == 0 {
                        gate.notified().await;
                    }
                    Ok::<_, std::io::Error>(
                        ModelResponse::success("gpt-4o", "once").usage(Usage::new(9, 2)),
                    )
                })
                .await
                .unwrap()
        })
    };
    let first = ask(&fleet[0]);
    while calls.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // The others start while the first holds the lease.
    let others = [ask(&fleet[1]), ask(&fleet[2]), ask(&fleet[1])];
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.notify_one();
    assert_eq!(first.await.unwrap().content, "once");
    for other in others {
        let r = other.await.unwrap();
        assert_eq!(r.content, "once");
        assert!(r.from_cache);
    }
    assert_eq!(calls.load(SeqCst), 1, "one provider call in the fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_one_process_answers_a_stream_in_another() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (instance(&server).await, instance(&server).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let chunks = vec![
        ModelChunk::reasoning("thinking "),
        ModelChunk::text("the "),
        ModelChunk::text("answer"),
        ModelChunk::finished(FinishReason::Stop).with_usage(Usage::new(3, 3)),
    ];
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<ModelChunk, std::io::Error>>();
    let streamed = request().stream(true);
    let mut live = a
        .stream(&streamed, {
            let calls = calls.clone();
            move || async move {
                calls.fetch_add(1, SeqCst);
                Ok::<_, std::io::Error>(rx)
            }
        })
        .await
        .unwrap();
    tx.unbounded_send(Ok(chunks[0].clone())).unwrap();
    assert_eq!(live.next().await.unwrap().unwrap(), chunks[0]);
    // Process B asks while A's stream holds the lease.
    let other = tokio::spawn({
        let (b, calls, streamed) = (b.clone(), calls.clone(), streamed.clone());
        async move {
            let s = b
                .stream(&streamed, move || async move {
                    calls.fetch_add(1, SeqCst);
                    Ok::<_, std::io::Error>(futures::stream::iter(Vec::<
                        Result<ModelChunk, std::io::Error>,
                    >::new()))
                })
                .await
                .unwrap();
            s.map(|c| c.unwrap()).collect::<Vec<_>>().await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for c in &chunks[1..] {
        tx.unbounded_send(Ok(c.clone())).unwrap();
    }
    drop(tx);
    let mut got_a = vec![chunks[0].clone()];
    while let Some(c) = live.next().await {
        got_a.push(c.unwrap());
    }
    assert_eq!(got_a, chunks);
    assert_eq!(other.await.unwrap(), chunks, "B gets A's chunks, boundaries kept");
    assert_eq!(calls.load(SeqCst), 1, "one provider stream in the fleet");
}
