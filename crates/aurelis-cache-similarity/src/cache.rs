//! [`SimilarityCache`]: scoped similar-prompt lookup with the guard, a verifier hook,
//! shadow mode, removal and persistence.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aurelis_cache_core::{Bytes, Error, Result, Store};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::SimilarityConfig;
use crate::guard::{Guard, Veto, VetoReason};
use crate::lexical::{score_texts, sorted_words, LexicalIndex, Slot};
use crate::scope::Scope;
use crate::text::Analysis;
use crate::vector::{normalise, Embedder, VectorIndex};

/// A user-supplied final check, run only on candidates the guard passed (for example an
/// LLM asked "do these two prompts need the same answer?"). An error or a timeout is a miss.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::{Scope, SimilarityCache, Verifier};
///
/// #[derive(Debug)]
/// struct NeverSure;
///
/// #[async_trait::async_trait]
/// impl Verifier for NeverSure {
///     async fn verify(&self, _query: &str, _candidate: &str) -> aurelis_cache_core::Result<bool> {
///         Ok(false)
///     }
/// }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let cache = SimilarityCache::<String>::builder().verifier(NeverSure).build().unwrap();
/// let scope = Scope::for_model("m");
/// cache.insert(&scope, "How do I change my email address?", "Settings > Email".into(), None).await.unwrap();
/// let found = cache.lookup(&scope, "How can I change my email adress?").await;
/// assert!(found.hit.is_none()); // the guard passed it, the verifier said no
/// # });
/// ```
#[async_trait]
pub trait Verifier: fmt::Debug + Send + Sync + 'static {
    /// `true` when an answer to `candidate` also answers `query`.
    async fn verify(&self, query: &str, candidate: &str) -> Result<bool>;
}

/// The identity of a stored entry (stable until it is removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryId(pub u64);

/// The similarity of a candidate to the query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Lexical ratio in `[0, 1]` (see [`lexical_score`](crate::lexical_score)).
    pub lexical: f64,
    /// Cosine similarity in `[-1, 1]`, when an embedder is set and the candidate came from it.
    pub cosine: Option<f32>,
}

/// What happened to a candidate during a lookup.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// The candidate was accepted (served, or recorded as a would-be hit in shadow mode).
    Accepted,
    /// The guard or the verifier refused it.
    Vetoed(Veto),
    /// Not checked: a better candidate was accepted first, or it was past `max_checked`.
    NotChecked,
}

/// A candidate considered by a lookup, with its score and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The stored entry.
    pub id: EntryId,
    /// The stored prompt.
    pub prompt: String,
    /// Its similarity to the query.
    pub score: Score,
    /// What the lookup decided about it.
    pub verdict: Verdict,
}

/// A matched entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<V> {
    /// The stored entry.
    pub id: EntryId,
    /// The stored prompt that matched.
    pub prompt: String,
    /// The stored value.
    pub value: V,
    /// The similarity (1.0 for an exact match of the normalised text).
    pub score: Score,
    /// `true` when the normalised texts are equal (no guard needed).
    pub exact: bool,
}

/// The result of [`SimilarityCache::lookup`]: the hit, if any, and every candidate with
/// its verdict.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Lookup<V> {
    /// The entry to serve. Always `None` in shadow mode.
    pub hit: Option<Hit<V>>,
    /// In shadow mode, the entry that would have been served.
    pub would_hit: Option<Hit<V>>,
    /// Candidates above the threshold, best first, with what was decided about each.
    pub candidates: Vec<Candidate>,
}

impl<V> Lookup<V> {
    fn miss(candidates: Vec<Candidate>) -> Self {
        Lookup { hit: None, would_hit: None, candidates }
    }
}

/// Shadow-mode figures: would-be hits and, once the real answer was stored, whether the
/// would-be hit's answer matched it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShadowReport {
    /// Lookups made in shadow mode.
    pub lookups: u64,
    /// Lookups that would have been served.
    pub would_hit: u64,
    /// Would-be hits whose entry equals the answer later stored for the query.
    pub confirmed_same: u64,
    /// Would-be hits whose entry differs from the answer later stored: wrong answers avoided.
    pub confirmed_different: u64,
    /// Would-be hits still waiting for the real answer (or with no comparison configured).
    pub pending: u64,
    /// The latest confirmed-different cases: (query, matched prompt).
    pub recent_wrong: Vec<(String, String)>,
}

type Compare<V> = Arc<dyn Fn(&V, &V) -> bool + Send + Sync>;

/// Builds a [`SimilarityCache`].
pub struct SimilarityCacheBuilder<V> {
    config: SimilarityConfig,
    embedder: Option<Arc<dyn Embedder>>,
    verifier: Option<Arc<dyn Verifier>>,
    compare: Option<Compare<V>>,
}

impl<V> fmt::Debug for SimilarityCacheBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimilarityCacheBuilder")
            .field("config", &self.config)
            .field("embedder", &self.embedder)
            .field("verifier", &self.verifier)
            .finish()
    }
}

impl<V: Clone + Send + Sync + 'static> SimilarityCacheBuilder<V> {
    /// Starts from `config`.
    pub fn from_config(config: SimilarityConfig) -> Self {
        SimilarityCacheBuilder { config, embedder: None, verifier: None, compare: None }
    }

    /// Lexical ratio threshold in `[0, 1]` (default 0.85).
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.config.threshold = threshold;
        self
    }

    /// Cosine threshold in `[-1, 1]` for embedding candidates (default 0.90).
    pub fn cosine_threshold(mut self, threshold: f32) -> Self {
        self.config.cosine_threshold = threshold;
        self
    }

    /// Runs the guard (default `true`).
    pub fn guard(mut self, yes: bool) -> Self {
        self.config.guard = yes;
        self
    }

    /// Strict guard (default `true`); `false` uses [`Guard::relaxed`].
    pub fn strict_guard(mut self, yes: bool) -> Self {
        self.config.strict_guard = yes;
        self
    }

    /// Lexical ratio from which two prompts are a minimal edit of each other (default 0.70);
    /// see [`SimilarityConfig::minimal_edit_ratio`].
    pub fn minimal_edit_ratio(mut self, ratio: f64) -> Self {
        self.config.minimal_edit_ratio = ratio;
        self
    }

    /// Shadow mode: measure, never serve (default `false`).
    pub fn shadow(mut self, yes: bool) -> Self {
        self.config.shadow = yes;
        self
    }

    /// Time the verifier gets per candidate (default 2 s).
    pub fn verifier_timeout(mut self, timeout: Duration) -> Self {
        self.config.verifier_timeout = timeout;
        self
    }

    /// Candidates taken from the index per lookup (default 64).
    pub fn max_candidates(mut self, n: usize) -> Self {
        self.config.max_candidates = n;
        self
    }

    /// Adds semantic matching with `embedder`.
    pub fn embedder(mut self, embedder: impl Embedder) -> Self {
        self.embedder = Some(Arc::new(embedder));
        self
    }

    /// Adds semantic matching with a shared embedder.
    pub fn embedder_arc(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Runs `verifier` on candidates the guard passed.
    pub fn verifier(mut self, verifier: impl Verifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// How shadow mode decides whether a would-be hit's answer equals the real one.
    pub fn compare_with(
        mut self,
        compare: impl Fn(&V, &V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.compare = Some(Arc::new(compare));
        self
    }

    /// Validates the settings and builds the cache.
    pub fn build(self) -> Result<SimilarityCache<V>> {
        self.config.validate()?;
        let guard = if self.config.strict_guard { Guard::strict() } else { Guard::relaxed() };
        Ok(SimilarityCache {
            config: self.config,
            embedder: self.embedder,
            verifier: self.verifier,
            compare: self.compare,
            guard,
            state: RwLock::new(State::default()),
            shadow: Mutex::new(ShadowState::default()),
        })
    }
}

impl<V: Clone + PartialEq + Send + Sync + 'static> SimilarityCacheBuilder<V> {
    /// Shadow mode compares answers with `==`.
    pub fn compare_eq(self) -> Self {
        self.compare_with(|a: &V, b: &V| a == b)
    }
}

struct Entry<V> {
    id: EntryId,
    scope: Scope,
    prompt: String,
    normalized: Box<str>,
    canonical: Box<str>,
    sorted: Box<str>,
    value: V,
    expires_at: Option<u64>,
    embedding: Option<Vec<f32>>,
}

impl<V> Entry<V> {
    fn alive(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

struct State<V> {
    slots: Vec<Option<Entry<V>>>,
    free: Vec<Slot>,
    tombstones: Vec<Slot>,
    exact: HashMap<(Scope, Box<str>), Slot>,
    ids: HashMap<EntryId, Slot>,
    lexical: LexicalIndex,
    vectors: VectorIndex,
    next_id: u64,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        State {
            slots: Vec::new(),
            free: Vec::new(),
            tombstones: Vec::new(),
            exact: HashMap::new(),
            ids: HashMap::new(),
            lexical: LexicalIndex::default(),
            vectors: VectorIndex::default(),
            next_id: 1,
        }
    }
}

impl<V> State<V> {
    fn live(&self, slot: Slot, scope: &Scope, now: u64) -> Option<&Entry<V>> {
        self.slots.get(slot as usize)?.as_ref().filter(|e| e.scope == *scope && e.alive(now))
    }

    fn remove_slot(&mut self, slot: Slot) -> bool {
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        self.exact.remove(&(entry.scope, entry.normalized));
        self.ids.remove(&entry.id);
        self.tombstones.push(slot);
        // Compact once tombstones are a quarter of the slots.
        if self.tombstones.len() >= 64 && self.tombstones.len() * 4 >= self.slots.len() {
            self.compact();
        }
        true
    }

    fn compact(&mut self) {
        let slots = &self.slots;
        let live = |s: Slot| slots.get(s as usize).is_some_and(Option::is_some);
        self.lexical.retain(live);
        self.vectors.retain(live);
        self.free.append(&mut self.tombstones);
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

#[derive(Default)]
struct ShadowState {
    report: ShadowReport,
    /// (scope, normalised query) -> entry id of the would-be hit.
    pending: HashMap<(Scope, Box<str>), EntryId>,
    order: VecDeque<(Scope, Box<str>)>,
}

const SHADOW_PENDING_CAP: usize = 10_000;

/// Similar-prompt lookup over stored values of type `V`, scoped and guarded.
///
/// A lookup first tries the exact normalised text in the query's scope, then candidates
/// from the lexical index (and the vector index when an embedder is set) above the
/// threshold; each candidate must pass the guard, and the verifier when one is set.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::{Scope, SimilarityCache, VetoReason, Verdict};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let cache = SimilarityCache::<String>::builder().build().unwrap();
/// let scope = Scope::for_model("gpt-4o");
/// cache.insert(&scope, "Cancel my subscription", "Done: cancelled.".into(), None).await.unwrap();
///
/// // A typo and a greeting still match.
/// let found = cache.lookup(&scope, "Hi, cancel my subscripton please").await;
/// assert_eq!(found.hit.unwrap().value, "Done: cancelled.");
///
/// // A negation does not, and the lookup says why.
/// let found = cache.lookup(&scope, "Don't cancel my subscription").await;
/// assert!(found.hit.is_none());
/// assert!(matches!(&found.candidates[0].verdict, Verdict::Vetoed(v) if v.reason == VetoReason::Negation));
///
/// // Another model never matches.
/// assert!(cache.find_similar_response("Cancel my subscription", "other-model").await.is_none());
/// assert!(cache.find_similar_response("cancel my subscription", "gpt-4o").await.is_some());
/// # });
/// ```
pub struct SimilarityCache<V> {
    config: SimilarityConfig,
    embedder: Option<Arc<dyn Embedder>>,
    verifier: Option<Arc<dyn Verifier>>,
    compare: Option<Compare<V>>,
    guard: Guard,
    state: RwLock<State<V>>,
    shadow: Mutex<ShadowState>,
}

impl<V> fmt::Debug for SimilarityCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimilarityCache")
            .field("config", &self.config)
            .field("embedder", &self.embedder)
            .field("verifier", &self.verifier)
            .field("entries", &self.state.read().len())
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn content_keys(a: &Analysis) -> Vec<String> {
    a.content_keys().map(str::to_string).collect()
}

impl<V: Clone + Send + Sync + 'static> SimilarityCache<V> {
    /// A builder with the default settings.
    pub fn builder() -> SimilarityCacheBuilder<V> {
        SimilarityCacheBuilder::from_config(SimilarityConfig::default())
    }

    /// The settings in use.
    pub fn config(&self) -> &SimilarityConfig {
        &self.config
    }

    /// Number of live entries (expired ones count until they are purged or looked at).
    pub fn len(&self) -> usize {
        self.state.read().len()
    }

    /// `true` when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `value` as the answer to `prompt` in `scope`, replacing an entry with the same
    /// normalised prompt. With `ttl`, the entry leaves the index when it expires.
    pub async fn insert(
        &self,
        scope: &Scope,
        prompt: &str,
        value: V,
        ttl: Option<Duration>,
    ) -> Result<EntryId> {
        let embedding = match &self.embedder {
            Some(e) => Some(self.embed_one(e.as_ref(), prompt).await?),
            None => None,
        };
        let expires_at =
            ttl.map(|t| now_ms().saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
        let analysis = Analysis::new(prompt);
        self.confirm_shadow(scope, analysis.normalized(), &value);
        self.insert_analysed(scope, prompt, &analysis, value, expires_at, embedding)
    }

    async fn embed_one(&self, embedder: &dyn Embedder, text: &str) -> Result<Vec<f32>> {
        let mut v = embedder.embed(&[text]).await?;
        let mut v = v.pop().ok_or_else(|| Error::backend("embedder returned no vector"))?;
        normalise(&mut v);
        Ok(v)
    }

    fn insert_analysed(
        &self,
        scope: &Scope,
        prompt: &str,
        analysis: &Analysis,
        value: V,
        expires_at: Option<u64>,
        embedding: Option<Vec<f32>>,
    ) -> Result<EntryId> {
        let canonical = analysis.canonical();
        let keys = content_keys(analysis);
        let mut st = self.state.write();
        if let Some(&old) = st.exact.get(&(*scope, analysis.normalized().into())) {
            st.remove_slot(old);
        }
        let id = EntryId(st.next_id);
        st.next_id += 1;
        let entry = Entry {
            id,
            scope: *scope,
            prompt: prompt.to_string(),
            normalized: analysis.normalized().into(),
            sorted: sorted_words(&canonical).into(),
            canonical: canonical.into(),
            value,
            expires_at,
            embedding: None,
        };
        let slot = match st.free.pop() {
            Some(s) => s,
            None => {
                st.slots.push(None);
                (st.slots.len() - 1) as Slot
            }
        };
        if let Some(v) = &embedding {
            st.vectors.insert(scope.short(), slot, v)?;
        }
        st.lexical.insert(scope.short(), slot, &keys);
        st.exact.insert((*scope, entry.normalized.clone()), slot);
        st.ids.insert(id, slot);
        st.slots[slot as usize] = Some(Entry { embedding, ..entry });
        Ok(id)
    }

    /// Removes the entry for `prompt` in `scope` (matched by normalised text).
    pub fn remove(&self, scope: &Scope, prompt: &str) -> bool {
        let key = (*scope, Analysis::new(prompt).normalized().into());
        let mut st = self.state.write();
        match st.exact.get(&key).copied() {
            Some(slot) => st.remove_slot(slot),
            None => false,
        }
    }

    /// Removes an entry by id.
    pub fn remove_id(&self, id: EntryId) -> bool {
        let mut st = self.state.write();
        match st.ids.get(&id).copied() {
            Some(slot) => st.remove_slot(slot),
            None => false,
        }
    }

    /// Removes every entry of `scope` (a model or a system prompt invalidated); returns how many.
    pub fn invalidate_scope(&self, scope: &Scope) -> usize {
        self.remove_where(|s, _| s == scope)
    }

    /// Removes every entry for which `f(scope, prompt)` is true; returns how many.
    pub fn remove_where(&self, f: impl Fn(&Scope, &str) -> bool) -> usize {
        let mut st = self.state.write();
        let doomed: Vec<Slot> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().filter(|e| f(&e.scope, &e.prompt)).map(|_| i as Slot))
            .collect();
        doomed.iter().filter(|s| st.remove_slot(**s)).count()
    }

    /// Removes expired entries; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = now_ms();
        let mut st = self.state.write();
        let doomed: Vec<Slot> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().filter(|e| !e.alive(now)).map(|_| i as Slot))
            .collect();
        doomed.iter().filter(|s| st.remove_slot(**s)).count()
    }

    /// Drops the tombstones of removed entries from the indexes now (it also happens
    /// automatically once they are a quarter of the slots).
    pub fn compact(&self) {
        self.state.write().compact();
    }

    /// Removes everything.
    pub fn clear(&self) {
        *self.state.write() = State::default();
    }

    /// Approximate bytes held by the indexes and entries (without the values).
    pub fn approx_index_bytes(&self) -> usize {
        let st = self.state.read();
        let heap: usize = st
            .slots
            .iter()
            .flatten()
            .map(|e| {
                e.prompt.capacity()
                    + e.normalized.len()
                    + e.canonical.len()
                    + e.sorted.len()
                    + e.embedding.as_ref().map_or(0, |v| v.capacity() * 4)
            })
            .sum();
        let maps = st.exact.len() * (32 + 16 + 4 + 8)
            + st.exact.keys().map(|k| k.1.len()).sum::<usize>()
            + st.ids.len() * (8 + 4 + 8);
        let slots = st.slots.capacity() * std::mem::size_of::<Option<Entry<V>>>();
        heap + maps + slots + st.lexical.approx_bytes() + st.vectors.approx_bytes()
    }

    /// The reference's call: the value stored for a prompt similar to `prompt`, asked of
    /// `model` with no other context ([`Scope::for_model`]).
    pub async fn find_similar_response(&self, prompt: &str, model: &str) -> Option<V> {
        self.lookup(&Scope::for_model(model), prompt).await.hit.map(|h| h.value)
    }

    /// Looks `prompt` up in `scope`: the hit, if any, and every candidate with its verdict.
    pub async fn lookup(&self, scope: &Scope, prompt: &str) -> Lookup<V> {
        let query = Analysis::new(prompt);
        let now = now_ms();
        let query_vector = match &self.embedder {
            Some(e) => match self.embed_one(e.as_ref(), prompt).await {
                Ok(v) => Some(v),
                Err(err) => {
                    tracing::warn!(error = %err, "similarity: embedding the query failed; lexical only");
                    None
                }
            },
            None => None,
        };
        // Exact (normalised) first, then the candidates, under one read lock.
        let mut pool: Vec<(Slot, EntryId, String, Score)> = Vec::new();
        {
            let st = self.state.read();
            if let Some(&slot) = st.exact.get(&(*scope, query.normalized().into())) {
                if let Some(e) = st.live(slot, scope, now) {
                    let hit = Hit {
                        id: e.id,
                        prompt: e.prompt.clone(),
                        value: e.value.clone(),
                        score: Score { lexical: 1.0, cosine: None },
                        exact: true,
                    };
                    let candidate = Candidate {
                        id: e.id,
                        prompt: e.prompt.clone(),
                        score: hit.score,
                        verdict: Verdict::Accepted,
                    };
                    drop(st);
                    return self.finish(scope, &query, Some(hit), vec![candidate]);
                }
            }
            let canonical = query.canonical();
            let sorted = sorted_words(&canonical);
            let keys = content_keys(&query);
            let slots =
                st.lexical.candidates(scope.short(), &keys, self.config.max_candidates, |s| {
                    st.live(s, scope, now).is_some()
                });
            let mut scored: HashMap<Slot, Score> = HashMap::new();
            for slot in slots {
                let Some(e) = st.live(slot, scope, now) else { continue };
                let lexical = score_texts(&canonical, &sorted, &e.canonical, &e.sorted);
                if lexical >= self.config.threshold {
                    scored.insert(slot, Score { lexical, cosine: None });
                }
            }
            if let Some(qv) = &query_vector {
                let found = st.vectors.search(scope.short(), qv, self.config.max_checked, |s| {
                    st.live(s, scope, now).is_some()
                });
                for (slot, cos) in found {
                    if cos < self.config.cosine_threshold {
                        continue;
                    }
                    let Some(e) = st.live(slot, scope, now) else { continue };
                    let score = scored.entry(slot).or_insert_with(|| Score {
                        lexical: score_texts(&canonical, &sorted, &e.canonical, &e.sorted),
                        cosine: None,
                    });
                    score.cosine = Some(cos);
                }
            }
            for (slot, score) in scored {
                if let Some(e) = st.live(slot, scope, now) {
                    pool.push((slot, e.id, e.prompt.clone(), score));
                }
            }
        }
        let rank = |s: &Score| s.lexical.max(f64::from(s.cosine.unwrap_or(-1.0)));
        pool.sort_by(|a, b| rank(&b.3).total_cmp(&rank(&a.3)).then(a.1.cmp(&b.1)));

        let mut candidates = Vec::with_capacity(pool.len());
        let mut hit = None;
        for (i, (slot, id, stored, score)) in pool.into_iter().enumerate() {
            if hit.is_some() || i >= self.config.max_checked {
                candidates.push(Candidate {
                    id,
                    prompt: stored,
                    score,
                    verdict: Verdict::NotChecked,
                });
                continue;
            }
            let verdict = self.decide(&query, prompt, &stored, score).await;
            if verdict == Verdict::Accepted {
                let st = self.state.read();
                match st.slots.get(slot as usize).and_then(Option::as_ref).filter(|e| e.id == id) {
                    Some(e) => {
                        hit = Some(Hit {
                            id,
                            prompt: stored.clone(),
                            value: e.value.clone(),
                            score,
                            exact: false,
                        });
                    }
                    None => {
                        // Removed while we were checking: never serve it.
                        candidates.push(Candidate {
                            id,
                            prompt: stored,
                            score,
                            verdict: Verdict::NotChecked,
                        });
                        continue;
                    }
                }
            }
            candidates.push(Candidate { id, prompt: stored, score, verdict });
        }
        self.finish(scope, &query, hit, candidates)
    }

    async fn decide(&self, query: &Analysis, prompt: &str, stored: &str, score: Score) -> Verdict {
        if self.config.guard {
            // A rewording (low lexical ratio) that the embedder found close is judged by the
            // relaxed guard: its other words are the model's business. A minimal edit, or a
            // candidate no embedder vouched for, gets the strict guard.
            let vouched = score.cosine.is_some_and(|c| c >= self.config.cosine_threshold);
            let rewording = score.lexical < self.config.minimal_edit_ratio;
            let relaxed = Guard::relaxed();
            let guard = if vouched && rewording { &relaxed } else { &self.guard };
            if let Err(veto) = guard.check(query, &Analysis::new(stored)) {
                return Verdict::Vetoed(veto);
            }
        }
        if let Some(verifier) = &self.verifier {
            let outcome =
                tokio::time::timeout(self.config.verifier_timeout, verifier.verify(prompt, stored))
                    .await;
            let veto = match outcome {
                Ok(Ok(true)) => return Verdict::Accepted,
                Ok(Ok(false)) => "rejected",
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "similarity: verifier failed; treated as a miss");
                    "failed"
                }
                Err(_) => "timed out",
            };
            return Verdict::Vetoed(Veto::new(VetoReason::Verifier, veto));
        }
        Verdict::Accepted
    }

    fn finish(
        &self,
        scope: &Scope,
        query: &Analysis,
        hit: Option<Hit<V>>,
        candidates: Vec<Candidate>,
    ) -> Lookup<V> {
        if !self.config.shadow {
            return Lookup { hit, would_hit: None, candidates };
        }
        let mut sh = self.shadow.lock();
        sh.report.lookups += 1;
        if let Some(h) = &hit {
            sh.report.would_hit += 1;
            let key = (*scope, Box::<str>::from(query.normalized()));
            if sh.pending.insert(key.clone(), h.id).is_none() {
                sh.order.push_back(key);
                sh.report.pending += 1;
            }
            while sh.order.len() > SHADOW_PENDING_CAP {
                if let Some(old) = sh.order.pop_front() {
                    sh.pending.remove(&old);
                }
            }
        }
        let mut out = Lookup::miss(candidates);
        out.would_hit = hit;
        out
    }

    fn confirm_shadow(&self, scope: &Scope, normalized: &str, value: &V) {
        if !self.config.shadow {
            return;
        }
        let Some(compare) = &self.compare else { return };
        let mut sh = self.shadow.lock();
        let Some(id) = sh.pending.remove(&(*scope, normalized.into())) else { return };
        sh.report.pending = sh.report.pending.saturating_sub(1);
        let st = self.state.read();
        let Some(e) = st.ids.get(&id).and_then(|s| st.slots[*s as usize].as_ref()) else { return };
        if compare(&e.value, value) {
            sh.report.confirmed_same += 1;
        } else {
            sh.report.confirmed_different += 1;
            sh.report.recent_wrong.push((normalized.to_string(), e.prompt.clone()));
            if sh.report.recent_wrong.len() > 100 {
                sh.report.recent_wrong.remove(0);
            }
        }
    }

    /// Shadow-mode figures so far.
    pub fn shadow_report(&self) -> ShadowReport {
        self.shadow.lock().report.clone()
    }
}

/// The persisted form of the index: entries with their scope, prompt, value, expiry and
/// (when an embedder was used) vector.
#[derive(Serialize, Deserialize)]
struct Snapshot<V> {
    format: u32,
    embedder: Option<String>,
    entries: Vec<SnapshotEntry<V>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEntry<V> {
    scope: String,
    prompt: String,
    value: V,
    expires_at: Option<u64>,
    embedding: Option<Vec<f32>>,
}

const SNAPSHOT_FORMAT: u32 = 1;

impl<V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> SimilarityCache<V> {
    /// Writes every live entry to `store` under `key` (JSON), so the index survives a
    /// restart; returns how many entries were written. Expired entries are left out.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::testkit::MemoryMapStore;
    /// use aurelis_cache_similarity::{Scope, SimilarityCache};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// let store = MemoryMapStore::new("disk");
    /// let scope = Scope::for_model("m");
    /// let before = SimilarityCache::<String>::builder().build().unwrap();
    /// before.insert(&scope, "What are your opening hours?", "9 to 5".into(), None).await.unwrap();
    /// assert_eq!(before.save(&store, "similarity:index").await.unwrap(), 1);
    ///
    /// let after = SimilarityCache::<String>::builder().build().unwrap();
    /// assert_eq!(after.load(&store, "similarity:index").await.unwrap(), 1);
    /// assert_eq!(after.find_similar_response("what are your opening hours", "m").await.as_deref(), Some("9 to 5"));
    /// # });
    /// ```
    pub async fn save(&self, store: &dyn Store, key: &str) -> Result<usize> {
        let now = now_ms();
        let snapshot = {
            let st = self.state.read();
            let mut entries: Vec<(EntryId, SnapshotEntry<V>)> = st
                .slots
                .iter()
                .flatten()
                .filter(|e| e.alive(now))
                .map(|e| {
                    (
                        e.id,
                        SnapshotEntry {
                            scope: e.scope.to_hex(),
                            prompt: e.prompt.clone(),
                            value: e.value.clone(),
                            expires_at: e.expires_at,
                            embedding: e.embedding.clone(),
                        },
                    )
                })
                .collect();
            entries.sort_by_key(|(id, _)| *id);
            Snapshot {
                format: SNAPSHOT_FORMAT,
                embedder: self.embedder.as_ref().map(|e| e.model_id().to_string()),
                entries: entries.into_iter().map(|(_, e)| e).collect(),
            }
        };
        let n = snapshot.entries.len();
        let bytes = serde_json::to_vec(&snapshot)
            .map_err(|e| Error::codec("similarity snapshot").with_source(e))?;
        store.set(key, Bytes::from(bytes), None).await?;
        Ok(n)
    }

    /// Adds the entries saved under `key` in `store` (none when the key is absent); expired
    /// entries are skipped, and vectors are recomputed when the embedder changed. Returns
    /// how many entries were loaded.
    pub async fn load(&self, store: &dyn Store, key: &str) -> Result<usize> {
        let Some(bytes) = store.get(key).await? else { return Ok(0) };
        let snapshot: Snapshot<V> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::codec("similarity snapshot").with_source(e))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(Error::codec(format!(
                "unknown similarity snapshot format {}",
                snapshot.format
            )));
        }
        let same_model = match (&self.embedder, &snapshot.embedder) {
            (Some(e), Some(id)) => e.model_id() == id,
            _ => false,
        };
        let now = now_ms();
        let mut loaded = 0;
        for entry in snapshot.entries {
            if entry.expires_at.is_some_and(|t| t <= now) {
                continue;
            }
            let scope = Scope::from_hex(&entry.scope)
                .ok_or_else(|| Error::codec("bad scope in similarity snapshot"))?;
            let embedding = match (&self.embedder, entry.embedding) {
                (Some(_), Some(v)) if same_model => Some(v),
                (Some(e), _) => Some(self.embed_one(e.as_ref(), &entry.prompt).await?),
                (None, _) => None,
            };
            let analysis = Analysis::new(&entry.prompt);
            self.insert_analysed(
                &scope,
                &entry.prompt,
                &analysis,
                entry.value,
                entry.expires_at,
                embedding,
            )?;
            loaded += 1;
        }
        Ok(loaded)
    }
}
