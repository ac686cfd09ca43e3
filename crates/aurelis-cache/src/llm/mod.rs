//! The LLM layer: [`ModelResponseCache`] (whole and streamed answers, keyed by a fingerprint
//! of everything that changes the answer, with a caching policy and cost accounting),
//! [`FileCacheManager`] (content-addressed files) and, with the `openai` feature, the
//! async-openai integration (the `openai` module, feature `openai`).
//!
//! docs/llm-caching.md is the guide.

mod cost;
#[cfg(feature = "metrics")]
pub(crate) mod cost_metrics {
    pub(crate) use super::cost::{
        MODEL_COST_SAVED, MODEL_HITS, MODEL_LATENCY_SAVED, MODEL_PROVIDER_CALLS, MODEL_REQUESTS,
        MODEL_TOKENS_SAVED,
    };
}
mod files;
#[cfg(feature = "openai")]
pub mod openai;
mod policy;
mod request;
mod response;
#[cfg(feature = "similarity")]
mod similar;
mod stream;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use aurelis_cache_core::{Error, ErrorKind, Key, Result};
use parking_lot::Mutex;

use crate::{Cache, SetOptions};

#[cfg(feature = "metrics")]
pub use cost::MODEL_METRIC_NAMES;
pub use cost::{CostReport, ModelCost, Price, PriceTable};
pub use files::{FileCacheBuilder, FileCacheManager, FileCacheStats};
pub use policy::{CachePolicy, Pacing, SampledPolicy, StoreDecision};
pub use request::{
    ContentPart, ExcludedField, IncludedField, KeyExplanation, Message, ModelRequest, Role,
    ToolCall, FINGERPRINT_SCHEMA,
};
pub use response::{
    FinishReason, ModelChunk, ModelResponse, ResponseStatus, SimilarTo, ToolCallDelta, Usage,
};
#[cfg(feature = "similarity")]
pub use similar::SimilarAnswer;
pub use stream::{ModelStream, StreamSource};

pub(crate) use cost::CostBook;
use cost::Served;
use response::StoredAnswer;

/// A cache of model answers in front of a provider, on top of a [`Cache`].
///
/// - The key is [`ModelRequest::key`]: a fingerprint of everything that changes the answer,
///   under the reserved `@model` category, so [`ModelResponseCache::invalidate_model`] drops
///   one model's answers everywhere.
/// - [`ModelResponseCache::get_or_call`] loads through [`Cache::get_or_compute_with`]:
///   concurrent identical requests make one provider call (and whatever single-flight the
///   cache gains, this gains).
/// - Errors are never cached; truncated answers only when the [`CachePolicy`] says so; the
///   TTL depends on the status (3600 s complete, 300 s otherwise by default).
/// - [`ModelResponseCache::stream`] passes a provider's stream through as it arrives,
///   records it, stores it when it completed normally, replays it chunk by chunk on a hit,
///   and shares one provider stream between concurrent identical requests. A streamed and a
///   whole request serve each other.
/// - [`ModelResponseCache::cost_report`]: per model, requests, hits, tokens and cost saved.
///
/// Cloning is cheap; clones share everything.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aurelis_cache::{Cache, MokaStore, Tier};
/// use aurelis_cache::llm::{Message, ModelRequest, ModelResponse, ModelResponseCache, Usage};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
/// let models = ModelResponseCache::new(cache);
///
/// let request = ModelRequest::new("gpt-4o").message(Message::user("2+2?")).temperature(0.0);
/// let call = || async {
///     Ok::<_, std::io::Error>(ModelResponse::success("gpt-4o", "4").usage(Usage::new(10, 1)))
/// };
/// let first = models.get_or_call(&request, call).await?;
/// let second = models.get_or_call(&request, call).await?;
/// assert_eq!(second.content, "4");
/// assert!(!first.from_cache && second.from_cache);
/// assert_eq!(models.cost_report().models["gpt-4o"].prompt_tokens_saved, 10);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ModelResponseCache {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    policy: CachePolicy,
    costs: Arc<CostBook>,
    live: stream::Registry,
    #[cfg(feature = "similarity")]
    similar: Option<similar::Similar>,
}

impl fmt::Debug for ModelResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelResponseCache")
            .field("cache", &self.inner.cache)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ModelResponseCache`].
#[derive(Debug)]
pub struct ModelResponseCacheBuilder {
    cache: Cache,
    policy: CachePolicy,
    prices: PriceTable,
    #[cfg(feature = "similarity")]
    similarity: Option<aurelis_cache_similarity::SimilarityCacheBuilder<SimilarAnswer>>,
}

impl ModelResponseCacheBuilder {
    /// The caching policy ([`CachePolicy::new`] by default).
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The price table for the cost report (empty by default: costs are zero).
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Answers an exact miss from a similar earlier question (feature `similarity`), with an
    /// index built from `index` (threshold, embedder, guard, verifier, shadow mode: see
    /// `aurelis_cache_similarity`). Only requests identical in everything but their last
    /// user message are compared; the exact key is always tried first; a similar hit whose
    /// answer is no longer cached is a miss (see [`ModelRequest::similarity_scope`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use aurelis_cache::{Cache, MokaStore, Tier};
    /// use aurelis_cache::llm::{Message, ModelRequest, ModelResponse, ModelResponseCache};
    /// use aurelis_cache::similarity::SimilarityCache;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
    /// let models = ModelResponseCache::builder(cache).similarity(SimilarityCache::builder()).build()?;
    /// let ask = |q: &str| ModelRequest::new("gpt-4o").temperature(0.0).message(Message::user(q));
    ///
    /// let first = models.get_or_call(&ask("How do I lock my card?"), || async {
    ///     Ok::<_, std::io::Error>(ModelResponse::success("gpt-4o", "Cards > Lock"))
    /// }).await?;
    /// assert!(!first.from_cache);
    /// // A rewording is served from the first answer, and says so.
    /// let similar = models.get_or_call(&ask("um how do i lock my card"), || async {
    ///     Ok::<_, std::io::Error>(ModelResponse::success("gpt-4o", "called"))
    /// }).await?;
    /// assert_eq!(similar.content, "Cards > Lock");
    /// assert_eq!(similar.similar_to.as_ref().unwrap().prompt, "How do I lock my card?");
    /// // A one-word edit that changes the answer is not.
    /// let negated = models.get_or_call(&ask("How do I unlock my card?"), || async {
    ///     Ok::<_, std::io::Error>(ModelResponse::success("gpt-4o", "Cards > Unlock"))
    /// }).await?;
    /// assert_eq!(negated.content, "Cards > Unlock");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "similarity")]
    pub fn similarity(
        mut self,
        index: aurelis_cache_similarity::SimilarityCacheBuilder<SimilarAnswer>,
    ) -> Self {
        self.similarity = Some(index);
        self
    }

    /// Checks the policy and builds the cache.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] as [`CachePolicy::validate`].
    pub fn build(self) -> Result<ModelResponseCache> {
        self.policy.validate()?;
        Ok(ModelResponseCache {
            inner: Arc::new(Inner {
                cache: self.cache,
                policy: self.policy,
                costs: Arc::new(CostBook { tracker: Default::default(), prices: self.prices }),
                live: stream::Registry::default(),
                #[cfg(feature = "similarity")]
                similar: self.similarity.map(similar::Similar::build).transpose()?,
            }),
        })
    }
}

/// What a load gave: the answer, whether this caller's own provider call made it.
struct Loaded {
    answer: StoredAnswer,
    called: bool,
    stored: bool,
}

/// A loader's failure inside [`Cache::get_or_compute_with`].
#[derive(Debug)]
enum LoadFailure {
    /// The provider call failed.
    Provider(Box<dyn StdError + Send + Sync>),
    /// The provider answered, and the answer must not be stored with the success TTL.
    NotStored(NotStored),
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadFailure::Provider(e) => write!(f, "the provider failed: {e}"),
            LoadFailure::NotStored(n) => n.fmt(f),
        }
    }
}

impl StdError for LoadFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            LoadFailure::Provider(e) => Some(&**e),
            LoadFailure::NotStored(n) => Some(n),
        }
    }
}

/// An answer the policy keeps out of the cache (or stores for its own TTL), carried through
/// the cache's error path so that coalesced waiters get it too.
#[derive(Clone, Debug)]
struct NotStored {
    answer: Arc<StoredAnswer>,
    /// Stored afterwards for this TTL, if any.
    ttl: Option<Duration>,
    reason: &'static str,
}

impl fmt::Display for NotStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "answer not cached with the success TTL: {}", self.reason)
    }
}

impl StdError for NotStored {}

/// The [`NotStored`] answer somewhere in `err`'s chain of sources.
fn find_not_stored(err: &Error) -> Option<NotStored> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(n) = e.downcast_ref::<NotStored>() {
            return Some(n.clone());
        }
        if let Some(LoadFailure::NotStored(n)) = e.downcast_ref::<LoadFailure>() {
            return Some(n.clone());
        }
        cur = e.source();
    }
    None
}

fn provider_error(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Error {
    Error::new(ErrorKind::Loader, "the model provider failed")
        .with_source(LoadFailure::Provider(e.into()))
}

/// The provider's own error of type `E` in `err`'s chain of sources, if there is one.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use aurelis_cache::{Cache, MokaStore, Tier};
/// use aurelis_cache::llm::{provider_error_of, ModelRequest, ModelResponse, ModelResponseCache};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
/// let models = ModelResponseCache::new(cache);
/// let request = ModelRequest::new("gpt-4o").temperature(0.0);
/// let err = models
///     .get_or_call(&request, || async {
///         Err::<ModelResponse, _>(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"))
///     })
///     .await
///     .unwrap_err();
/// let io = provider_error_of::<std::io::Error>(&err).expect("the provider's error");
/// assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
/// # Ok(())
/// # }
/// ```
pub fn provider_error_of<E: StdError + 'static>(err: &Error) -> Option<&E> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

impl ModelResponseCache {
    /// A model cache on `cache` with the default policy and no prices.
    pub fn new(cache: Cache) -> Self {
        Self::builder(cache).build().expect("the default policy is valid")
    }

    /// A builder on `cache`.
    pub fn builder(cache: Cache) -> ModelResponseCacheBuilder {
        ModelResponseCacheBuilder {
            cache,
            policy: CachePolicy::new(),
            prices: PriceTable::new(),
            #[cfg(feature = "similarity")]
            similarity: None,
        }
    }

    /// The cache underneath.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The policy.
    pub fn policy(&self) -> &CachePolicy {
        &self.inner.policy
    }

    /// The key of `request` in this cache.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty model name or one with control characters.
    pub fn key(&self, request: &ModelRequest) -> Result<Key> {
        request.key(self.inner.cache.keys())
    }

    /// The cached answer to `request`, if any (a recorded stream is assembled).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use aurelis_cache::{Cache, MokaStore, Tier};
    /// use aurelis_cache::llm::{ModelRequest, ModelResponse, ModelResponseCache};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
    /// let models = ModelResponseCache::new(cache);
    /// let request = ModelRequest::new("gpt-4o").temperature(0.0);
    /// assert!(models.get_response(&request).await?.is_none());
    /// assert!(models.cache_response(&request, &ModelResponse::success("gpt-4o", "hi"), None).await?);
    /// assert_eq!(models.get_response(&request).await?.unwrap().content, "hi");
    /// // Errors are never cached.
    /// assert!(!models.cache_response(&request, &ModelResponse::error("gpt-4o", "boom"), None).await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get`] (an entry that does not decode is a miss, counted by the cache).
    pub async fn get_response(&self, request: &ModelRequest) -> Result<Option<ModelResponse>> {
        let key = self.key(request)?;
        Ok(self.inner.cache.get::<StoredAnswer>(&key).await?.map(|a| {
            let mut r = a.to_response();
            r.from_cache = true;
            r
        }))
    }

    /// Stores `response` as the answer to `request`, as the policy says (for `ttl` instead of
    /// the status's TTL when given); whether it was stored.
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with`].
    pub async fn cache_response(
        &self,
        request: &ModelRequest,
        response: &ModelResponse,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let StoreDecision::Store(policy_ttl) = self.inner.policy.decide(request, response) else {
            return Ok(false);
        };
        let key = self.key(request)?;
        let answer = StoredAnswer::Whole(Box::new(response.clone()));
        let options = SetOptions::new().ttl(ttl.unwrap_or(policy_ttl));
        self.inner.cache.set_with(&key, &answer, &options).await?;
        Ok(true)
    }

    /// The answer to `request`: from the cache, from a concurrent identical call, or from
    /// `call` (then stored as the policy says). The answer's
    /// [`from_cache`](ModelResponse::from_cache) tells which. A provider error is returned
    /// and nothing is cached; an answer with status [`ResponseStatus::Error`] is returned
    /// and not cached. When the provider does not fill
    /// [`provider_latency`](ModelResponse::provider_latency), the cache measures it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Loader`] when `call` fails (its error is in the chain of sources:
    /// [`provider_error_of`]); [`ErrorKind::InvalidKey`] for a bad model name; cache errors
    /// only in strict mode.
    pub async fn get_or_call<F, Fut, E>(
        &self,
        request: &ModelRequest,
        call: F,
    ) -> Result<ModelResponse>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<ModelResponse, E>>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let started = Instant::now();
        if !self.inner.policy.uses_cache(request) {
            let mut response = call().await.map_err(provider_error)?;
            fill_latency(&mut response, started);
            self.inner.costs.tracker.record(&request.model, Served::Bypassed);
            return Ok(response);
        }
        let key = self.key(request)?;
        // An identical streamed request in flight: its answer, assembled.
        if let Some(live) = self.join_live(&key) {
            return live.into_response().await;
        }
        #[cfg(feature = "similarity")]
        let similar_query = match &self.inner.similar {
            Some(_) => request.similarity_scope(self.inner.cache.keys().namespace()),
            None => None,
        };
        #[cfg(feature = "similarity")]
        if let Some((scope, prompt)) = &similar_query {
            if let Some(response) = self.similar_answer(request, &key, scope, prompt).await? {
                return Ok(response);
            }
        }
        let policy = &self.inner.policy;
        let loaded = self
            .load(&key, || async {
                let mut response = call().await.map_err(|e| LoadFailure::Provider(e.into()))?;
                fill_latency(&mut response, started);
                let decision = policy.decide(request, &response);
                self.classify(StoredAnswer::Whole(Box::new(response)), decision)
            })
            .await?;
        self.account(&request.model, &loaded);
        let mut response = loaded.answer.to_response();
        response.from_cache = !loaded.called;
        #[cfg(feature = "similarity")]
        if let (Some(similar), Some((scope, prompt)), true) =
            (&self.inner.similar, &similar_query, loaded.called && loaded.stored)
        {
            let entry = SimilarAnswer::new(&key, &response.content);
            let ttl = self.inner.policy.ttl_for(response.status);
            if let Err(e) = similar.index.insert(scope, prompt, entry, ttl).await {
                tracing::warn!(error = %e, "similarity: prompt not indexed");
            }
        }
        Ok(response)
    }

    /// The exact answer, else the answer of a similar earlier question in the same scope
    /// (whose exact entry must still be cached), else `None`.
    #[cfg(feature = "similarity")]
    async fn similar_answer(
        &self,
        request: &ModelRequest,
        key: &Key,
        scope: &aurelis_cache_similarity::Scope,
        prompt: &str,
    ) -> Result<Option<ModelResponse>> {
        let Some(similar) = &self.inner.similar else { return Ok(None) };
        let cache = &self.inner.cache;
        // Exact first.
        if let Some(answer) = cache.get::<StoredAnswer>(key).await? {
            self.inner.costs.tracker.record(&request.model, hit(&answer));
            let mut response = answer.to_response();
            response.from_cache = true;
            return Ok(Some(response));
        }
        let found = similar.index.lookup(scope, prompt).await;
        let Some(matched) = found.hit else { return Ok(None) };
        let answer = match cache.keys().parse_key(&matched.value.key) {
            Ok(k) => cache.get::<StoredAnswer>(&k).await?,
            Err(_) => None,
        };
        let Some(answer) = answer else {
            // The answer expired or was invalidated: the index must not point at it.
            similar.index.remove_id(matched.id);
            return Ok(None);
        };
        self.inner.costs.tracker.record(&request.model, hit(&answer));
        let mut response = answer.to_response();
        response.from_cache = true;
        response.similar_to = Some(response::SimilarTo {
            prompt: matched.prompt,
            lexical: matched.score.lexical,
            cosine: matched.score.cosine,
        });
        Ok(Some(response))
    }

    /// Drops every cached answer of `model`, in every tier and (with a backplane) every
    /// process, as [`Cache::invalidate_model`].
    ///
    /// # Errors
    ///
    /// As [`Cache::invalidate_model`].
    pub async fn invalidate_model(&self, model: &str) -> Result<()> {
        self.inner.cache.invalidate_model(model).await
    }

    /// The similar-prompt index (feature `similarity`), if one was configured: for its
    /// shadow report, its size, and saving or loading it (`SimilarityCache::save` / `load`
    /// through any store, such as the disk tier's).
    #[cfg(feature = "similarity")]
    pub fn similarity_index(
        &self,
    ) -> Option<&aurelis_cache_similarity::SimilarityCache<SimilarAnswer>> {
        self.inner.similar.as_ref().map(|s| &s.index)
    }

    /// What the cache saved, per model and in total, priced with the price table. A
    /// [`CacheMonitor`](crate::CacheMonitor) shows it in its report and exports it as metrics
    /// once the model cache is registered with
    /// [`CacheMonitor::with_model_cache`](crate::CacheMonitor::with_model_cache).
    pub fn cost_report(&self) -> CostReport {
        self.inner.costs.report()
    }

    /// The counters, for a monitor (which must not hold the cache itself).
    pub(crate) fn cost_book(&self) -> Arc<CostBook> {
        self.inner.costs.clone()
    }

    /// Success answers go into the cache through the load; others come back through the
    /// error path, with the TTL they get afterwards, if any.
    fn classify(
        &self,
        answer: StoredAnswer,
        decision: StoreDecision,
    ) -> std::result::Result<StoredAnswer, LoadFailure> {
        match decision {
            StoreDecision::Store(ttl) if ttl == self.inner.policy.ttl_success() => Ok(answer),
            StoreDecision::Store(ttl) => Err(LoadFailure::NotStored(NotStored {
                answer: Arc::new(answer),
                ttl: Some(ttl),
                reason: "stored with the TTL of its status",
            })),
            StoreDecision::Skip(reason) => Err(LoadFailure::NotStored(NotStored {
                answer: Arc::new(answer),
                ttl: None,
                reason,
            })),
        }
    }

    /// Loads `key` through the cache's `get_or_compute_with` (coalesced, and whatever
    /// single-flight the cache does), with the success TTL; answers the policy keeps out come
    /// back through the error path and are stored afterwards when they have a TTL of their own.
    async fn load<F, Fut>(&self, key: &Key, produce: F) -> Result<Loaded>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<StoredAnswer, LoadFailure>>,
    {
        let ran = AtomicBool::new(false);
        let kept_out: Mutex<Option<NotStored>> = Mutex::new(None);
        let options = SetOptions::new().ttl(self.inner.policy.ttl_success());
        let result = self
            .inner
            .cache
            .get_or_compute_with(key, &options, || {
                ran.store(true, Ordering::Relaxed);
                let kept_out = &kept_out;
                async move {
                    let result = produce().await;
                    if let Err(LoadFailure::NotStored(n)) = &result {
                        *kept_out.lock() = Some(n.clone());
                    }
                    result
                }
            })
            .await;
        let called = ran.load(Ordering::Relaxed);
        match result {
            Ok(answer) => Ok(Loaded { answer, called, stored: true }),
            Err(err) => {
                let Some(n) = kept_out.lock().take().or_else(|| find_not_stored(&err)) else {
                    return Err(err);
                };
                let mut stored = false;
                if let (true, Some(ttl)) = (called, n.ttl) {
                    let options = SetOptions::new().ttl(ttl);
                    match self.inner.cache.set_with(key, &*n.answer, &options).await {
                        Ok(()) => stored = true,
                        Err(e) => tracing::warn!(key = %key, error = %e, "model answer not cached"),
                    }
                }
                let answer = Arc::try_unwrap(n.answer).unwrap_or_else(|a| (*a).clone());
                Ok(Loaded { answer, called, stored })
            }
        }
    }

    fn account(&self, model: &str, loaded: &Loaded) {
        let served = if !loaded.called {
            hit(&loaded.answer)
        } else if loaded.stored {
            Served::Called
        } else {
            Served::CalledNotStored
        };
        self.inner.costs.tracker.record(model, served);
    }
}

/// A hit's savings: the tokens and provider time of the call that made the answer.
fn hit(answer: &StoredAnswer) -> Served {
    let usage = answer.usage().unwrap_or_default();
    Served::Hit {
        prompt: usage.prompt_tokens,
        completion: usage.completion_tokens,
        latency: answer.provider_latency(),
    }
}

fn fill_latency(response: &mut ModelResponse, started: Instant) {
    if response.provider_latency.is_zero() {
        response.provider_latency = started.elapsed();
    }
}
