//! The compatibility scope: a fingerprint of everything that changes an answer except the
//! last user message. Entries are only ever compared within one scope.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::Analysis;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`...
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// A 256-bit blake3 fingerprint of a compatibility scope.
///
/// Two prompts are only compared when their scopes are equal: same model, same
/// answer-changing parameters, system prompt, tools, response format, namespace and
/// conversation before the last user message.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::{Message, Scope};
///
/// let a = Scope::builder().model("gpt-4o").system("You are terse.").build();
/// let b = Scope::builder().model("gpt-4o").system("You are verbose.").build();
/// assert_ne!(a, b);
/// assert_eq!(a, Scope::builder().model("gpt-4o").system("You are terse.").build());
///
/// // A conversation: the scope covers the history, the prompt is the last user message.
/// let (scope, prompt) = Scope::builder().model("m").conversation(&[
///     Message::new("user", "I have a Flixora subscription"),
///     Message::new("assistant", "How can I help?"),
///     Message::new("user", "cancel it"),
/// ]);
/// assert_eq!(prompt, "cancel it");
/// assert_ne!(scope, Scope::for_model("m"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope([u8; 32]);

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", &self.to_hex()[..16])
    }
}

impl Scope {
    /// A builder for a scope.
    pub fn builder() -> ScopeBuilder {
        ScopeBuilder::default()
    }

    /// The scope of a single-turn prompt to `model` with no other context (the reference's
    /// `find_similar_response(prompt, model)`).
    pub fn for_model(model: &str) -> Scope {
        Scope::builder().model(model).build()
    }

    /// The fingerprint's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The fingerprint as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`Scope::to_hex`] output.
    pub fn from_hex(hex: &str) -> Option<Scope> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Scope(out))
    }

    pub(crate) fn short(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

/// Builds a [`Scope`]. Every setter adds a labelled, length-prefixed field to the hash, so
/// no two different field sets collide by concatenation.
#[derive(Debug, Clone, Default)]
pub struct ScopeBuilder {
    model: Option<String>,
    namespace: Option<String>,
    system: Option<String>,
    tools: Option<String>,
    response_format: Option<String>,
    params: Option<String>,
    history: Vec<Message>,
}

impl ScopeBuilder {
    /// The model name (e.g. `gpt-4o-2024-08-06`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The namespace or tenant; answers are never shared across namespaces.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The system prompt.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// The tool definitions, as JSON (object keys are sorted before hashing).
    pub fn tools(mut self, tools: &serde_json::Value) -> Self {
        self.tools = Some(canonical_json(tools));
        self
    }

    /// The response format (JSON schema, `json_object`...), as JSON.
    pub fn response_format(mut self, format: &serde_json::Value) -> Self {
        self.response_format = Some(canonical_json(format));
        self
    }

    /// The answer-changing parameters (temperature, top_p, max_tokens, seed, stop...), as a
    /// JSON object; keys are sorted before hashing.
    pub fn params(mut self, params: &serde_json::Value) -> Self {
        self.params = Some(canonical_json(params));
        self
    }

    /// The conversation before the last user message. Message text is normalised (case,
    /// punctuation, spacing, fillers) before hashing; nothing else is ignored.
    pub fn history(mut self, history: &[Message]) -> Self {
        self.history = history.to_vec();
        self
    }

    /// Splits `messages` at the last user message: the messages before it become the
    /// history (system messages become the system prompt), and its text is returned as the
    /// prompt to look up. Returns an empty prompt when there is no user message.
    pub fn conversation(mut self, messages: &[Message]) -> (Scope, String) {
        let last_user = messages.iter().rposition(|m| m.role == "user");
        let (before, prompt) = match last_user {
            Some(i) => (&messages[..i], messages[i].content.clone()),
            None => (messages, String::new()),
        };
        let mut history = Vec::new();
        for m in before {
            if m.role == "system" {
                let system = self.system.take().map(|s| s + "\n").unwrap_or_default();
                self.system = Some(system + &m.content);
            } else {
                history.push(m.clone());
            }
        }
        self.history = history;
        (self.build(), prompt)
    }

    /// The fingerprint.
    pub fn build(self) -> Scope {
        let mut h = blake3::Hasher::new();
        h.update(b"aurelis-similarity-scope-v1");
        let mut field = |label: &str, value: Option<&str>| {
            h.update(label.as_bytes());
            match value {
                Some(v) => {
                    h.update(&[1]);
                    h.update(&(v.len() as u64).to_le_bytes());
                    h.update(v.as_bytes());
                }
                None => {
                    h.update(&[0]);
                }
            }
        };
        field("model", self.model.as_deref());
        field("namespace", self.namespace.as_deref());
        field("system", self.system.as_deref());
        field("tools", self.tools.as_deref());
        field("response_format", self.response_format.as_deref());
        field("params", self.params.as_deref());
        field("history_len", Some(&self.history.len().to_string()));
        for m in &self.history {
            field("role", Some(&m.role));
            field("content", Some(Analysis::new(&m.content).normalized()));
        }
        Scope(*h.finalize().as_bytes())
    }
}

fn canonical_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: std::collections::BTreeMap<_, _> =
                    m.iter().map(|(k, v)| (k.clone(), sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_changes_the_scope() {
        let base = || {
            Scope::builder()
                .model("m")
                .namespace("t1")
                .system("s")
                .params(&json!({"temperature": 0}))
        };
        let b = base().build();
        assert_ne!(b, base().model("m2").build());
        assert_ne!(b, base().namespace("t2").build());
        assert_ne!(b, base().system("s2").build());
        assert_ne!(b, base().params(&json!({"temperature": 1})).build());
        assert_ne!(b, base().tools(&json!([{"name": "f"}])).build());
        assert_ne!(b, base().response_format(&json!({"type": "json_object"})).build());
        assert_ne!(b, base().history(&[Message::new("user", "hi there, I use Flixora")]).build());
        // Key order in JSON does not matter.
        assert_eq!(
            Scope::builder().params(&json!({"a": 1, "b": 2})).build(),
            Scope::builder().params(&json!({"b": 2, "a": 1})).build()
        );
        // Field boundaries cannot be shifted.
        assert_ne!(
            Scope::builder().model("ab").build(),
            Scope::builder().model("a").system("b").build()
        );
        assert_eq!(Scope::from_hex(&b.to_hex()), Some(b));
    }
}
