//! [`ModelRequest`]: what a model is asked, and its fingerprint.
//!
//! The fingerprint is the blake3 hash (128 bits in the key) of a canonical JSON document:
//! object keys sorted at every depth, fields at their default left out, and a schema version
//! ([`FINGERPRINT_SCHEMA`]) inside the document, so a change of the scheme moves every key
//! deliberately. [`ModelRequest::explain`] shows that document field by field, and the fields
//! that were left out on purpose.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use aurelis_cache_core::{Error, Key, KeyBuilder, Params, Result};

/// The version of the fingerprint scheme, hashed into every model key. Bump it whenever the
/// canonical document of a request or the stored form of an answer changes.
pub const FINGERPRINT_SCHEMA: &str = "aurelis.model-request/1";

/// Who wrote a message.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::Role;
/// assert_eq!(serde_json::to_string(&Role::Assistant).unwrap(), r#""assistant""#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The system prompt.
    System,
    /// Developer instructions (OpenAI's successor of `system` for reasoning models).
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One part of a message's content.
///
/// A message whose content is a single text is the same, for the fingerprint, whether it was
/// given as a string or as one text part.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::ContentPart;
/// let part = ContentPart::image_url("https://example.invalid/cat.png");
/// assert_eq!(
///     serde_json::to_value(&part).unwrap(),
///     serde_json::json!({"type": "image_url", "url": "https://example.invalid/cat.png"})
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL (or `data:` URL).
    ImageUrl {
        /// The URL.
        url: String,
        /// The detail level asked for (`low`, `high`, `auto`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Audio input, base64.
    InputAudio {
        /// Base64 data.
        data: String,
        /// `wav`, `mp3`, ...
        format: String,
    },
    /// Any other part, as the provider's JSON.
    Other {
        /// The part's JSON.
        value: Value,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part without a detail level.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl { url: url.into(), detail: None }
    }
}

/// A tool call made by the model, in a request's assistant message or in a response.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::ToolCall;
/// let call = ToolCall::function("call_1", "get_weather", r#"{"city":"Paris"}"#);
/// assert_eq!(call.kind, "function");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, which the tool result refers to.
    pub id: String,
    /// The tool's kind (`function`).
    pub kind: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as the model wrote them (JSON text).
    pub arguments: String,
}

impl ToolCall {
    /// A function call.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// One message of a conversation.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::{Message, Role};
/// let m = Message::user("Hi");
/// assert_eq!(m.role, Role::User);
/// assert_eq!(m.text(), "Hi");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its content parts (a plain text message has one text part).
    #[serde(default)]
    pub content: Vec<ContentPart>,
    /// The author's name, where the provider supports one.
    #[serde(default)]
    pub name: Option<String>,
    /// The tool calls of an assistant message.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message of `role` with one text part.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![ContentPart::text(text)],
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Message::new(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Message::new(Role::User, text)
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::new(Role::Assistant, text)
    }

    /// A tool's result for the call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Message { tool_call_id: Some(tool_call_id.into()), ..Message::new(Role::Tool, text) }
    }

    /// A message of `role` with the given parts.
    pub fn with_parts(role: Role, parts: Vec<ContentPart>) -> Self {
        Message { content: parts, ..Message::new(role, "") }
    }

    /// Sets the author's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a tool call (assistant messages).
    pub fn tool_call(mut self, call: ToolCall) -> Self {
        self.tool_calls.push(call);
        self
    }

    /// The text parts, concatenated.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Everything a model is asked, for caching its answer.
///
/// The cache key is a fingerprint over every field that changes the answer: the model, the
/// system prompt, the messages (role, content parts, name, tool calls, tool results), the
/// tools, `tool_choice`, `response_format`, `temperature`, `top_p`, `max_tokens`, `stop`,
/// `seed` and the open map of provider parameters. The caller's identity (`user`), the
/// request id, the `stream` flag and `metadata` never change the key; [`ModelRequest::explain`]
/// lists them as excluded.
///
/// Canonical form (what two requests must share to share a key):
/// - `system` is the same as a leading system message with that text;
/// - a field at its default (`None`, an empty list or map, a `null` provider parameter) is
///   left out, so it is the same as absent. An *absent* `temperature` is **not** the same as
///   `Some(1.0)`: the default depends on the provider and model, so the cache does not guess
///   (the async-openai conversion knows OpenAI's defaults and drops them);
/// - `stop` sequences are a set (sorted, duplicates dropped); messages, content parts and
///   tools keep their order, which the model sees;
/// - `-0.0` is `0.0`; numbers are otherwise written as serde_json writes them.
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::{Message, ModelRequest};
///
/// let a = ModelRequest::new("gpt-4o").system("Be brief.").message(Message::user("Hi")).temperature(0.0);
/// let b = ModelRequest::new("gpt-4o")
///     .message(Message::system("Be brief."))
///     .message(Message::user("Hi"))
///     .temperature(0.0)
///     .user("alice")           // excluded: who asks does not change the answer
///     .stream(true);           // excluded: streamed and whole answers serve each other
/// assert_eq!(a.fingerprint(), b.fingerprint());
/// assert_ne!(a.fingerprint(), a.clone().temperature(0.7).fingerprint());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelRequest {
    /// The model.
    pub model: String,
    /// The system prompt (the same as a leading system message).
    #[serde(default)]
    pub system: Option<String>,
    /// The conversation.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Tool definitions, as the provider's JSON (name, description, parameter schema).
    #[serde(default)]
    pub tools: Vec<Value>,
    /// Which tool the model must or may call, as the provider's JSON (`"auto"`, `"none"`,
    /// `{"type":"function","function":{"name":..}}`).
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// The response format, as the provider's JSON (`{"type":"json_schema",...}`).
    #[serde(default)]
    pub response_format: Option<Value>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// The most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Vec<String>,
    /// The sampling seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Any other parameter the provider takes (penalties, `n`, reasoning effort, ...): all of
    /// them are in the key.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Excluded from the key: the end user the request is made for.
    #[serde(default)]
    pub user: Option<String>,
    /// Excluded from the key: the caller's id of this request (tracing).
    #[serde(default)]
    pub request_id: Option<String>,
    /// Excluded from the key: whether the answer is streamed.
    #[serde(default)]
    pub stream: bool,
    /// Excluded from the key: caller metadata (dashboards, billing tags, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

/// The fields that never change the key, and why.
const EXCLUDED: &[(&str, &str)] = &[
    ("user", "identifies the caller, not the question"),
    ("request_id", "differs on every call"),
    ("stream", "a streamed and a whole answer are served from each other"),
    ("metadata", "caller bookkeeping, not sent to the model as input"),
];

/// The fields that change the key, in the canonical document's order.
const INCLUDED: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "params",
];

impl ModelRequest {
    /// A request to `model` with nothing else set.
    pub fn new(model: impl Into<String>) -> Self {
        ModelRequest { model: model.into(), ..Default::default() }
    }

    /// Sets the system prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Appends a message.
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Appends a tool definition (the provider's JSON).
    pub fn tool(mut self, tool: Value) -> Self {
        self.tools.push(tool);
        self
    }

    /// Sets `tool_choice`.
    pub fn tool_choice(mut self, choice: Value) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets `response_format`.
    pub fn response_format(mut self, format: Value) -> Self {
        self.response_format = Some(format);
        self
    }

    /// Sets the temperature.
    pub fn temperature(mut self, t: f64) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets `top_p`.
    pub fn top_p(mut self, p: f64) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Adds a stop sequence.
    pub fn stop(mut self, stop: impl Into<String>) -> Self {
        self.stop.push(stop.into());
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets a provider parameter (in the key; `null` is the same as absent).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets the end user (not in the key).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the request id (not in the key).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the stream flag (not in the key).
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Whether the answer is sampled: a temperature above zero, or none given (every major
    /// provider's default temperature samples).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::llm::ModelRequest;
    /// assert!(ModelRequest::new("m").is_sampled());
    /// assert!(ModelRequest::new("m").temperature(0.7).is_sampled());
    /// assert!(!ModelRequest::new("m").temperature(0.0).is_sampled());
    /// ```
    pub fn is_sampled(&self) -> bool {
        self.temperature.is_none_or(|t| t > 0.0)
    }

    /// The canonical document, field by field (only the fields not at their default).
    fn canonical_fields(&self) -> Vec<(&'static str, Value)> {
        let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(12);
        fields.push(("model", Value::String(self.model.clone())));
        let mut messages: Vec<Value> = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = &self.system {
            messages.push(canonical_message(&Message::system(system.clone())));
        }
        messages.extend(self.messages.iter().map(canonical_message));
        if !messages.is_empty() {
            fields.push(("messages", Value::Array(messages)));
        }
        if !self.tools.is_empty() {
            fields.push(("tools", Value::Array(self.tools.iter().map(drop_nulls).collect())));
        }
        if let Some(v) = self.tool_choice.as_ref().filter(|v| !v.is_null()) {
            fields.push(("tool_choice", drop_nulls(v)));
        }
        if let Some(v) = self.response_format.as_ref().filter(|v| !v.is_null()) {
            fields.push(("response_format", drop_nulls(v)));
        }
        if let Some(t) = self.temperature {
            fields.push(("temperature", number(t)));
        }
        if let Some(p) = self.top_p {
            fields.push(("top_p", number(p)));
        }
        if let Some(n) = self.max_tokens {
            fields.push(("max_tokens", n.into()));
        }
        if !self.stop.is_empty() {
            let mut stop = self.stop.clone();
            stop.sort();
            stop.dedup();
            fields.push(("stop", stop.into()));
        }
        if let Some(seed) = self.seed {
            fields.push(("seed", seed.into()));
        }
        let params: serde_json::Map<String, Value> = self
            .params
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), drop_nulls(v)))
            .collect();
        if !params.is_empty() {
            fields.push(("params", Value::Object(params)));
        }
        fields
    }

    /// The canonical JSON document the fingerprint hashes: object keys sorted at every depth,
    /// defaults left out, the schema version inside.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::llm::{Message, ModelRequest};
    /// let r = ModelRequest::new("gpt-4o").message(Message::user("Hi")).temperature(0.0);
    /// assert_eq!(
    ///     r.canonical_json(),
    ///     r#"{"messages":[{"content":[{"text":"Hi","type":"text"}],"role":"user"}],"model":"gpt-4o","schema":"aurelis.model-request/1","temperature":0.0}"#
    /// );
    /// ```
    pub fn canonical_json(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_canonical(&mut out);
        out
    }

    /// Writes the canonical document straight into `out`, fields in sorted order (the same
    /// bytes as the document [`ModelRequest::explain`] shows field by field; a test checks
    /// that they agree).
    fn write_canonical(&self, out: &mut String) {
        let mut doc = ObjectWriter::new(out);
        if let Some(n) = self.max_tokens {
            doc.key("max_tokens").push_str(&n.to_string());
        }
        if self.system.is_some() || !self.messages.is_empty() {
            let out = doc.key("messages");
            out.push('[');
            let system = self.system.as_ref().map(|s| Message::system(s.clone()));
            for (i, m) in system.iter().chain(&self.messages).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_message(out, m);
            }
            out.push(']');
        }
        write_str(doc.key("model"), &self.model);
        if self.params.values().any(|v| !v.is_null()) {
            let out = doc.key("params");
            let mut params = ObjectWriter::new(out);
            for (k, v) in self.params.iter().filter(|(_, v)| !v.is_null()) {
                write_value(params.key(k), v);
            }
            params.end();
        }
        if let Some(v) = self.response_format.as_ref().filter(|v| !v.is_null()) {
            write_value(doc.key("response_format"), v);
        }
        write_str(doc.key("schema"), FINGERPRINT_SCHEMA);
        if let Some(seed) = self.seed {
            doc.key("seed").push_str(&seed.to_string());
        }
        if !self.stop.is_empty() {
            let mut stop: Vec<&String> = self.stop.iter().collect();
            stop.sort();
            stop.dedup();
            let out = doc.key("stop");
            out.push('[');
            for (i, s) in stop.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, s);
            }
            out.push(']');
        }
        if let Some(t) = self.temperature {
            write_value(doc.key("temperature"), &number(t));
        }
        if let Some(v) = self.tool_choice.as_ref().filter(|v| !v.is_null()) {
            write_value(doc.key("tool_choice"), v);
        }
        if !self.tools.is_empty() {
            let out = doc.key("tools");
            out.push('[');
            for (i, tool) in self.tools.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, tool);
            }
            out.push(']');
        }
        if let Some(p) = self.top_p {
            write_value(doc.key("top_p"), &number(p));
        }
        doc.end();
    }

    /// The fingerprint: blake3 of [`ModelRequest::canonical_json`], 128 bits as 32 hex digits.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::llm::ModelRequest;
    /// let fp = ModelRequest::new("gpt-4o").fingerprint();
    /// assert_eq!(fp.len(), 32);
    /// assert_eq!(fp, ModelRequest::new("gpt-4o").request_id("r-1").fingerprint());
    /// ```
    pub fn fingerprint(&self) -> String {
        aurelis_cache_core::key::hash_hex(self.canonical_json().as_bytes())
    }

    /// The cache key of this request under `keys`:
    /// `namespace:version:@model:<model>:<hash>`, built with
    /// [`KeyBuilder::build_model_key`] (so [`Cache::invalidate_model`](crate::Cache::invalidate_model)
    /// removes it) over the canonical document.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::{KeyBuilder, llm::ModelRequest};
    /// let keys = KeyBuilder::default();
    /// let key = ModelRequest::new("gpt-4o").key(&keys)?;
    /// assert!(key.as_str().starts_with(&keys.model_prefix("gpt-4o")?));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`](crate::ErrorKind::InvalidKey) for an empty model name or one
    /// with control characters.
    pub fn key(&self, keys: &KeyBuilder) -> Result<Key> {
        if self.model.is_empty() {
            return Err(Error::invalid_key("model request: the model name is empty"));
        }
        keys.build_model_key(&self.model, &self.canonical_json(), &Params::new())
    }

    /// What went into the key and what was left out, to see why two requests did or did not
    /// match ([`KeyExplanation::differences`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::llm::{Message, ModelRequest};
    /// let a = ModelRequest::new("gpt-4o").message(Message::user("Hi")).user("alice");
    /// let b = a.clone().temperature(0.0).user("bob");
    /// let (ea, eb) = (a.explain(), b.explain());
    /// assert_eq!(ea.differences(&eb), ["temperature"]);
    /// assert!(ea.excluded.iter().any(|f| f.name == "user" && f.present));
    /// assert!(ea.to_string().contains("temperature"));
    /// ```
    pub fn explain(&self) -> KeyExplanation {
        let fields = self.canonical_fields();
        let included = fields
            .iter()
            .map(|(name, value)| IncludedField { name, canonical: canonical_value(value) })
            .collect();
        let defaulted = INCLUDED
            .iter()
            .copied()
            .filter(|name| !fields.iter().any(|(n, _)| n == name))
            .collect();
        let excluded = EXCLUDED
            .iter()
            .map(|(name, reason)| ExcludedField {
                name,
                reason,
                present: match *name {
                    "user" => self.user.is_some(),
                    "request_id" => self.request_id.is_some(),
                    "stream" => self.stream,
                    _ => !self.metadata.is_empty(),
                },
            })
            .collect();
        KeyExplanation {
            schema: FINGERPRINT_SCHEMA,
            fingerprint: self.fingerprint(),
            included,
            defaulted,
            excluded,
        }
    }
}

/// One field of the fingerprint with its canonical value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncludedField {
    /// The field's name in the canonical document.
    pub name: &'static str,
    /// Its canonical JSON.
    pub canonical: String,
}

/// A field that never changes the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExcludedField {
    /// The field's name.
    pub name: &'static str,
    /// Why it is not in the key.
    pub reason: &'static str,
    /// Whether this request set it.
    pub present: bool,
}

/// What went into a request's key ([`ModelRequest::explain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyExplanation {
    /// The fingerprint scheme ([`FINGERPRINT_SCHEMA`]).
    pub schema: &'static str,
    /// The fingerprint (blake3, 128 bits, hex).
    pub fingerprint: String,
    /// The fields in the key, with their canonical values.
    pub included: Vec<IncludedField>,
    /// Answer-changing fields left out because they are at their default.
    pub defaulted: Vec<&'static str>,
    /// The fields never in the key.
    pub excluded: Vec<ExcludedField>,
}

impl KeyExplanation {
    /// The names of the key fields whose canonical values differ between `self` and `other`
    /// (empty when both requests share a key).
    pub fn differences(&self, other: &KeyExplanation) -> Vec<&'static str> {
        let value = |e: &KeyExplanation, name: &str| {
            e.included.iter().find(|f| f.name == name).map(|f| f.canonical.clone())
        };
        INCLUDED.iter().copied().filter(|name| value(self, name) != value(other, name)).collect()
    }
}

impl fmt::Display for KeyExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fingerprint {} ({})", self.fingerprint, self.schema)?;
        writeln!(f, "in the key:")?;
        for field in &self.included {
            let mut value = field.canonical.clone();
            if value.chars().count() > 100 {
                value = value.chars().take(97).collect::<String>() + "...";
            }
            writeln!(f, "  {:<16} {value}", field.name)?;
        }
        if !self.defaulted.is_empty() {
            writeln!(f, "at their default (left out): {}", self.defaulted.join(", "))?;
        }
        writeln!(f, "never in the key:")?;
        for field in &self.excluded {
            let set = if field.present { "set" } else { "unset" };
            writeln!(f, "  {:<16} {set:<6} {}", field.name, field.reason)?;
        }
        Ok(())
    }
}

fn canonical_message(m: &Message) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("role".into(), serde_json::to_value(&m.role).unwrap_or(Value::Null));
    let parts: Vec<Value> = m
        .content
        .iter()
        .map(|p| match p {
            ContentPart::Other { value } => drop_nulls(value),
            p => serde_json::to_value(p).map(|v| drop_nulls(&v)).unwrap_or(Value::Null),
        })
        .collect();
    // An empty text is no content at all (an assistant message that only calls tools).
    let empty =
        m.content.iter().all(|p| matches!(p, ContentPart::Text { text } if text.is_empty()));
    if !empty {
        out.insert("content".into(), Value::Array(parts));
    }
    if let Some(name) = &m.name {
        out.insert("name".into(), name.clone().into());
    }
    if !m.tool_calls.is_empty() {
        let calls = m
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({"id": c.id, "kind": c.kind, "name": c.name, "arguments": c.arguments})
            })
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        out.insert("tool_call_id".into(), id.clone().into());
    }
    Value::Object(out)
}

/// Writes a JSON object member by member; members must come in sorted key order.
struct ObjectWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    /// Writes the member's key and returns where its value goes.
    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(':');
        self.out
    }

    fn end(self) {
        self.out.push('}');
    }
}

/// A message of the canonical document (keys sorted: content, name, role, tool_call_id,
/// tool_calls), as `canonical_message` builds it.
fn write_message(out: &mut String, m: &Message) {
    let mut doc = ObjectWriter::new(out);
    let empty =
        m.content.iter().all(|p| matches!(p, ContentPart::Text { text } if text.is_empty()));
    if !empty {
        let out = doc.key("content");
        out.push('[');
        for (i, part) in m.content.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match part {
                ContentPart::Text { text } => {
                    let mut p = ObjectWriter::new(out);
                    write_str(p.key("text"), text);
                    write_str(p.key("type"), "text");
                    p.end();
                }
                ContentPart::ImageUrl { url, detail } => {
                    let mut p = ObjectWriter::new(out);
                    if let Some(d) = detail {
                        write_str(p.key("detail"), d);
                    }
                    write_str(p.key("type"), "image_url");
                    write_str(p.key("url"), url);
                    p.end();
                }
                ContentPart::InputAudio { data, format } => {
                    let mut p = ObjectWriter::new(out);
                    write_str(p.key("data"), data);
                    write_str(p.key("format"), format);
                    write_str(p.key("type"), "input_audio");
                    p.end();
                }
                ContentPart::Other { value } => write_value(out, value),
            }
        }
        out.push(']');
    }
    if let Some(name) = &m.name {
        write_str(doc.key("name"), name);
    }
    write_str(doc.key("role"), role_name(&m.role));
    if let Some(id) = &m.tool_call_id {
        write_str(doc.key("tool_call_id"), id);
    }
    if !m.tool_calls.is_empty() {
        let out = doc.key("tool_calls");
        out.push('[');
        for (i, c) in m.tool_calls.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut call = ObjectWriter::new(out);
            write_str(call.key("arguments"), &c.arguments);
            write_str(call.key("id"), &c.id);
            write_str(call.key("kind"), &c.kind);
            write_str(call.key("name"), &c.name);
            call.end();
        }
        out.push(']');
    }
    doc.end();
}

fn role_name(role: &Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Any JSON value: object keys sorted at every depth, `null` members left out.
fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut doc = ObjectWriter::new(out);
            for (k, v) in members {
                write_value(doc.key(k), v);
            }
            doc.end();
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::String(s) => write_str(out, s),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// A JSON string, escaped as serde_json escapes it (the key module's writer, so the request
/// fingerprint and `Params` escape alike).
fn write_str(out: &mut String, s: &str) {
    aurelis_cache_core::key::push_json_string(out, s);
}

/// The canonical JSON of one value (object keys sorted at every depth).
fn canonical_value(value: &Value) -> String {
    let wrapped = Params::new().with("v", value.clone()).canonical_json();
    // `{"v":` ... `}`
    wrapped[5..wrapped.len() - 1].to_owned()
}

/// `-0.0` is `0.0`; a non-finite number (which JSON cannot hold) becomes its text.
fn number(x: f64) -> Value {
    let x = if x == 0.0 { 0.0 } else { x };
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or_else(|| x.to_string().into())
}

/// Object members that are `null` are the same as absent.
fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}
