//! Streams: pass-through without delay, nothing stored on abort, error or truncation, replays
//! chunk by chunk (reasoning and tool-call deltas included) with optional pacing, stream and
//! whole requests serving each other, and one shared provider stream with late joiners.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::llm::{
    CachePolicy, FinishReason, Message, ModelChunk, ModelRequest, ModelResponse,
    ModelResponseCache, Pacing, Role, StreamSource, ToolCallDelta, Usage,
};
use aurelis_cache::{Cache, MokaStore, Tier};
use futures::channel::mpsc;
use futures::{Stream, StreamExt};

type Item = Result<ModelChunk, std::io::Error>;

fn memory_cache() -> Cache {
    Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap()
}

fn request(text: &str) -> ModelRequest {
    ModelRequest::new("o3").message(Message::user(text)).temperature(0.0).stream(true)
}

/// A reasoning model's answer with tool-call deltas split across chunks.
fn rich_chunks() -> Vec<ModelChunk> {
    let mut first = ModelChunk::reasoning("The user wants ");
    first.role = Some(Role::Assistant);
    first.id = Some("chatcmpl-1".into());
    vec![
        first,
        ModelChunk::reasoning("the weather."),
        ModelChunk::text("Let me check. "),
        ModelChunk::tool_call(ToolCallDelta {
            index: 0,
            id: Some("call_a".into()),
            kind: Some("function".into()),
            name: Some("get_weather".into()),
            arguments: Some("{\"ci".into()),
        }),
        ModelChunk::tool_call(ToolCallDelta {
            index: 0,
            arguments: Some("ty\":\"Paris\"}".into()),
            ..Default::default()
        }),
        ModelChunk::tool_call(ToolCallDelta {
            index: 1,
            id: Some("call_b".into()),
            kind: Some("function".into()),
            name: Some("get_time".into()),
            arguments: Some("{}".into()),
        }),
        ModelChunk::finished(FinishReason::ToolCalls).with_usage(Usage::new(40, 25)),
    ]
}

/// A provider that counts calls and streams `chunks`.
fn provider(
    calls: &Arc<AtomicUsize>,
    chunks: Vec<ModelChunk>,
) -> impl FnOnce() -> std::future::Ready<
    Result<futures::stream::Iter<std::vec::IntoIter<Item>>, std::io::Error>,
> + Send
       + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, SeqCst);
        let items: Vec<Item> = chunks.into_iter().map(Ok).collect();
        std::future::ready(Ok(futures::stream::iter(items)))
    }
}

async fn collect(stream: impl Stream<Item = aurelis_cache::Result<ModelChunk>>) -> Vec<ModelChunk> {
    stream.map(|c| c.unwrap()).collect().await
}

#[tokio::test]
async fn replays_keep_every_chunk_with_its_boundaries() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let live = models.stream(&request("weather"), provider(&calls, rich_chunks())).await.unwrap();
    assert_eq!(live.source(), StreamSource::Provider);
    assert_eq!(collect(live).await, rich_chunks());
    let replay = models.stream(&request("weather"), provider(&calls, vec![])).await.unwrap();
    assert_eq!(replay.source(), StreamSource::Replay);
    let replayed = collect(replay).await;
    assert_eq!(replayed.len(), rich_chunks().len());
    for (i, (got, want)) in replayed.iter().zip(rich_chunks()).enumerate() {
        assert_eq!(got, &want, "chunk {i}");
    }
    assert_eq!(calls.load(SeqCst), 1);
    let cost = &models.cost_report().models["o3"];
    assert_eq!((cost.hits, cost.prompt_tokens_saved, cost.completion_tokens_saved), (1, 40, 25));
}

#[tokio::test(start_paused = true)]
async fn the_first_chunk_is_passed_through_before_the_provider_goes_on() {
    let models = ModelResponseCache::new(memory_cache());
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let call = move || async move {
        let first =
            futures::stream::once(async { Ok::<_, std::io::Error>(ModelChunk::text("first")) });
        let rest = futures::stream::once(async move {
            let _ = release_rx.await;
            Ok(ModelChunk::finished(FinishReason::Stop))
        });
        Ok::<_, std::io::Error>(first.chain(rest))
    };
    let mut stream = models.stream(&request("q"), call).await.unwrap();
    // Virtual time: if the cache held the chunk back until the stream ended, the runtime would
    // go idle, time would jump, and the timeout would fire.
    let first = tokio::time::timeout(Duration::from_secs(3600), stream.next())
        .await
        .expect("the first chunk arrives while the provider still waits")
        .unwrap()
        .unwrap();
    assert_eq!(first.content.as_deref(), Some("first"));
    release_tx.send(()).unwrap();
    let last = stream.next().await.unwrap().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    assert!(stream.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stream_dropped_by_its_caller_stores_nothing() {
    let models = ModelResponseCache::new(memory_cache());
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let mut hold_tx = hold_tx;
    let call = move || async move {
        let first =
            futures::stream::once(async { Ok::<_, std::io::Error>(ModelChunk::text("partial")) });
        let rest = futures::stream::once(async move {
            let _ = hold_rx.await;
            Ok(ModelChunk::finished(FinishReason::Stop))
        });
        Ok::<_, std::io::Error>(first.chain(rest))
    };
    let mut stream = models.stream(&request("q"), call).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().content.as_deref(), Some("partial"));
    drop(stream);
    // The provider stream is dropped with the last reader.
    tokio::time::timeout(Duration::from_secs(3600), hold_tx.closed())
        .await
        .expect("the provider stream is dropped");
    assert!(models.get_response(&request("q")).await.unwrap().is_none());
    let calls = Arc::new(AtomicUsize::new(0));
    let again = models.stream(&request("q"), provider(&calls, rich_chunks())).await.unwrap();
    assert_eq!(again.source(), StreamSource::Provider, "nothing was stored, nothing is in flight");
    collect(again).await;
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_at_the_finish_reason_still_gets_it_stored() {
    let models = ModelResponseCache::new(memory_cache());
    let (tx, rx) = mpsc::unbounded::<Item>();
    let mut s = models
        .stream(&request("q"), move || async move { Ok::<_, std::io::Error>(rx) })
        .await
        .unwrap();
    tx.unbounded_send(Ok(ModelChunk::text("answer"))).unwrap();
    tx.unbounded_send(Ok(ModelChunk::finished(FinishReason::Stop))).unwrap();
    // Read up to the finish reason, then drop without waiting for the end.
    while let Some(c) = s.next().await {
        if c.unwrap().finish_reason.is_some() {
            break;
        }
    }
    drop(s);
    // The provider's usage trailer comes after the finish reason, then the end.
    tx.unbounded_send(Ok(ModelChunk::default().with_usage(Usage::new(5, 1)))).unwrap();
    drop(tx);
    // The driver stores on its own; wait for it (bounded).
    let mut stored = None;
    for _ in 0..5_000 {
        stored = models.get_response(&request("q")).await.unwrap();
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stored = stored.expect("a complete stream is stored");
    assert_eq!(stored.content, "answer");
    assert_eq!(stored.usage, Some(Usage::new(5, 1)));
}

#[tokio::test]
async fn a_provider_error_mid_stream_stores_nothing() {
    let models = ModelResponseCache::new(memory_cache());
    let call = || async {
        let items: Vec<Item> =
            vec![Ok(ModelChunk::text("half")), Err(std::io::Error::other("connection reset"))];
        Ok::<_, std::io::Error>(futures::stream::iter(items))
    };
    let items: Vec<_> = models.stream(&request("q"), call).await.unwrap().collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().content.as_deref(), Some("half"));
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), aurelis_cache::ErrorKind::Loader);
    assert!(aurelis_cache::llm::provider_error_of::<std::io::Error>(err).is_some());
    assert!(models.get_response(&request("q")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_truncated_stream_is_delivered_and_not_stored() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let cut = vec![ModelChunk::text("Once upon"), ModelChunk::finished(FinishReason::Length)];
    for _ in 0..2 {
        let s = models.stream(&request("story"), provider(&calls, cut.clone())).await.unwrap();
        assert_eq!(s.source(), StreamSource::Provider);
        assert_eq!(collect(s).await, cut);
    }
    assert_eq!(calls.load(SeqCst), 2);
    assert!(models.get_response(&request("story")).await.unwrap().is_none());
    // Unless the policy caches truncated answers.
    let lenient = ModelResponseCache::builder(memory_cache())
        .policy(CachePolicy::new().cache_truncated(true))
        .build()
        .unwrap();
    collect(lenient.stream(&request("story"), provider(&calls, cut.clone())).await.unwrap()).await;
    let replay = lenient.stream(&request("story"), provider(&calls, cut.clone())).await.unwrap();
    assert_eq!(replay.source(), StreamSource::Replay);
    assert_eq!(collect(replay).await, cut);
}

#[tokio::test]
async fn a_stream_without_a_finish_reason_is_not_stored() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let cut = vec![ModelChunk::text("no"), ModelChunk::text(" end")];
    for _ in 0..2 {
        let s = models.stream(&request("cut"), provider(&calls, cut.clone())).await.unwrap();
        assert_eq!(collect(s).await, cut);
    }
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test]
async fn streams_and_whole_requests_serve_each_other() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    // A recorded stream answers a whole request, assembled.
    collect(models.stream(&request("a"), provider(&calls, rich_chunks())).await.unwrap()).await;
    let whole = models
        .get_or_call(&request("a").stream(false), || async {
            Ok::<_, std::io::Error>(ModelResponse::success("o3", "never called"))
        })
        .await
        .unwrap();
    assert!(whole.from_cache);
    assert_eq!(whole, {
        let mut r = ModelResponse::from_chunks(&rich_chunks());
        r.provider_latency = whole.provider_latency;
        r.from_cache = true;
        r
    });
    assert_eq!(whole.reasoning.as_deref(), Some("The user wants the weather."));
    assert_eq!(whole.tool_calls[0].arguments, "{\"city\":\"Paris\"}");

    // A whole answer answers a stream, split into chunks.
    let answer = ModelResponse::success("o3", "42").usage(Usage::new(3, 1));
    models
        .get_or_call(&request("b").stream(false), || async {
            Ok::<_, std::io::Error>(answer.clone())
        })
        .await
        .unwrap();
    let replay = models.stream(&request("b"), provider(&calls, vec![])).await.unwrap();
    assert_eq!(replay.source(), StreamSource::Replay);
    let chunks = collect(replay).await;
    let mut assembled = ModelResponse::from_chunks(&chunks);
    assembled.provider_latency = answer.provider_latency;
    assert_eq!(assembled.content, "42");
    assert_eq!(assembled.usage, answer.usage);
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn replays_can_keep_the_original_pacing() {
    let gaps = [Duration::from_millis(0), Duration::from_millis(100), Duration::from_millis(250)];
    let paced_provider = move || async move {
        let s = futures::stream::iter(gaps.into_iter().enumerate()).then(|(i, gap)| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(if i == 2 {
                ModelChunk::finished(FinishReason::Stop)
            } else {
                ModelChunk::text(format!("c{i}"))
            })
        });
        Ok::<_, std::io::Error>(s)
    };
    let cache = memory_cache();
    for (pacing, factor) in
        [(Pacing::Original, 1.0), (Pacing::Scaled(0.5), 0.5), (Pacing::Immediate, 0.0)]
    {
        let models = ModelResponseCache::builder(cache.clone())
            .policy(CachePolicy::new().pacing(pacing))
            .build()
            .unwrap();
        let req = request("paced");
        if models.get_response(&req).await.unwrap().is_none() {
            collect(models.stream(&req, paced_provider).await.unwrap()).await;
        }
        let mut replay = models.stream(&req, paced_provider).await.unwrap();
        assert_eq!(replay.source(), StreamSource::Replay);
        let mut last = tokio::time::Instant::now();
        for gap in gaps {
            replay.next().await.unwrap().unwrap();
            let now = tokio::time::Instant::now();
            let waited = now - last;
            let want = gap.mul_f64(factor);
            assert!(
                waited.abs_diff(want) <= Duration::from_millis(1),
                "{pacing:?}: waited {waited:?}, want {want:?}"
            );
            last = now;
        }
        assert!(replay.next().await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_the_chunks_so_far_then_the_rest_live() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded::<Item>();
    let call = {
        let calls = calls.clone();
        move || async move {
            calls.fetch_add(1, SeqCst);
            Ok::<_, std::io::Error>(rx)
        }
    };
    let chunks = rich_chunks();
    let mut leader = models.stream(&request("shared"), call).await.unwrap();
    tx.unbounded_send(Ok(chunks[0].clone())).unwrap();
    tx.unbounded_send(Ok(chunks[1].clone())).unwrap();
    assert_eq!(leader.next().await.unwrap().unwrap(), chunks[0]);
    assert_eq!(leader.next().await.unwrap().unwrap(), chunks[1]);
    let mut joiner = models
        .stream(&request("shared").user("someone else"), provider(&calls, vec![]))
        .await
        .unwrap();
    assert_eq!(joiner.source(), StreamSource::Joined);
    assert_eq!(joiner.next().await.unwrap().unwrap(), chunks[0]);
    assert_eq!(joiner.next().await.unwrap().unwrap(), chunks[1]);
    for c in &chunks[2..] {
        tx.unbounded_send(Ok(c.clone())).unwrap();
        assert_eq!(&leader.next().await.unwrap().unwrap(), c);
        assert_eq!(&joiner.next().await.unwrap().unwrap(), c);
    }
    drop(tx);
    assert!(leader.next().await.is_none());
    assert!(joiner.next().await.is_none());
    assert_eq!(calls.load(SeqCst), 1);
    let replay = models.stream(&request("shared"), provider(&calls, vec![])).await.unwrap();
    assert_eq!(collect(replay).await, chunks);
    let cost = &models.cost_report().models["o3"];
    assert_eq!((cost.requests, cost.hits, cost.provider_calls), (3, 2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_keeps_the_stream_alive_when_the_starter_leaves() {
    let models = ModelResponseCache::new(memory_cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded::<Item>();
    let call = {
        let calls = calls.clone();
        move || async move {
            calls.fetch_add(1, SeqCst);
            Ok::<_, std::io::Error>(rx)
        }
    };
    let chunks = rich_chunks();
    let mut leader = models.stream(&request("x"), call).await.unwrap();
    tx.unbounded_send(Ok(chunks[0].clone())).unwrap();
    leader.next().await.unwrap().unwrap();
    let joiner = models.stream(&request("x"), provider(&calls, vec![])).await.unwrap();
    drop(leader);
    for c in &chunks[1..] {
        tx.unbounded_send(Ok(c.clone())).unwrap();
    }
    drop(tx);
    assert_eq!(collect(joiner).await, chunks);
    assert_eq!(calls.load(SeqCst), 1);
    assert!(models.get_response(&request("x")).await.unwrap().is_some(), "completed: stored");
}

/// xorshift64*: a seeded generator for the randomized test (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Readers of identical requests start at random points of one provider stream, some leave
/// early, some ask for the whole answer; oracle: one provider call per round, every reader
/// that stays gets exactly the provider's chunks (a leaver a prefix), the whole answer is the
/// assembled stream, and the stored answer replays the same chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_streams_randomized_against_an_oracle() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let models = ModelResponseCache::new(memory_cache());
        let calls = Arc::new(AtomicUsize::new(0));
        let n_chunks = 3 + rng.below(10) as usize;
        let mut chunks: Vec<ModelChunk> = (0..n_chunks - 1)
            .map(|i| {
                if rng.below(3) == 0 {
                    ModelChunk::reasoning(format!("r{i} "))
                } else {
                    ModelChunk::text(format!("t{i} "))
                }
            })
            .collect();
        chunks.push(
            ModelChunk::finished(FinishReason::Stop).with_usage(Usage::new(7, n_chunks as u64)),
        );
        let (tx, rx) = mpsc::unbounded::<Item>();
        let call = {
            let calls = calls.clone();
            move || async move {
                calls.fetch_add(1, SeqCst);
                Ok::<_, std::io::Error>(rx)
            }
        };
        let req = request(&format!("round {seed}"));
        // The anchor reads to the end, so the stream always completes.
        let anchor = models.stream(&req, call).await.unwrap();
        let anchor = tokio::spawn(collect(anchor));
        let mut readers = Vec::new();
        let mut wholes = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            for _ in 0..rng.below(3) {
                let leave_after = (rng.below(2) == 0).then(|| rng.below(n_chunks as u64) as usize);
                let (models, req, calls) = (models.clone(), req.clone(), calls.clone());
                let yields = rng.below(20);
                readers.push(tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                    let mut s = models
                        .stream(&req.request_id(format!("r{i}")), provider(&calls, vec![]))
                        .await
                        .unwrap();
                    let mut got = Vec::new();
                    while let Some(c) = s.next().await {
                        got.push(c.unwrap());
                        if leave_after == Some(got.len()) {
                            break;
                        }
                    }
                    (got, leave_after.is_some())
                }));
            }
            if rng.below(4) == 0 {
                let (models, req) = (models.clone(), req.clone());
                wholes.push(tokio::spawn(async move {
                    models
                        .get_or_call(&req.stream(false), || async {
                            Ok::<_, std::io::Error>(ModelResponse::success(
                                "o3",
                                "wrong: a second call",
                            ))
                        })
                        .await
                        .unwrap()
                }));
            }
            tx.unbounded_send(Ok(c.clone())).unwrap();
            for _ in 0..rng.below(5) {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        assert_eq!(anchor.await.unwrap(), chunks, "seed {seed}: anchor");
        for r in readers {
            let (got, left) = r.await.unwrap();
            if left {
                assert_eq!(got[..], chunks[..got.len()], "seed {seed}: a leaver got a prefix");
            } else {
                assert_eq!(got, chunks, "seed {seed}: a reader got every chunk");
            }
        }
        let expected = ModelResponse::from_chunks(&chunks);
        for w in wholes {
            let got = w.await.unwrap();
            assert_eq!(got.content, expected.content, "seed {seed}: whole answer");
            assert_eq!(got.reasoning, expected.reasoning, "seed {seed}: whole answer");
        }
        assert_eq!(calls.load(SeqCst), 1, "seed {seed}: one provider call");
        let replay = models.stream(&req, provider(&calls, vec![])).await.unwrap();
        assert_eq!(replay.source(), StreamSource::Replay, "seed {seed}");
        assert_eq!(collect(replay).await, chunks, "seed {seed}: replay");
    }
}
