//! Similar-prompt lookup for the model cache (feature `similarity`): a request whose exact key
//! misses may be answered with the cached answer of a similar earlier question, through
//! [`aurelis_cache_similarity::SimilarityCache`] (scoped index, lexical scorer, optional
//! embeddings, the guard against answer-changing edits, verifier hook, shadow mode).
//!
//! - **Scope**: only requests identical in everything but the last user message are compared:
//!   the scope is the fingerprint of the request without that message (model, system prompt,
//!   the conversation before it, tools, tool choice, response format, every sampling
//!   parameter), plus the cache's namespace. A similar question in another conversation,
//!   under another system prompt or to another model never matches.
//! - **Exact first**: the exact key is looked up before anything similar.
//! - **The index points at the cache, not at copies**: it maps a prompt to the exact cache key
//!   of its answer. A similar hit reads that key; when the answer is gone (expired,
//!   invalidated, evicted) the index entry is removed and the lookup is a miss, so a similar
//!   lookup never serves a dead or invalidated answer. Index entries also expire with the
//!   answer's TTL.
//! - Only requests whose last message is a user message with text take part; tool results,
//!   images and assistant-prefilled turns are looked up exactly only.

use aurelis_cache_core::{Key, Result};
use aurelis_cache_similarity::{Scope, SimilarityCache, SimilarityCacheBuilder};
use serde::{Deserialize, Serialize};

use super::request::{ContentPart, ModelRequest, Role};

/// What the similarity index stores for a prompt: the exact cache key of its answer and a
/// digest of the answer's content (what shadow mode compares).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimilarAnswer {
    /// The exact key the answer is cached under.
    pub key: String,
    /// blake3 of the answer's text content, hex.
    pub content_digest: String,
}

impl SimilarAnswer {
    pub(crate) fn new(key: &Key, content: &str) -> Self {
        SimilarAnswer {
            key: key.as_str().to_owned(),
            content_digest: blake3::hash(content.as_bytes()).to_hex().to_string(),
        }
    }
}

/// The index of a model cache.
pub(crate) struct Similar {
    pub(crate) index: SimilarityCache<SimilarAnswer>,
}

impl std::fmt::Debug for Similar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Similar").field("entries", &self.index.len()).finish()
    }
}

impl Similar {
    /// Builds the index from `builder`, comparing answers by content in shadow mode.
    pub(crate) fn build(builder: SimilarityCacheBuilder<SimilarAnswer>) -> Result<Self> {
        let index = builder
            .compare_with(|a: &SimilarAnswer, b: &SimilarAnswer| {
                a.content_digest == b.content_digest
            })
            .build()?;
        Ok(Similar { index })
    }
}

impl ModelRequest {
    /// The similarity scope of this request and its last user message's text, or `None` when
    /// the request does not take part in similar lookups (its last message is not a user
    /// message made of text only). Two requests with the same scope differ at most in their
    /// last user message.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache::llm::{Message, ModelRequest};
    /// let base = ModelRequest::new("gpt-4o").system("You are a bank's assistant.").temperature(0.0);
    /// let (a, prompt) = base.clone().message(Message::user("How do I lock my card?")).similarity_scope("app").unwrap();
    /// let (b, _) = base.clone().message(Message::user("how can i lock my card")).similarity_scope("app").unwrap();
    /// assert_eq!(prompt, "How do I lock my card?");
    /// assert_eq!(a, b, "only the last user message differs");
    /// let (c, _) = base.system("You are a travel agent.").message(Message::user("How do I lock my card?")).similarity_scope("app").unwrap();
    /// assert_ne!(a, c, "another system prompt is another scope");
    /// ```
    pub fn similarity_scope(&self, namespace: &str) -> Option<(Scope, String)> {
        let last = self.messages.last()?;
        if last.role != Role::User
            || last.content.is_empty()
            || !last.content.iter().all(|p| matches!(p, ContentPart::Text { .. }))
        {
            return None;
        }
        let text = last.text();
        if text.trim().is_empty() {
            return None;
        }
        let mut rest = self.clone();
        rest.messages.pop();
        let scope = Scope::builder()
            .model(self.model.clone())
            .namespace(namespace)
            .params(&serde_json::json!({ "request_without_last_user_message": rest.fingerprint() }))
            .build();
        Some((scope, text))
    }
}
