//! The model cache with similar-prompt lookup (feature `similarity`): rewordings served from
//! an earlier answer, never across scopes, never a dead or invalidated answer, shadow mode.

#![cfg(feature = "similarity")]

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::llm::{
    CachePolicy, Message, ModelRequest, ModelResponse, ModelResponseCache, Usage,
};
use aurelis_cache::similarity::SimilarityCache;
use aurelis_cache::{Cache, MokaStore, Tier};

fn cache() -> Cache {
    Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap()
}

fn models(shadow: bool) -> ModelResponseCache {
    ModelResponseCache::builder(cache())
        .similarity(SimilarityCache::builder().shadow(shadow))
        .build()
        .unwrap()
}

fn ask(system: &str, question: &str) -> ModelRequest {
    ModelRequest::new("gpt-4o").system(system).temperature(0.0).message(Message::user(question))
}

/// A provider that counts its calls and answers `answer`.
struct Provider {
    calls: AtomicU64,
}

impl Provider {
    fn new() -> Self {
        Provider { calls: AtomicU64::new(0) }
    }

    async fn call(&self, model: &str, answer: &str) -> std::io::Result<ModelResponse> {
        self.calls.fetch_add(1, SeqCst);
        Ok(ModelResponse::success(model, answer).usage(Usage::new(40, 10)))
    }

    fn calls(&self) -> u64 {
        self.calls.load(SeqCst)
    }
}

const BANK: &str = "You are a bank's assistant.";

#[tokio::test]
async fn a_rewording_is_served_and_counted_as_a_hit() {
    let models = models(false);
    let provider = Provider::new();
    let first = models
        .get_or_call(&ask(BANK, "How do I lock my card?"), || {
            provider.call("gpt-4o", "Cards > Lock")
        })
        .await
        .unwrap();
    assert!(!first.from_cache && first.similar_to.is_none());
    let again = models
        .get_or_call(&ask(BANK, "um, how can I lock my card"), || provider.call("gpt-4o", "other"))
        .await
        .unwrap();
    assert_eq!(again.content, "Cards > Lock");
    assert!(again.from_cache);
    let matched = again.similar_to.expect("served from a similar question");
    assert_eq!(matched.prompt, "How do I lock my card?");
    assert!(matched.lexical >= 0.85 || matched.lexical == 1.0);
    assert_eq!(provider.calls(), 1);
    let report = models.cost_report();
    assert_eq!(report.models["gpt-4o"].hits, 1);
    assert_eq!(report.models["gpt-4o"].prompt_tokens_saved, 40);
    // The exact question is still an exact hit (no similarity involved).
    let exact = models
        .get_or_call(&ask(BANK, "How do I lock my card?"), || provider.call("gpt-4o", "other"))
        .await
        .unwrap();
    assert!(exact.from_cache && exact.similar_to.is_none());
}

#[tokio::test]
async fn edits_that_change_the_answer_and_other_scopes_are_not_served() {
    let models = models(false);
    let provider = Provider::new();
    models
        .get_or_call(&ask(BANK, "Cancel my subscription"), || provider.call("gpt-4o", "cancelled"))
        .await
        .unwrap();
    // Negation: vetoed by the guard.
    let negated = models
        .get_or_call(&ask(BANK, "Don't cancel my subscription"), || provider.call("gpt-4o", "kept"))
        .await
        .unwrap();
    assert_eq!(negated.content, "kept");
    // Same question, another system prompt, another model, another conversation before it.
    let other_system = models
        .get_or_call(&ask("You are a travel agent.", "Cancel my subscription"), || {
            provider.call("gpt-4o", "travel")
        })
        .await
        .unwrap();
    assert_eq!(other_system.content, "travel");
    let mut other_model = ask(BANK, "cancel my subscription please");
    other_model.model = "gpt-4o-mini".into();
    let other_model =
        models.get_or_call(&other_model, || provider.call("gpt-4o-mini", "mini")).await.unwrap();
    assert_eq!(other_model.content, "mini");
    let history = ModelRequest::new("gpt-4o")
        .system(BANK)
        .temperature(0.0)
        .message(Message::user("I have two accounts."))
        .message(Message::assistant("Which one?"))
        .message(Message::user("Cancel my subscription"));
    let in_conversation =
        models.get_or_call(&history, || provider.call("gpt-4o", "which")).await.unwrap();
    assert_eq!(in_conversation.content, "which");
    assert_eq!(provider.calls(), 5, "every one of them called the provider");
}

#[tokio::test]
async fn an_invalidated_answer_is_never_served_by_similarity() {
    let models = models(false);
    let provider = Provider::new();
    models
        .get_or_call(&ask(BANK, "What is my card limit?"), || provider.call("gpt-4o", "old limit"))
        .await
        .unwrap();
    let index = models.similarity_index().unwrap();
    assert_eq!(index.len(), 1);
    models.invalidate_model("gpt-4o").await.unwrap();
    let after = models
        .get_or_call(&ask(BANK, "what's my card limit"), || provider.call("gpt-4o", "new limit"))
        .await
        .unwrap();
    assert_eq!(after.content, "new limit", "the invalidated answer was not served");
    assert_eq!(provider.calls(), 2);
    // The dead pointer left the index; the new answer is indexed.
    assert_eq!(index.len(), 1);
    let again = models
        .get_or_call(&ask(BANK, "What is my card limit ?"), || provider.call("gpt-4o", "x"))
        .await
        .unwrap();
    assert_eq!(again.content, "new limit");
}

#[tokio::test]
async fn an_expired_answer_is_never_served_by_similarity() {
    let models = ModelResponseCache::builder(cache())
        .policy(CachePolicy::new().success_ttl(Duration::from_millis(100)))
        .similarity(SimilarityCache::builder())
        .build()
        .unwrap();
    let provider = Provider::new();
    models
        .get_or_call(&ask(BANK, "Where is the nearest branch?"), || provider.call("gpt-4o", "A"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = models
        .get_or_call(&ask(BANK, "where's the nearest branch"), || provider.call("gpt-4o", "B"))
        .await
        .unwrap();
    assert_eq!(after.content, "B");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test]
async fn shadow_mode_serves_nothing_and_measures() {
    let models = models(true);
    let provider = Provider::new();
    models
        .get_or_call(&ask(BANK, "How do I lock my card?"), || {
            provider.call("gpt-4o", "Cards > Lock")
        })
        .await
        .unwrap();
    let same = models
        .get_or_call(&ask(BANK, "how can i lock my card"), || {
            provider.call("gpt-4o", "Cards > Lock")
        })
        .await
        .unwrap();
    assert!(!same.from_cache, "shadow mode serves nothing");
    let different = models
        .get_or_call(&ask(BANK, "Please, how do I lock my card?"), || {
            provider.call("gpt-4o", "Call us")
        })
        .await
        .unwrap();
    assert!(!different.from_cache);
    assert_eq!(provider.calls(), 3);
    let report = models.similarity_index().unwrap().shadow_report();
    assert_eq!(report.lookups, 3, "every exact miss is looked up, the first one too");
    assert_eq!(report.would_hit, 2);
    assert_eq!(report.confirmed_same, 1, "{report:?}");
    assert_eq!(report.confirmed_different, 1, "{report:?}");
}
