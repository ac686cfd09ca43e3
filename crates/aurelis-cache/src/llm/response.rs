//! [`ModelResponse`] (a whole answer), [`ModelChunk`] (one piece of a streamed answer), and
//! the conversions between them: chunks assemble into a response, a response splits into
//! chunks, so a streamed and a whole request serve each other.
//!
//! These types hold no `serde_json::Value`, no untagged enum and no skipped-if field, so
//! every codec of the cache (MessagePack, JSON, postcard) round-trips them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::request::{Role, ToolCall};

/// How a model call ended, as the reference's `status`.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::{FinishReason, ResponseStatus};
/// assert_eq!(ResponseStatus::from_finish(Some(&FinishReason::Stop)), ResponseStatus::Success);
/// assert_eq!(ResponseStatus::from_finish(Some(&FinishReason::Length)), ResponseStatus::Incomplete);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// A complete answer.
    #[default]
    Success,
    /// An answer cut short (token limit, content filter): cached only when the policy says so,
    /// and for the shorter TTL.
    Incomplete,
    /// A failed call: never cached.
    Error,
}

impl ResponseStatus {
    /// The status a finish reason implies: cut short for `length` and `content_filter`,
    /// complete otherwise (also when there is none).
    pub fn from_finish(finish: Option<&FinishReason>) -> Self {
        match finish {
            Some(f) if f.is_truncated() => ResponseStatus::Incomplete,
            _ => ResponseStatus::Success,
        }
    }
}

/// Why the model stopped.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::FinishReason;
/// assert_eq!(FinishReason::parse("tool_calls"), FinishReason::ToolCalls);
/// assert_eq!(FinishReason::parse("end_turn"), FinishReason::Other("end_turn".into()));
/// assert!(FinishReason::ContentFilter.is_truncated());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    /// The model called tools.
    ToolCalls,
    /// The provider's content filter removed output.
    ContentFilter,
    /// Anything else the provider says.
    Other(String),
}

impl FinishReason {
    /// From a provider's string (`stop`, `length`, `tool_calls`, `content_filter`).
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// The provider string.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }

    /// Whether the answer was cut short (`length`, `content_filter`).
    pub fn is_truncated(&self) -> bool {
        matches!(self, FinishReason::Length | FinishReason::ContentFilter)
    }
}

/// Token counts of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens (reasoning included).
    pub completion_tokens: u64,
    /// Input tokens the provider served from its own prompt cache.
    pub cached_tokens: u64,
}

impl Usage {
    /// Input and output tokens.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage { prompt_tokens, completion_tokens, cached_tokens: 0 }
    }
}

/// A model's whole answer.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::{FinishReason, ModelResponse, ResponseStatus, Usage};
/// let r = ModelResponse::success("gpt-4o", "Hello!")
///     .finish(FinishReason::Length)
///     .usage(Usage::new(12, 2));
/// assert_eq!(r.status, ResponseStatus::Incomplete);
/// assert!(!r.from_cache);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelResponse {
    /// How the call ended.
    pub status: ResponseStatus,
    /// The model that answered.
    pub model: String,
    /// The answer's text.
    pub content: String,
    /// The model's reasoning, where the provider returns it.
    pub reasoning: Option<String>,
    /// A refusal message, where the provider returns one.
    pub refusal: Option<String>,
    /// The tools the model called.
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped.
    pub finish_reason: Option<FinishReason>,
    /// Token counts.
    pub usage: Option<Usage>,
    /// How long the provider took (measured by the cache when the provider does not say).
    pub provider_latency: Duration,
    /// The provider's id of the answer.
    pub id: Option<String>,
    /// The provider's creation time (Unix seconds).
    pub created: Option<u64>,
    /// The error message of a failed call.
    pub error: Option<String>,
    /// Other provider strings (`system_fingerprint`, `service_tier`, ...).
    pub metadata: BTreeMap<String, String>,
    /// Whether this answer came from the cache (or a shared call) rather than a call of its
    /// own. Never stored.
    #[serde(skip)]
    pub from_cache: bool,
    /// Set when the answer is a similar earlier question's (feature `similarity`): which
    /// prompt matched and how closely. Never stored.
    #[serde(skip)]
    pub similar_to: Option<SimilarTo>,
}

/// The earlier question whose answer was served for a similar one.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SimilarTo {
    /// The stored prompt that matched.
    pub prompt: String,
    /// The lexical similarity, in `[0, 1]`.
    pub lexical: f64,
    /// The cosine similarity, when an embedder is configured.
    pub cosine: Option<f32>,
}

impl ModelResponse {
    /// A complete answer with `content`.
    pub fn success(model: impl Into<String>, content: impl Into<String>) -> Self {
        ModelResponse {
            status: ResponseStatus::Success,
            model: model.into(),
            content: content.into(),
            finish_reason: Some(FinishReason::Stop),
            ..Default::default()
        }
    }

    /// A failed call (never cached).
    pub fn error(model: impl Into<String>, message: impl Into<String>) -> Self {
        ModelResponse {
            status: ResponseStatus::Error,
            model: model.into(),
            error: Some(message.into()),
            ..Default::default()
        }
    }

    /// Sets the finish reason, and the status it implies (unless the status is `Error`).
    pub fn finish(mut self, reason: FinishReason) -> Self {
        if self.status != ResponseStatus::Error {
            self.status = ResponseStatus::from_finish(Some(&reason));
        }
        self.finish_reason = Some(reason);
        self
    }

    /// Sets the usage.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Adds a tool call.
    pub fn tool_call(mut self, call: ToolCall) -> Self {
        self.tool_calls.push(call);
        self
    }

    /// Sets the reasoning.
    pub fn reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning = Some(reasoning.into());
        self
    }

    /// Whether the answer was cut short (by its finish reason or its status).
    pub fn is_truncated(&self) -> bool {
        self.status == ResponseStatus::Incomplete
            || self.finish_reason.as_ref().is_some_and(FinishReason::is_truncated)
    }

    /// Assembles streamed chunks into the whole answer: texts concatenated, tool calls
    /// joined by index (ids and names as first given, argument fragments appended), the last
    /// finish reason and usage, the first id, model and creation time.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::llm::{FinishReason, ModelChunk, ModelResponse};
    /// let chunks = [ModelChunk::text("Hel"), ModelChunk::text("lo"), ModelChunk::finished(FinishReason::Stop)];
    /// let r = ModelResponse::from_chunks(&chunks);
    /// assert_eq!(r.content, "Hello");
    /// assert_eq!(r.to_chunks().len(), 2); // text, finish
    /// ```
    pub fn from_chunks(chunks: &[ModelChunk]) -> Self {
        let mut r = ModelResponse::default();
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        for c in chunks {
            if r.id.is_none() {
                r.id.clone_from(&c.id);
            }
            if r.model.is_empty() {
                if let Some(m) = &c.model {
                    r.model.clone_from(m);
                }
            }
            if r.created.is_none() {
                r.created = c.created;
            }
            if let Some(t) = &c.content {
                r.content.push_str(t);
            }
            if let Some(t) = &c.reasoning {
                r.reasoning.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = &c.refusal {
                r.refusal.get_or_insert_with(String::new).push_str(t);
            }
            for d in &c.tool_calls {
                let call = calls.entry(d.index).or_default();
                if let Some(id) = &d.id {
                    if call.id.is_empty() {
                        call.id.clone_from(id);
                    }
                }
                if let Some(kind) = &d.kind {
                    if call.kind.is_empty() {
                        call.kind.clone_from(kind);
                    }
                }
                if let Some(name) = &d.name {
                    call.name.push_str(name);
                }
                if let Some(args) = &d.arguments {
                    call.arguments.push_str(args);
                }
            }
            if c.finish_reason.is_some() {
                r.finish_reason.clone_from(&c.finish_reason);
            }
            if c.usage.is_some() {
                r.usage = c.usage;
            }
            for (k, v) in &c.metadata {
                r.metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        r.tool_calls = calls.into_values().collect();
        r.status = ResponseStatus::from_finish(r.finish_reason.as_ref());
        r
    }

    /// Splits the answer into chunks a streaming caller can consume: the role with the
    /// reasoning, the text, the refusal, one chunk per tool call, and the finish reason with
    /// the usage. [`ModelResponse::from_chunks`] gives the answer back.
    pub fn to_chunks(&self) -> Vec<ModelChunk> {
        let base = ModelChunk {
            id: self.id.clone(),
            model: (!self.model.is_empty()).then(|| self.model.clone()),
            created: self.created,
            metadata: self.metadata.clone(),
            ..Default::default()
        };
        let mut out = Vec::new();
        if let Some(reasoning) = &self.reasoning {
            out.push(ModelChunk {
                role: Some(Role::Assistant),
                reasoning: Some(reasoning.clone()),
                ..base.clone()
            });
        }
        if !self.content.is_empty() || out.is_empty() && self.tool_calls.is_empty() {
            out.push(ModelChunk { content: Some(self.content.clone()), ..base.clone() });
        }
        if let Some(refusal) = &self.refusal {
            out.push(ModelChunk { refusal: Some(refusal.clone()), ..base.clone() });
        }
        for (i, call) in self.tool_calls.iter().enumerate() {
            out.push(ModelChunk {
                tool_calls: vec![ToolCallDelta {
                    index: i as u32,
                    id: Some(call.id.clone()),
                    kind: Some(call.kind.clone()),
                    name: Some(call.name.clone()),
                    arguments: Some(call.arguments.clone()),
                }],
                ..base.clone()
            });
        }
        if let Some(first) = out.first_mut() {
            first.role = Some(Role::Assistant);
        }
        if self.finish_reason.is_some() || self.usage.is_some() {
            out.push(ModelChunk {
                finish_reason: self.finish_reason.clone(),
                usage: self.usage,
                ..base
            });
        }
        out
    }
}

/// A piece of a tool call in a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the answer this piece belongs to.
    pub index: u32,
    /// The call's id (in its first piece).
    pub id: Option<String>,
    /// The tool's kind (in its first piece).
    pub kind: Option<String>,
    /// The tool's name (in its first piece).
    pub name: Option<String>,
    /// A fragment of the arguments.
    pub arguments: Option<String>,
}

/// One piece of a streamed answer, as the provider sent it. A replay yields the same pieces,
/// in order, with the same boundaries.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::ModelChunk;
/// let c = ModelChunk::text("Hi");
/// assert_eq!(c.content.as_deref(), Some("Hi"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelChunk {
    /// The provider's id of the answer.
    pub id: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The provider's creation time (Unix seconds).
    pub created: Option<u64>,
    /// The role, in the first piece.
    pub role: Option<Role>,
    /// A text fragment.
    pub content: Option<String>,
    /// A reasoning fragment.
    pub reasoning: Option<String>,
    /// A refusal fragment.
    pub refusal: Option<String>,
    /// Tool call pieces.
    pub tool_calls: Vec<ToolCallDelta>,
    /// Why the model stopped, in the last piece.
    pub finish_reason: Option<FinishReason>,
    /// Token counts, usually in the last piece.
    pub usage: Option<Usage>,
    /// Other provider strings (`system_fingerprint`, ...).
    pub metadata: BTreeMap<String, String>,
}

impl ModelChunk {
    /// A text fragment.
    pub fn text(text: impl Into<String>) -> Self {
        ModelChunk { content: Some(text.into()), ..Default::default() }
    }

    /// A reasoning fragment.
    pub fn reasoning(text: impl Into<String>) -> Self {
        ModelChunk { reasoning: Some(text.into()), ..Default::default() }
    }

    /// A tool call piece.
    pub fn tool_call(delta: ToolCallDelta) -> Self {
        ModelChunk { tool_calls: vec![delta], ..Default::default() }
    }

    /// The last piece: why the model stopped.
    pub fn finished(reason: FinishReason) -> Self {
        ModelChunk { finish_reason: Some(reason), ..Default::default() }
    }

    /// Sets the usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }
}

/// A recorded stream: its chunks and when each arrived (microseconds after the call began),
/// for a replay with the original pacing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StreamRecording {
    pub(crate) chunks: Vec<ModelChunk>,
    pub(crate) offsets_us: Vec<u64>,
    /// From the call to the end of the stream.
    pub(crate) total_us: u64,
}

/// What the model cache stores under a request's key: a whole answer or a recorded stream.
/// Either serves both kinds of request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum StoredAnswer {
    Whole(Box<ModelResponse>),
    Stream(StreamRecording),
}

impl StoredAnswer {
    /// The whole answer (assembled from a stream's chunks).
    pub(crate) fn to_response(&self) -> ModelResponse {
        match self {
            StoredAnswer::Whole(r) => (**r).clone(),
            StoredAnswer::Stream(rec) => {
                let mut r = ModelResponse::from_chunks(&rec.chunks);
                r.provider_latency = Duration::from_micros(rec.total_us);
                r
            }
        }
    }

    /// The usage of the call that produced the answer.
    pub(crate) fn usage(&self) -> Option<Usage> {
        match self {
            StoredAnswer::Whole(r) => r.usage,
            StoredAnswer::Stream(rec) => rec.chunks.iter().rev().find_map(|c| c.usage),
        }
    }

    /// How long the provider took.
    pub(crate) fn provider_latency(&self) -> Duration {
        match self {
            StoredAnswer::Whole(r) => r.provider_latency,
            StoredAnswer::Stream(rec) => Duration::from_micros(rec.total_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_assemble_tool_calls_by_index_and_split_back() {
        let chunks = vec![
            ModelChunk { role: Some(Role::Assistant), ..ModelChunk::reasoning("think ") },
            ModelChunk::reasoning("more"),
            ModelChunk::tool_call(ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                kind: Some("function".into()),
                name: Some("f".into()),
                arguments: Some("{\"a\":".into()),
            }),
            ModelChunk::tool_call(ToolCallDelta {
                index: 1,
                id: Some("c2".into()),
                kind: Some("function".into()),
                name: Some("g".into()),
                arguments: Some("{}".into()),
            }),
            ModelChunk::tool_call(ToolCallDelta {
                index: 0,
                arguments: Some("1}".into()),
                ..Default::default()
            }),
            ModelChunk::finished(FinishReason::ToolCalls).with_usage(Usage::new(3, 4)),
        ];
        let r = ModelResponse::from_chunks(&chunks);
        assert_eq!(r.reasoning.as_deref(), Some("think more"));
        assert_eq!(
            r.tool_calls,
            [ToolCall::function("c1", "f", "{\"a\":1}"), ToolCall::function("c2", "g", "{}")]
        );
        assert_eq!(r.status, ResponseStatus::Success);
        assert_eq!(r.usage, Some(Usage::new(3, 4)));
        let again = ModelResponse::from_chunks(&r.to_chunks());
        assert_eq!(again, r);
    }

    #[test]
    fn truncated_streams_are_incomplete() {
        let r = ModelResponse::from_chunks(&[
            ModelChunk::text("cut"),
            ModelChunk::finished(FinishReason::Length),
        ]);
        assert_eq!(r.status, ResponseStatus::Incomplete);
        assert!(r.is_truncated());
    }

    #[test]
    fn every_codec_round_trips_a_stored_answer() {
        let answer = StoredAnswer::Stream(StreamRecording {
            chunks: vec![
                ModelChunk::reasoning("r"),
                ModelChunk::text("t"),
                ModelChunk::finished(FinishReason::Other("x".into())),
            ],
            offsets_us: vec![1, 2, 3],
            total_us: 4,
        });
        let whole = StoredAnswer::Whole(Box::new(
            ModelResponse::success("m", "hi").tool_call(ToolCall::function("1", "f", "{}")),
        ));
        for codec in [
            aurelis_cache_core::Codec::MessagePack,
            aurelis_cache_core::Codec::Json,
            aurelis_cache_core::Codec::Postcard,
        ] {
            for a in [&answer, &whole] {
                let bytes = codec.encode(a).unwrap();
                let back: StoredAnswer = codec.decode(&bytes).unwrap();
                assert_eq!(&back, a, "{codec:?}");
            }
        }
    }
}
