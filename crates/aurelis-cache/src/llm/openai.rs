//! The async-openai integration (feature `openai`): [`ModelRequest`] from a
//! [`CreateChatCompletionRequest`], conversions between async-openai's answers and
//! [`ModelResponse`] / [`ModelChunk`], and [`CachedChat`], chat `create` and `create_stream`
//! through a [`ModelResponseCache`].
//!
//! What the conversion puts where:
//! - in the key: messages (all roles, content parts, names, tool calls, tool results), tools,
//!   `tool_choice`, `response_format`, `temperature`, `top_p`, `max_completion_tokens` (or the
//!   older `max_tokens`), `stop`, `seed`, and every other parameter (penalties,
//!   `reasoning_effort`, `verbosity`, `logit_bias`, `prediction`, `web_search_options`, ...)
//!   in the provider map;
//! - left out as OpenAI's documented defaults (so absent and default share a key):
//!   `temperature` 1, `top_p` 1, `n` 1, `presence_penalty` and `frequency_penalty` 0,
//!   `logprobs` false, `parallel_tool_calls` true;
//! - never in the key: `stream`, `stream_options`, `user`, `safety_identifier`,
//!   `prompt_cache_key`, `metadata`, `store`, `service_tier`.
//!
//! Requests whose answer the neutral types cannot hold are passed through uncached:
//! `n` > 1, `logprobs`, audio output.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_openai::config::Config;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
};
use async_openai::Client;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use aurelis_cache_core::{Error, Result};

use super::{
    provider_error, ContentPart, FinishReason, Message, ModelChunk, ModelRequest, ModelResponse,
    ModelResponseCache, ModelStream, ResponseStatus, Role, StreamSource, ToolCall, ToolCallDelta,
    Usage,
};

/// Request fields never in the key.
const EXCLUDED: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "metadata",
    "store",
    "service_tier",
];

impl From<&CreateChatCompletionRequest> for ModelRequest {
    fn from(request: &CreateChatCompletionRequest) -> Self {
        let mut fields = match serde_json::to_value(request) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut out = ModelRequest::new(request.model.clone());
        fields.remove("model");
        if let Some(Value::Array(messages)) = fields.remove("messages") {
            out.messages = messages.iter().map(message_from_json).collect();
        }
        if let Some(Value::Array(tools)) = fields.remove("tools") {
            out.tools = tools;
        }
        out.tool_choice = fields.remove("tool_choice").filter(|v| !v.is_null());
        out.response_format = fields.remove("response_format").filter(|v| !v.is_null());
        // f32 as the caller wrote it (0.7, not 0.699999988079071).
        let f32_to_f64 = |x: f32| x.to_string().parse::<f64>().unwrap_or(x as f64);
        fields.remove("temperature");
        out.temperature = request.temperature.filter(|t| *t != 1.0).map(f32_to_f64);
        fields.remove("top_p");
        out.top_p = request.top_p.filter(|p| *p != 1.0).map(f32_to_f64);
        let max_completion = fields.remove("max_completion_tokens").and_then(|v| v.as_u64());
        let legacy = fields.remove("max_tokens").and_then(|v| v.as_u64());
        out.max_tokens = max_completion.or(legacy).and_then(|n| u32::try_from(n).ok());
        if let (Some(_), Some(legacy)) = (max_completion, legacy) {
            out.params.insert("max_tokens".into(), legacy.into());
        }
        match fields.remove("stop") {
            Some(Value::String(s)) => out.stop = vec![s],
            Some(Value::Array(items)) => {
                out.stop = items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            _ => {}
        }
        out.seed = fields.remove("seed").and_then(|v| v.as_i64());
        out.stream = request.stream.unwrap_or(false);
        out.user = fields
            .get("user")
            .or_else(|| fields.get("safety_identifier"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if let Some(Value::Object(metadata)) = fields.get("metadata") {
            out.metadata = metadata.clone().into_iter().collect();
        }
        for name in EXCLUDED {
            fields.remove(*name);
        }
        // OpenAI's documented defaults: the same as absent.
        let is_default = |name: &str, v: &Value| match name {
            "n" => v.as_u64() == Some(1),
            "presence_penalty" | "frequency_penalty" => v.as_f64() == Some(0.0),
            "logprobs" => v.as_bool() == Some(false),
            "parallel_tool_calls" => v.as_bool() == Some(true),
            _ => v.is_null(),
        };
        out.params.extend(fields.into_iter().filter(|(name, v)| !is_default(name, v)));
        out
    }
}

fn message_from_json(m: &Value) -> Message {
    let role = match m.get("role").and_then(Value::as_str) {
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        Some("assistant") => Role::Assistant,
        Some("tool") | Some("function") => Role::Tool,
        _ => Role::User,
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => vec![ContentPart::text(s.clone())],
        Some(Value::Array(parts)) => parts.iter().map(part_from_json).collect(),
        _ => Vec::new(),
    };
    let tool_calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().map(tool_call_from_json).collect())
        .unwrap_or_default();
    let mut message = Message::with_parts(role, content);
    message.name = m.get("name").and_then(Value::as_str).map(str::to_owned);
    message.tool_calls = tool_calls;
    message.tool_call_id = m.get("tool_call_id").and_then(Value::as_str).map(str::to_owned);
    // Anything else an assistant message carries (refusal, audio) is part of the question.
    if let Some(extra) = m.get("refusal").filter(|v| !v.is_null()) {
        message.content.push(ContentPart::Other { value: json!({"refusal": extra}) });
    }
    if let Some(extra) = m.get("audio").filter(|v| !v.is_null()) {
        message.content.push(ContentPart::Other { value: json!({"audio": extra}) });
    }
    message
}

fn part_from_json(p: &Value) -> ContentPart {
    match p.get("type").and_then(Value::as_str) {
        Some("text") => ContentPart::text(p.get("text").and_then(Value::as_str).unwrap_or("")),
        Some("image_url") => ContentPart::ImageUrl {
            url: p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("").to_owned(),
            detail: p.pointer("/image_url/detail").and_then(Value::as_str).map(str::to_owned),
        },
        Some("input_audio") => ContentPart::InputAudio {
            data: p.pointer("/input_audio/data").and_then(Value::as_str).unwrap_or("").to_owned(),
            format: p
                .pointer("/input_audio/format")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        },
        _ => ContentPart::Other { value: p.clone() },
    }
}

fn tool_call_from_json(c: &Value) -> ToolCall {
    let kind = c.get("type").and_then(Value::as_str).unwrap_or("function").to_owned();
    let body = c.get(&kind).or_else(|| c.get("function"));
    let text = |v: Option<&Value>, field: &str| {
        v.and_then(|v| v.get(field)).and_then(Value::as_str).unwrap_or("").to_owned()
    };
    ToolCall {
        id: c.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
        name: text(body, "name"),
        arguments: if kind == "custom" { text(body, "input") } else { text(body, "arguments") },
        kind,
    }
}

fn usage_from_json(u: &Value) -> Option<Usage> {
    if u.is_null() {
        return None;
    }
    Some(Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        cached_tokens: u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

fn usage_to_json(u: &Usage) -> Value {
    let mut usage = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    });
    if u.cached_tokens > 0 {
        usage["prompt_tokens_details"] = json!({"cached_tokens": u.cached_tokens});
    }
    usage
}

/// Provider strings kept in `metadata`.
const META: &[&str] = &["system_fingerprint", "service_tier"];

/// A [`ModelResponse`] from async-openai's answer (its first choice).
pub fn response_from_openai(r: &CreateChatCompletionResponse, latency: Duration) -> ModelResponse {
    let v = serde_json::to_value(r).unwrap_or(Value::Null);
    let choice = v.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let finish = choice.get("finish_reason").and_then(Value::as_str).map(FinishReason::parse);
    let mut out = ModelResponse {
        status: ResponseStatus::from_finish(finish.as_ref()),
        model: r.model.clone(),
        content: message.get("content").and_then(Value::as_str).unwrap_or("").to_owned(),
        refusal: message.get("refusal").and_then(Value::as_str).map(str::to_owned),
        tool_calls: message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|c| c.iter().map(tool_call_from_json).collect())
            .unwrap_or_default(),
        finish_reason: finish,
        usage: v.get("usage").and_then(usage_from_json),
        provider_latency: latency,
        id: Some(r.id.clone()),
        created: Some(u64::from(r.created)),
        ..Default::default()
    };
    for name in META {
        if let Some(s) = v.get(*name).and_then(Value::as_str) {
            out.metadata.insert((*name).to_owned(), s.to_owned());
        }
    }
    out
}

fn tool_call_to_json(c: &ToolCall) -> Value {
    if c.kind == "custom" {
        json!({"type": "custom", "id": c.id, "custom": {"name": c.name, "input": c.arguments}})
    } else {
        json!({"type": "function", "id": c.id, "function": {"name": c.name, "arguments": c.arguments}})
    }
}

fn with_meta(mut v: Value, metadata: &std::collections::BTreeMap<String, String>) -> Value {
    for name in META {
        if let Some(s) = metadata.get(*name) {
            v[*name] = Value::String(s.clone());
        }
    }
    v
}

/// async-openai's answer from a [`ModelResponse`] (one choice).
///
/// # Errors
///
/// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when async-openai's types cannot hold it.
pub fn response_to_openai(r: &ModelResponse) -> Result<CreateChatCompletionResponse> {
    let mut message = json!({"role": "assistant"});
    if !r.content.is_empty() || r.tool_calls.is_empty() {
        message["content"] = Value::String(r.content.clone());
    }
    if let Some(refusal) = &r.refusal {
        message["refusal"] = Value::String(refusal.clone());
    }
    if !r.tool_calls.is_empty() {
        message["tool_calls"] = r.tool_calls.iter().map(tool_call_to_json).collect();
    }
    let v = json!({
        "id": r.id.clone().unwrap_or_default(),
        "object": "chat.completion",
        "created": r.created.unwrap_or(0),
        "model": r.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": r.finish_reason.as_ref().map(FinishReason::as_str),
        }],
        "usage": r.usage.as_ref().map(usage_to_json),
    });
    serde_json::from_value(with_meta(v, &r.metadata)).map_err(|e| {
        Error::codec("model answer does not fit async-openai's response").with_source(e)
    })
}

/// A [`ModelChunk`] from one of async-openai's stream chunks (its first choice).
pub fn chunk_from_openai(c: &CreateChatCompletionStreamResponse) -> ModelChunk {
    let v = serde_json::to_value(c).unwrap_or(Value::Null);
    let choice = v.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let delta = choice.get("delta").cloned().unwrap_or(Value::Null);
    let text = |field: &str| delta.get(field).and_then(Value::as_str).map(str::to_owned);
    let mut out = ModelChunk {
        id: Some(c.id.clone()),
        model: Some(c.model.clone()),
        created: Some(u64::from(c.created)),
        role: delta.get("role").and_then(Value::as_str).map(|_| Role::Assistant),
        content: text("content"),
        refusal: text("refusal"),
        // Not in OpenAI's types; OpenAI-compatible servers (DeepSeek, vLLM) send it.
        reasoning: text("reasoning_content"),
        tool_calls: delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .map(|d| ToolCallDelta {
                        index: d.get("index").and_then(Value::as_u64).unwrap_or(0) as u32,
                        id: d.get("id").and_then(Value::as_str).map(str::to_owned),
                        kind: d.get("type").and_then(Value::as_str).map(str::to_owned),
                        name: d
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        arguments: d
                            .pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(FinishReason::parse),
        usage: v.get("usage").and_then(usage_from_json),
        ..Default::default()
    };
    for name in META {
        if let Some(s) = v.get(*name).and_then(Value::as_str) {
            out.metadata.insert((*name).to_owned(), s.to_owned());
        }
    }
    out
}

/// One of async-openai's stream chunks from a [`ModelChunk`].
///
/// # Errors
///
/// [`ErrorKind::Codec`](crate::ErrorKind::Codec) when async-openai's types cannot hold it.
pub fn chunk_to_openai(c: &ModelChunk) -> Result<CreateChatCompletionStreamResponse> {
    let mut delta = Map::new();
    if c.role.is_some() {
        delta.insert("role".into(), "assistant".into());
    }
    if let Some(t) = &c.content {
        delta.insert("content".into(), t.clone().into());
    }
    if let Some(t) = &c.refusal {
        delta.insert("refusal".into(), t.clone().into());
    }
    if !c.tool_calls.is_empty() {
        let calls = c
            .tool_calls
            .iter()
            .map(|d| {
                let mut call = json!({"index": d.index});
                if let Some(id) = &d.id {
                    call["id"] = id.clone().into();
                }
                if let Some(kind) = &d.kind {
                    call["type"] = kind.clone().into();
                }
                let mut function = Map::new();
                if let Some(name) = &d.name {
                    function.insert("name".into(), name.clone().into());
                }
                if let Some(args) = &d.arguments {
                    function.insert("arguments".into(), args.clone().into());
                }
                if !function.is_empty() {
                    call["function"] = Value::Object(function);
                }
                call
            })
            .collect();
        delta.insert("tool_calls".into(), Value::Array(calls));
    }
    // OpenAI's usage chunk has no choice at all.
    let usage_only =
        c.usage.is_some() && delta.is_empty() && c.finish_reason.is_none() && c.reasoning.is_none();
    let choices = if usage_only {
        json!([])
    } else {
        json!([{
            "index": 0,
            "delta": delta,
            "finish_reason": c.finish_reason.as_ref().map(FinishReason::as_str),
        }])
    };
    let v = json!({
        "id": c.id.clone().unwrap_or_default(),
        "object": "chat.completion.chunk",
        "created": c.created.unwrap_or(0),
        "model": c.model.clone().unwrap_or_default(),
        "choices": choices,
        "usage": c.usage.as_ref().map(usage_to_json),
    });
    serde_json::from_value(with_meta(v, &c.metadata))
        .map_err(|e| Error::codec("model chunk does not fit async-openai's chunk").with_source(e))
}

/// Whether the answer to `request` fits the neutral types (one choice, no log probabilities,
/// no audio).
fn cacheable(request: &CreateChatCompletionRequest) -> bool {
    request.n.unwrap_or(1) <= 1
        && !request.logprobs.unwrap_or(false)
        && request.top_logprobs.is_none()
        && request.audio.is_none()
}

/// async-openai's chat completions through a [`ModelResponseCache`].
///
/// # Examples
///
/// ```no_run
/// use async_openai::{config::OpenAIConfig, Client};
/// use async_openai::types::chat::CreateChatCompletionRequestArgs;
/// use aurelis_cache::llm::{openai::CachedChat, ModelResponseCache};
/// # async fn f(models: ModelResponseCache) -> aurelis_cache::Result<()> {
/// let chat = CachedChat::new(Client::with_config(OpenAIConfig::new()), models);
/// let request = CreateChatCompletionRequestArgs::default()
///     .model("gpt-4o-mini")
///     .messages(vec![async_openai::types::chat::ChatCompletionRequestUserMessageArgs::default()
///         .content("Hi").build().unwrap().into()])
///     .temperature(0.0)
///     .build()
///     .unwrap();
/// let answer = chat.create(request.clone()).await?;   // the provider
/// let again = chat.create(request).await?;            // the cache
/// assert_eq!(answer.choices[0].message.content, again.choices[0].message.content);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CachedChat<C: Config> {
    client: Client<C>,
    models: ModelResponseCache,
}

impl<C: Config + Clone + Send + Sync + 'static> CachedChat<C> {
    /// Chat completions of `client`, cached in `models`.
    pub fn new(client: Client<C>, models: ModelResponseCache) -> Self {
        CachedChat { client, models }
    }

    /// The model cache.
    pub fn models(&self) -> &ModelResponseCache {
        &self.models
    }

    /// `client.chat().create(request)`, from the cache when it can be. On a miss the
    /// provider's own response is returned as it came; a hit is rebuilt from the cached
    /// answer (one choice, same id, content, tool calls, finish reason and usage).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Loader`](crate::ErrorKind::Loader) with the [`OpenAIError`] in the chain
    /// of sources ([`provider_error_of`](super::provider_error_of)), or a cache error.
    pub async fn create(
        &self,
        request: CreateChatCompletionRequest,
    ) -> Result<CreateChatCompletionResponse> {
        if !cacheable(&request) {
            return self.client.chat().create(request).await.map_err(provider_error);
        }
        let model_request = ModelRequest::from(&request);
        let original: Arc<Mutex<Option<CreateChatCompletionResponse>>> = Arc::default();
        let keep = original.clone();
        let client = self.client.clone();
        let response = self
            .models
            .get_or_call(&model_request, move || async move {
                let started = Instant::now();
                let r = client.chat().create(request).await?;
                let neutral = response_from_openai(&r, started.elapsed());
                *keep.lock() = Some(r);
                Ok::<_, OpenAIError>(neutral)
            })
            .await?;
        if !response.from_cache {
            if let Some(r) = original.lock().take() {
                return Ok(r);
            }
        }
        response_to_openai(&response)
    }

    /// `client.chat().create_stream(request)`, from the cache when it can be: a replay of a
    /// cached answer, a share of an identical stream in flight, or the provider's stream
    /// passed through and recorded. Chunks are async-openai's, rebuilt from the recorded
    /// ones (one choice; the `obfuscation` padding is not kept).
    ///
    /// # Errors
    ///
    /// As [`CachedChat::create`]; errors during the stream are items of the stream.
    pub async fn create_stream(&self, request: CreateChatCompletionRequest) -> Result<ChatStream> {
        let model_request = ModelRequest::from(&request);
        if !cacheable(&request) {
            let stream = self.client.chat().create_stream(request).await.map_err(provider_error)?;
            return Ok(ChatStream {
                source: StreamSource::Bypass,
                inner: Box::pin(stream.map(|item| item.map_err(provider_error))),
            });
        }
        let client = self.client.clone();
        let stream = self
            .models
            .stream(&model_request, move || async move {
                let stream = client.chat().create_stream(request).await?;
                Ok::<_, OpenAIError>(stream.map(|item| item.map(|c| chunk_from_openai(&c))))
            })
            .await?;
        Ok(ChatStream::from_model_stream(stream))
    }
}

/// A stream of async-openai chunks from [`CachedChat::create_stream`].
pub struct ChatStream {
    source: StreamSource,
    inner: Pin<Box<dyn Stream<Item = Result<CreateChatCompletionStreamResponse>> + Send>>,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream").field("source", &self.source).finish_non_exhaustive()
    }
}

impl ChatStream {
    fn from_model_stream(stream: ModelStream) -> Self {
        let source = stream.source();
        ChatStream {
            source,
            inner: Box::pin(stream.map(|item| item.and_then(|c| chunk_to_openai(&c)))),
        }
    }

    /// Where the chunks come from.
    pub fn source(&self) -> StreamSource {
        self.source
    }
}

impl Stream for ChatStream {
    type Item = Result<CreateChatCompletionStreamResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
