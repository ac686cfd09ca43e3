//! The async-openai integration against a local fake OpenAI-compatible server (plain HTTP and
//! server-sent events on 127.0.0.1, started by the test): hits make no server call, streams
//! replay chunk by chunk, stream and whole requests serve each other, errors are not cached.
#![cfg(feature = "openai")]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    CreateChatCompletionStreamResponse,
};
use async_openai::Client;
use aurelis_cache::llm::openai::CachedChat;
use aurelis_cache::llm::{provider_error_of, ModelRequest, ModelResponseCache, StreamSource};
use aurelis_cache::{Cache, KeyBuilder, MokaStore, Tier};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The chunks the fake server streams (as OpenAI sends them, `obfuscation` aside).
fn sse_chunks() -> Vec<Value> {
    let base = |choices: Value, usage: Value| {
        json!({
            "id": "chatcmpl-42", "object": "chat.completion.chunk", "created": 1_700_000_000u32,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_1", "choices": choices, "usage": usage
        })
    };
    let delta =
        |d: Value, finish: Value| json!([{"index": 0, "delta": d, "finish_reason": finish}]);
    vec![
        base(delta(json!({"role": "assistant", "content": ""}), Value::Null), Value::Null),
        base(delta(json!({"content": "Checking"}), Value::Null), Value::Null),
        base(delta(json!({"content": " the weather."}), Value::Null), Value::Null),
        base(
            delta(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"ci"}}]}),
                Value::Null,
            ),
            Value::Null,
        ),
        base(
            delta(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]}),
                Value::Null,
            ),
            Value::Null,
        ),
        base(delta(json!({}), json!("tool_calls")), Value::Null),
        base(json!([]), json!({"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43})),
    ]
}

fn completion() -> Value {
    json!({
        "id": "chatcmpl-7", "object": "chat.completion", "created": 1_700_000_001u32,
        "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Paris is the capital of France."}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    })
}

/// A fake OpenAI server: counts requests; `stream: true` gets SSE, a `"fail"` user message
/// a 400 error, anything else a completion.
struct FakeOpenAi {
    base: String,
    calls: Arc<AtomicUsize>,
}

async fn start() -> FakeOpenAi {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = socket.read(&mut tmp).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = socket.read(&mut tmp).await.unwrap();
                    buf.extend_from_slice(&tmp[..n]);
                }
                counter.fetch_add(1, SeqCst);
                let body: Value =
                    serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
                let response = if body.to_string().contains("\"fail\"") {
                    let err = r#"{"error":{"message":"bad request","type":"invalid_request_error","param":null,"code":null}}"#;
                    format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{err}",
                        err.len()
                    )
                } else if body["stream"] == json!(true) {
                    let mut events = String::new();
                    for c in sse_chunks() {
                        events.push_str(&format!("data: {c}\n\n"));
                    }
                    events.push_str("data: [DONE]\n\n");
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n{events}"
                    )
                } else {
                    let json = completion().to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                        json.len()
                    )
                };
                socket.write_all(response.as_bytes()).await.unwrap();
                let _ = socket.shutdown().await;
            });
        }
    });
    FakeOpenAi { base, calls }
}

fn chat(server: &FakeOpenAi) -> CachedChat<OpenAIConfig> {
    let cache = Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap();
    let client =
        Client::with_config(OpenAIConfig::new().with_api_base(&server.base).with_api_key("test"));
    CachedChat::new(client, ModelResponseCache::new(cache))
}

fn request(question: &str) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages(vec![
            ChatCompletionRequestSystemMessageArgs::default()
                .content("Be brief.")
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content(question)
                .build()
                .unwrap()
                .into(),
        ])
        .temperature(0.0)
        .build()
        .unwrap()
}

fn expected_chunks() -> Vec<CreateChatCompletionStreamResponse> {
    sse_chunks().into_iter().map(|c| serde_json::from_value(c).unwrap()).collect()
}

#[tokio::test]
async fn create_hits_the_cache_the_second_time() {
    let server = start().await;
    let chat = chat(&server);
    let first = chat.create(request("Capital of France?")).await.unwrap();
    let second = chat.create(request("Capital of France?")).await.unwrap();
    assert_eq!(server.calls.load(SeqCst), 1);
    assert_eq!(
        first,
        serde_json::from_value(completion()).unwrap(),
        "a miss returns the provider's answer"
    );
    assert_eq!(second.id, first.id);
    assert_eq!(second.choices[0].message.content, first.choices[0].message.content);
    assert_eq!(second.choices[0].finish_reason, first.choices[0].finish_reason);
    assert_eq!(second.usage, first.usage);
    let cost = &chat.models().cost_report().models["gpt-4o-mini"];
    assert_eq!((cost.requests, cost.hits, cost.prompt_tokens_saved), (2, 1, 20));
    // Another question goes to the server.
    chat.create(request("Capital of Italy?")).await.unwrap();
    assert_eq!(server.calls.load(SeqCst), 2);
}

#[tokio::test]
async fn create_stream_passes_through_then_replays_chunk_by_chunk() {
    let server = start().await;
    let chat = chat(&server);
    let live = chat.create_stream(request("Weather in Paris?")).await.unwrap();
    assert_eq!(live.source(), StreamSource::Provider);
    let live: Vec<_> = live.map(|c| c.unwrap()).collect().await;
    assert_eq!(live, expected_chunks());
    let replay = chat.create_stream(request("Weather in Paris?")).await.unwrap();
    assert_eq!(replay.source(), StreamSource::Replay);
    let replay: Vec<_> = replay.map(|c| c.unwrap()).collect().await;
    assert_eq!(replay.len(), expected_chunks().len());
    for (i, (got, want)) in replay.iter().zip(expected_chunks()).enumerate() {
        assert_eq!(got, &want, "chunk {i}");
    }
    assert_eq!(server.calls.load(SeqCst), 1);
    // The whole request is served from the recorded stream.
    let whole = chat.create(request("Weather in Paris?")).await.unwrap();
    assert_eq!(server.calls.load(SeqCst), 1);
    let message = &whole.choices[0].message;
    assert_eq!(message.content.as_deref(), Some("Checking the weather."));
    let calls = serde_json::to_value(&message.tool_calls).unwrap();
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(whole.usage.as_ref().unwrap().prompt_tokens, 31);
}

#[tokio::test]
async fn a_whole_answer_serves_a_stream() {
    let server = start().await;
    let chat = chat(&server);
    chat.create(request("Capital of France?")).await.unwrap();
    let replay = chat.create_stream(request("Capital of France?")).await.unwrap();
    assert_eq!(replay.source(), StreamSource::Replay);
    let text: String = replay
        .map(|c| c.unwrap())
        .filter_map(|c| async move { c.choices.first().and_then(|ch| ch.delta.content.clone()) })
        .collect()
        .await;
    assert_eq!(text, "Paris is the capital of France.");
    assert_eq!(server.calls.load(SeqCst), 1);
}

#[tokio::test]
async fn provider_errors_are_returned_and_not_cached() {
    let server = start().await;
    let chat = chat(&server);
    for _ in 0..2 {
        let err = chat.create(request("fail")).await.unwrap_err();
        let openai = provider_error_of::<OpenAIError>(&err).expect("the OpenAI error");
        assert!(openai.to_string().contains("bad request"), "{openai}");
    }
    assert_eq!(server.calls.load(SeqCst), 2);
}

#[tokio::test]
async fn model_requests_from_async_openai_requests() {
    let keys = KeyBuilder::default();
    let base = request("q");
    let key = |r: &CreateChatCompletionRequest| ModelRequest::from(r).key(&keys).unwrap();
    // Excluded: stream, user, metadata, store; OpenAI's defaults are the same as absent.
    let mut same = base.clone();
    same.stream = Some(true);
    #[allow(deprecated)]
    {
        same.user = Some("alice".into());
    }
    same.store = Some(true);
    same.n = Some(1);
    same.presence_penalty = Some(0.0);
    assert_eq!(key(&same), key(&base));
    let mut unset = base.clone();
    unset.temperature = None;
    let mut one = base.clone();
    one.temperature = Some(1.0);
    assert_eq!(key(&unset), key(&one), "temperature 1 is OpenAI's default");
    // Answer-changing fields.
    let mut changed = Vec::new();
    let mut r = base.clone();
    r.temperature = Some(0.7);
    changed.push(r);
    let mut r = base.clone();
    r.tool_choice = Some(serde_json::from_value(json!("required")).unwrap());
    changed.push(r);
    let mut r = base.clone();
    r.response_format = Some(serde_json::from_value(json!({"type": "json_object"})).unwrap());
    changed.push(r);
    let mut r = base.clone();
    r.max_completion_tokens = Some(10);
    changed.push(r);
    let mut r = base.clone();
    r.frequency_penalty = Some(0.5);
    changed.push(r);
    let mut r = base.clone();
    r.messages.remove(0); // the system prompt
    changed.push(r);
    let mut r = base.clone();
    r.tools = Some(vec![serde_json::from_value(json!({"type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}}}))
    .unwrap()]);
    changed.push(r);
    for (i, r) in changed.iter().enumerate() {
        assert_ne!(key(r), key(&base), "change {i}");
    }
    let m = ModelRequest::from(&base);
    assert_eq!(m.temperature, Some(0.0));
    assert_eq!(m.messages.len(), 2);
    let mut f32s = base.clone();
    f32s.temperature = Some(0.7);
    assert_eq!(ModelRequest::from(&f32s).temperature, Some(0.7), "no f32 noise");
}
