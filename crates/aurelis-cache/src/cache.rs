//! The [`Cache`] handle and its typed API; the tier walk lives in `tiers`, single-flight in
//! `coalesce`, marks and epochs in `invalidation`, the backplane in `sync`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::{
    Bytes, CacheStats, Codec, Envelope, Error, ErrorKind, Invalidation, Key, KeyBuilder, Result,
    ValueEntry,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builder::CacheBuilder;
use crate::coalesce::Flights;
use crate::entry;
use crate::invalidation::{Epochs, LoadStart, Marks};
use crate::options::SetOptions;
use crate::single_flight::{LeaseGuard, Leased, SingleFlight};
use crate::sync::SyncState;
use crate::tier::TierState;
use crate::tiers::{First, Found, Lookup, Resume, Scope};
use crate::to_key::{KeyBuf, ToKey};

/// Everything a cache and its clones share.
pub(crate) struct Inner {
    pub(crate) tiers: Vec<Arc<TierState>>,
    pub(crate) keys: KeyBuilder,
    pub(crate) codec: Codec,
    pub(crate) max_value_bytes: usize,
    pub(crate) strict: bool,
    pub(crate) stats: CacheStats,
    pub(crate) flights: Flights,
    pub(crate) epochs: Arc<Epochs>,
    pub(crate) marks: Marks,
    pub(crate) sync: SyncState,
    pub(crate) instance_id: String,
    pub(crate) ready: tokio::sync::OnceCell<()>,
    pub(crate) single_flight: Option<SingleFlight>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.sync.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    /// Where a load of `key` with `options` starts; taken before the cache is read.
    pub(crate) fn load_start(&self, key: &str, options: &SetOptions) -> LoadStart {
        LoadStart {
            snap: self.epochs.snapshot(key),
            stamp: self.entry_time(),
            tags: Arc::from(options.tags()),
        }
    }

    /// Whether a load that began at `start` must not be stored: its key was written or
    /// deleted since (or the backplane had a gap), or a mark made since covers it.
    pub(crate) fn load_outdated(&self, key: &str, start: &LoadStart) -> bool {
        !self.epochs.unchanged(start.snap)
            || self.marks.covers(self.keys.prefix(), key, start.stamp, &start.tags, false)
    }

    /// Whether a caller with `options` may wait for the load that began at `flight`: no mark
    /// made since covers it, under its tags or the caller's (the epochs were compared).
    pub(crate) fn load_still_fresh(
        &self,
        key: &str,
        flight: &LoadStart,
        options: &SetOptions,
    ) -> bool {
        let prefix = self.keys.prefix();
        !self.marks.covers(prefix, key, flight.stamp, &flight.tags, false)
            && !self.marks.covers(prefix, key, flight.stamp, options.tags(), false)
    }
}

/// Runs the loader; while it runs, renews the single-flight lease (if held) every third of
/// its time to live.
async fn run_loader<T, F, Fut, E>(
    key: &Key,
    loader: F,
    lease: Option<(&SingleFlight, &str)>,
) -> std::result::Result<T, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let Some((flight, token)) = lease else { return loader().await };
    let mut load = std::pin::pin!(loader());
    let period = flight.lease_ttl / 3;
    loop {
        tokio::select! {
            outcome = &mut load => return outcome,
            () = tokio::time::sleep(period) => {}
        }
        // Renewed outside the `select!`, so no loader output is held across it.
        match flight.lease.renew(key.as_str(), token, flight.lease_ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key = %key, "single-flight lease lost while loading: another process may load too")
            }
            Err(e) => tracing::debug!(key = %key, error = %e, "single-flight lease not renewed"),
        }
    }
}

/// The value out of its `Arc`: moved when this was the only handle (a value just decoded),
/// cloned when it is shared (a memory tier keeps it).
fn owned<T: Clone>(v: Arc<T>) -> T {
    Arc::try_unwrap(v).unwrap_or_else(|shared| T::clone(&shared))
}

/// A tiered cache: a lookup walks the tiers in order and the first fresh hit wins; a hit in
/// a lower tier is copied up with its remaining lifetime; writes go to every tier, each with
/// `min(entry TTL, tier TTL)`. A failing tier is skipped, counted and logged; it never fails
/// a read another tier or the loader can answer (unless the cache is strict).
///
/// Cloning is cheap (an `Arc`); clones share everything.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use aurelis_cache::{Cache, Tier, MokaStore, Params};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)).ttl(Duration::from_secs(300)))
///     .build()?;
///
/// cache.set(("user_data", "user123"), &("John", "developer")).await?;
/// let user: Option<(String, String)> = cache.get(("user_data", "user123")).await?;
/// assert_eq!(user, Some(("John".into(), "developer".into())));
///
/// // `None` can be cached, and is not a miss:
/// cache.set(("lookup", "nobody"), &None::<u32>).await?;
/// assert_eq!(cache.get::<Option<u32>>(("lookup", "nobody")).await?, Some(None));
/// assert_eq!(cache.get::<Option<u32>>(("lookup", "never-set")).await?, None);
///
/// let page = Params::new().with("page", 1);
/// let answer: u64 = cache
///     .get_or_compute(("search", "q", Some(&page)), || async {
///         Ok::<_, std::io::Error>(42)
///     })
///     .await?;
/// assert_eq!(answer, 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.keys.namespace())
            .field("version", &self.inner.keys.version())
            .field("tiers", &self.tier_names())
            .field("strict", &self.inner.strict)
            .finish()
    }
}

impl Cache {
    pub(crate) fn from_inner(inner: Inner) -> Cache {
        Cache { inner: Arc::new(inner) }
    }

    /// Starts background work once (marks, repair tasks, backplane).
    async fn ready(&self) -> Result<()> {
        if self.inner.ready.initialized() {
            return Ok(());
        }
        let inner = self.inner.clone();
        self.inner.ready.get_or_try_init(|| async move { inner.start().await }).await.map(drop)
    }

    /// The key builder of this cache.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.keys().build_key("c", "i", None)?.as_str(), "aurelis:v1:c:i");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn keys(&self) -> &KeyBuilder {
        &self.inner.keys
    }

    /// The tier names in lookup order.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.tier_names(), ["memory"]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn tier_names(&self) -> Vec<&str> {
        self.inner.tiers.iter().map(|l| l.name()).collect()
    }

    /// The live counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.stats().snapshot().hits, 0);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    /// This instance's id on the backplane.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert!(!cache.instance_id().is_empty());
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Whether the circuit breaker of tier `name` is open (the tier is being skipped).
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert!(!cache.is_tier_down("memory"));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn is_tier_down(&self, name: &str) -> bool {
        self.inner.tiers.iter().any(|l| l.name() == name && l.is_open())
    }

    /// The codec new entries are written with.
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// Whether this cache returns tier errors instead of skipping the tier.
    pub fn is_strict(&self) -> bool {
        self.inner.strict
    }

    /// The largest encoded value this cache accepts.
    pub fn max_value_bytes(&self) -> usize {
        self.inner.max_value_bytes
    }

    /// The TTL cap of tier `name` (`None` when it has none or there is no such tier).
    pub fn tier_ttl(&self, name: &str) -> Option<Duration> {
        self.inner.tiers.iter().find(|t| t.name() == name).and_then(|t| t.config.ttl)
    }

    /// How many keys tier `name` missed (writes or invalidations that failed or were skipped)
    /// and must be repaired of before it serves them again.
    pub fn tier_pending(&self, name: &str) -> usize {
        self.inner
            .tiers
            .iter()
            .find(|t| t.name() == name)
            .map_or(0, |t| t.pending_keys(usize::MAX).len() + usize::from(t.overflowed()))
    }

    // ----- reads -------------------------------------------------------------------------

    /// The value cached under `key`, or `None` on a miss.
    ///
    /// `key` is anything [`ToKey`]: `(category, identifier)`, `(category, identifier,
    /// params)` or a [`Key`] built beforehand with [`Cache::keys`] (the cheapest: nothing to
    /// build per call). `T` is `Serialize` too because a value read is kept decoded in the
    /// memory tier, which must still be able to hand out its bytes (to a byte reader of the
    /// store, or to a read of another type).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("user_data", "u1"), &42u32).await?;
    /// assert_eq!(cache.get::<u32>(("user_data", "u1")).await?, Some(42));
    /// assert_eq!(cache.get::<u32>(("user_data", "u2")).await?, None);
    ///
    /// let key = cache.keys().build_key("user_data", "u1", None)?;
    /// assert_eq!(cache.get::<u32>(&key).await?, Some(42));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad category or identifier. Tier failures are not
    /// errors (they are skipped and counted) unless the cache is strict. An entry that does not
    /// decode into `T` is a miss for this read (counted as a type mismatch) and is kept: the
    /// lookup goes on to the next tier, and readers of the entry's own type still find it.
    pub async fn get<T>(&self, key: impl ToKey) -> Result<Option<T>>
    where
        T: DeserializeOwned + Serialize + Clone + Send + Sync + 'static,
    {
        let mut buf = KeyBuf::default();
        let key = match self.hit_or_text(&key, &mut buf, |e| e.get::<T>().cloned())? {
            Ok(v) => return Ok(Some(v)),
            Err(text) => text,
        };
        let resume = match self.inner.first_sync::<T>(key)? {
            First::Hit(v) => return Ok(Some(self.sync_hit(v).await)),
            First::Next(resume) => resume,
            First::Walk => Resume::start(),
        };
        // A value decoded from bytes for this read alone is moved out, not copied. (The walk's
        // future is not boxed: at about 1.1 KiB it is past glibc's per-thread cache, and the
        // allocation cost a Redis read about 1,200 instructions, more than the hits save.)
        Ok(self.get_found::<T>(key, resume).await?.map(Found::into_owned))
    }

    /// Like [`Cache::get`], but hands out the shared value instead of a copy: a hit in a
    /// memory tier that keeps decoded values is a lookup and a reference count, no clone of
    /// the value (and `T` need not be `Clone`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("doc", "d"), &"a long answer".to_string()).await?;
    /// let first = cache.get_shared::<String>(("doc", "d")).await?.unwrap();
    /// let second = cache.get_shared::<String>(("doc", "d")).await?.unwrap();
    /// assert_eq!(*first, "a long answer");
    /// // Decoded once, then shared: both reads hold the same allocation.
    /// assert!(std::sync::Arc::ptr_eq(&first, &second));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    pub async fn get_shared<T>(&self, key: impl ToKey) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        let mut buf = KeyBuf::default();
        let key = match self.hit_or_text(&key, &mut buf, |e| e.get_arc::<T>())? {
            Ok(v) => return Ok(Some(v)),
            Err(text) => text,
        };
        // As in `get`, written out: an async helper shared by both adds a nested future,
        // 25 to 56 instructions per read (callgrind, hit_profile).
        let resume = match self.inner.first_sync::<T>(key)? {
            First::Hit(v) => return Ok(Some(Arc::new(self.sync_hit(v).await))),
            First::Next(resume) => resume,
            First::Walk => Resume::start(),
        };
        Ok(self.get_found::<T>(key, resume).await?.map(Found::into_arc))
    }

    /// The key's text (written into `buf` unless it is a prebuilt [`Key`]) and, when the first
    /// tier keeps decoded values, the synchronous memory hit: `Ok(value)` (counted), else
    /// `Err(text)` for the full read.
    fn hit_or_text<'k, K: ToKey, R>(
        &self,
        key: &'k K,
        buf: &'k mut KeyBuf,
        take: impl FnOnce(&ValueEntry) -> Option<R>,
    ) -> Result<std::result::Result<R, &'k str>> {
        let text = buf.text(key, &self.inner.keys)?;
        // `None` at once unless the first tier keeps decoded values. Counted once, for the
        // tier and the cache.
        if let Some(v) = self.inner.memory_hit(text, true, take) {
            return Ok(Ok(v));
        }
        Ok(Err(text))
    }

    /// A hit the first tier answered synchronously ([`Inner::first_sync`], which counted it):
    /// the runtime's cooperative budget spent as an asynchronous read would spend it (a task
    /// reading hit after hit from disk still yields now and then).
    async fn sync_hit<T>(&self, value: T) -> T {
        tokio::task::consume_budget().await;
        value
    }

    /// The read through the tiers (from where `resume` says), when the synchronous hits did
    /// not answer.
    async fn get_found<T>(&self, key: &str, resume: Resume<T>) -> Result<Option<Found<T>>>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        self.ready().await?;
        match self.inner.read_from::<T>(key, resume).await? {
            Lookup::Fresh(v, _) => {
                self.inner.stats.record_hit();
                Ok(Some(v))
            }
            Lookup::Miss(_) => {
                self.inner.stats.record_miss();
                Ok(None)
            }
        }
    }

    /// The values of several keys, in order (`None` for misses), looked up concurrently.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("n", "one"), &1u8).await?;
    /// let found = cache.get_many::<u8>([("n", "one"), ("n", "two")]).await?;
    /// assert_eq!(found, [Some(1), None]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get`]; a bad key fails the whole call before any lookup.
    pub async fn get_many<T>(
        &self,
        keys: impl IntoIterator<Item = impl ToKey>,
    ) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned + Serialize + Clone + Send + Sync + 'static,
    {
        let keys = keys
            .into_iter()
            .map(|k| k.to_key(&self.inner.keys).map(Cow::into_owned))
            .collect::<Result<Vec<Key>>>()?;
        self.ready().await?;
        let lookups = keys.iter().map(|key| self.inner.read_found::<T>(key.as_str()));
        let mut out = Vec::with_capacity(keys.len());
        for found in futures::future::join_all(lookups).await {
            match found? {
                Lookup::Fresh(v, _) => {
                    self.inner.stats.record_hit();
                    out.push(Some(v.into_owned()));
                }
                Lookup::Miss(_) => {
                    self.inner.stats.record_miss();
                    out.push(None);
                }
            }
        }
        Ok(out)
    }

    /// The value under `key`, or the loader's result, cached with the default options (each
    /// tier's TTL cap, no tags); [`Cache::get_or_compute_with`] takes options.
    ///
    /// Concurrent callers missing the same key (for the same `T`) wait for one loader call
    /// (request coalescing): N concurrent misses run the loader once, and the value is handed
    /// to every caller as loaded (not re-read from a tier). If the leading caller is
    /// cancelled, a waiter takes over. A loader error is returned to every waiter and never
    /// cached; the loader's error type is anything convertible into
    /// `Box<dyn Error + Send + Sync>` (`std::io::Error`, `anyhow::Error`, `String`, ...). A
    /// value that no tier can store (too large, a tier down) is still returned (counted as
    /// `served_uncached`). A value loaded while its key was written, deleted or invalidated
    /// is returned but not stored, so it cannot overwrite the newer state.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let v: u32 = cache
    ///     .get_or_compute(("reports", "daily"), || async { Ok::<_, std::io::Error>(7) })
    ///     .await?;
    /// assert_eq!(v, 7);
    /// // The second call is a hit: the loader does not run again.
    /// let again: u32 = cache
    ///     .get_or_compute(("reports", "daily"), || async { Ok::<_, std::io::Error>(8) })
    ///     .await?;
    /// assert_eq!(again, 7);
    /// assert_eq!(cache.stats().snapshot().loader_calls, 1);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key, [`ErrorKind::Loader`] (with the loader's error
    /// as source) when the loader fails, [`ErrorKind::Codec`] /
    /// [`ErrorKind::ValueTooLarge`] when the result cannot be cached.
    pub async fn get_or_compute<T, F, Fut, E>(&self, key: impl ToKey, loader: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.get_or_compute_with(key, &SetOptions::DEFAULT, loader).await
    }

    /// Like [`Cache::get_or_compute`], storing the loaded value with `options` (TTL, tags,
    /// stale window). When the loader fails and an expired entry is still inside its stale
    /// window ([`SetOptions::stale_for`]), that entry is served instead (fail-safe).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use aurelis_cache::SetOptions;
    /// let key = cache.keys().build_model_key("gpt-4o", "Hi!", &aurelis_cache::Params::new())?;
    /// let opts = SetOptions::new().ttl(std::time::Duration::from_secs(3600)).tag("greetings");
    /// let answer: String = cache
    ///     .get_or_compute_with(&key, &opts, || async { Ok::<_, std::io::Error>("Hello!".to_string()) })
    ///     .await?;
    /// assert_eq!(answer, "Hello!");
    /// // Tagged: one call drops it.
    /// cache.invalidate_tag("greetings").await?;
    /// assert_eq!(cache.get::<String>(&key).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_compute`]; with a stale entry at hand a loader failure is not an
    /// error.
    pub async fn get_or_compute_with<T, F, Fut, E>(
        &self,
        key: impl ToKey,
        options: &SetOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        options.check()?;
        if self.inner.has_memory_front() {
            let mut buf = KeyBuf::default();
            if let Ok(v) = self.hit_or_text(&key, &mut buf, |e| e.get::<T>().cloned())? {
                return Ok(v);
            }
        }
        let key = key.to_key(&self.inner.keys)?;
        let key = &*key;
        self.ready().await?;
        let inner = &self.inner;
        // Before the read: a write, delete or invalidation of the key after this point keeps a
        // value loaded on this miss out of the cache (one that finished before the read is
        // what the read finds).
        let start = inner.load_start(key.as_str(), options);
        let stale = match inner.read::<T>(key.as_str()).await? {
            Lookup::Fresh(v, _) => {
                inner.stats.record_hit();
                return Ok(owned(v));
            }
            Lookup::Miss(stale) => stale,
        };
        inner.stats.record_miss();
        let outcome = inner
            .flights
            .run(
                key.as_str(),
                &start,
                |flight| inner.load_still_fresh(key.as_str(), flight, options),
                || inner.stats.record_coalesced_waiter(),
                || self.lead_load(key, options, loader, true, start.clone()),
            )
            .await;
        self.fail_safe(key, outcome, stale)
    }

    /// The leader's part of a load: look again, call the loader, store the value unless its
    /// key was touched meanwhile, and return the value itself.
    async fn lead_load<T, F, Fut, E>(
        &self,
        key: &Key,
        options: &SetOptions,
        loader: F,
        recheck: bool,
        start: LoadStart,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &self.inner;
        // A load that finished just before this caller took the lead has stored the value.
        if recheck {
            // With a memory tier that keeps decoded values, a load that just finished is
            // there: a synchronous look, which counts no second miss in every tier.
            if inner.has_memory_front() {
                if let Some(v) = inner.memory_hit(key.as_str(), false, |e| e.get::<T>().cloned()) {
                    return Ok(v);
                }
            } else if let Lookup::Fresh(v, _) = inner.read::<T>(key.as_str()).await? {
                return Ok(T::clone(&v));
            }
        }
        // Across processes: one of them loads, the others wait for its value.
        let flight = inner.single_flight.as_ref().filter(|_| inner.tiers.iter().any(|t| t.shared));
        let guard = match flight {
            Some(flight) => match inner.take_lease::<T>(flight, key.as_str()).await {
                Leased::Value(v) => return Ok(owned(v)),
                Leased::Held(token) => {
                    Some(LeaseGuard::new(flight.lease.clone(), key.as_str(), token))
                }
                Leased::Unleased => None,
            },
            None => None,
        };
        let lease = flight.zip(guard.as_ref().map(LeaseGuard::token));
        let result = self.load_and_store(key, options, loader, lease, start).await;
        if let Some(guard) = guard {
            // After the value is stored (or the load failed): waiters find it, or take over.
            guard.release().await;
        }
        result
    }

    /// Calls the loader (renewing the lease, if held, while it runs) and stores its value
    /// unless the key was touched meanwhile.
    async fn load_and_store<T, F, Fut, E>(
        &self,
        key: &Key,
        options: &SetOptions,
        loader: F,
        lease: Option<(&SingleFlight, &str)>,
        start: LoadStart,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &self.inner;
        inner.stats.record_loader_call();
        let value = match run_loader(key, loader, lease).await {
            Ok(v) => v,
            Err(e) => {
                inner.stats.record_loader_error();
                // The loader's own error is the source, so callers can downcast it.
                return Err(
                    Error::new(ErrorKind::Loader, "the loader failed").with_boxed_source(e.into())
                );
            }
        };
        // The check and the store are one step for this key's writes and deletes: they wait
        // until the store returned, and one in progress is waited for (see `invalidation`).
        let storing = inner.epochs.storing(key.as_str()).await;
        // Taken before the check: a mark made before the check is seen by it, one made after
        // takes its time under the marks' lock from a later clock reading, so it covers what
        // is stored (see `Marks::add_new`).
        let created = inner.entry_time();
        if inner.load_outdated(key.as_str(), &start) {
            tracing::debug!(key = %key, "key changed while loading: value returned, not stored");
            inner.stats.record_served_uncached();
            return Ok(value);
        }
        let stored = self.store_owned(key, &value, options, created).await;
        // The write bumps the key once before and once per tier; anything else (with the key
        // locked, a backplane gap) means it changed: what this load wrote is removed again.
        let own = 1 + inner.tiers.len() as u64;
        if stored.is_ok() && !inner.epochs.unchanged_but(start.snap, own) {
            tracing::debug!(key = %key, "key touched while the loaded value was stored: removed again");
            inner.stats.record_served_uncached();
            let _ = inner.delete_everywhere(key.as_str(), Scope::All).await;
            drop(storing);
            inner.publish(Invalidation::Key(key.as_str().to_owned()), inner.entry_time());
            return Ok(value);
        }
        drop(storing);
        if let Err(e) = stored {
            inner.stats.record_served_uncached();
            if inner.strict {
                return Err(e);
            }
            tracing::warn!(key = %key, error = %e, "loaded value served but not cached");
        }
        Ok(value)
    }

    /// Like [`Cache::get_or_compute`], for a loader that can run on its own (`Send +
    /// 'static`), which enables what [`SetOptions`] sets for it (as FusionCache's factory
    /// timeouts and eager refresh):
    ///
    /// - [`SetOptions::refresh_ahead`]: a hit read late in its lifetime is served as it is and
    ///   refreshed in the background (one refresh per key at a time);
    /// - [`SetOptions::soft_timeout`]: with a stale value at hand (see
    ///   [`SetOptions::stale_for`]), the caller waits that long for the loader, then gets the
    ///   stale value while the loader finishes in the background and stores its result;
    /// - [`SetOptions::hard_timeout`]: the caller waits at most that long, then gets the stale
    ///   value or an [`ErrorKind::Timeout`] error; the loader still finishes and stores.
    ///
    /// Concurrent callers share one load, as with `get_or_compute`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use std::time::Duration;
    /// use aurelis_cache::{ErrorKind, SetOptions};
    /// // A slow provider and nothing stale to fall back on: the hard timeout answers.
    /// let opts = SetOptions::new().hard_timeout(Duration::from_millis(20));
    /// let err = cache
    ///     .get_or_refresh(("report", "slow"), &opts, || async {
    ///         tokio::time::sleep(Duration::from_millis(200)).await;
    ///         Ok::<_, std::io::Error>(1u32)
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// // The load went on in the background and stored its result.
    /// tokio::time::sleep(Duration::from_millis(400)).await;
    /// assert_eq!(cache.get::<u32>(("report", "slow")).await?, Some(1));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_compute`], and [`ErrorKind::Timeout`] when the hard timeout passed
    /// with nothing stale to serve.
    pub async fn get_or_refresh<T, F, Fut, E>(
        &self,
        key: impl ToKey,
        options: &SetOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        options.check()?;
        let key = key.to_key(&self.inner.keys)?;
        let key = &*key;
        self.ready().await?;
        let inner = &self.inner;
        let start = inner.load_start(key.as_str(), options);
        let stale = match inner.read::<T>(key.as_str()).await? {
            Lookup::Fresh(v, life) => {
                inner.stats.record_hit();
                if let Some(fraction) = options.refresh_ahead_value() {
                    let now = aurelis_cache_core::envelope::now_ms();
                    if entry::due_for_refresh(life.created_at_ms, life.expires_at_ms, fraction, now)
                    {
                        // Served as it is; one background refresh per key at a time.
                        drop(self.spawn_load(key, options.clone(), loader, false, start));
                    }
                }
                return Ok(T::clone(&v));
            }
            Lookup::Miss(stale) => stale,
        };
        inner.stats.record_miss();
        let soft = options.soft_timeout_value().filter(|_| stale.is_some());
        let hard = options.hard_timeout_value();
        let mut load = self.spawn_load(key, options.clone(), loader, true, start);
        let waited = match (soft, hard) {
            (Some(s), Some(h)) => Some(s.min(h)),
            (s, h) => s.or(h),
        };
        let outcome = match waited {
            None => (&mut load).await,
            Some(limit) => match tokio::time::timeout(limit, &mut load).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The load goes on and stores its result; this caller stops waiting.
                    return match stale {
                        Some(v) => {
                            inner.stats.record_stale_served();
                            Ok(T::clone(&v))
                        }
                        None => Err(Error::new(
                            ErrorKind::Timeout,
                            format!("the loader did not answer within {} ms", limit.as_millis()),
                        )),
                    };
                }
            },
        };
        let outcome = outcome.unwrap_or_else(|e| {
            Err(Error::new(ErrorKind::Loader, "the loader task failed").with_source(e))
        });
        self.fail_safe(key, outcome, stale)
    }

    /// A load's outcome, or the stale value when the loader failed and one is at hand
    /// (fail-safe, counted as `stale_served`).
    fn fail_safe<T: Clone>(
        &self,
        key: &Key,
        outcome: Result<T>,
        stale: Option<Arc<T>>,
    ) -> Result<T> {
        match outcome {
            Err(err) if err.kind() == ErrorKind::Loader => match stale {
                Some(v) => {
                    tracing::warn!(key = %key, error = %err, "loader failed: serving a stale entry");
                    self.inner.stats.record_stale_served();
                    Ok(T::clone(&v))
                }
                None => Err(err),
            },
            other => other,
        }
    }

    /// Runs a coalesced load of `key` as a task of its own, so it completes (and stores its
    /// value) whoever waits for it.
    fn spawn_load<T, F, Fut, E>(
        &self,
        key: &Key,
        options: SetOptions,
        loader: F,
        recheck: bool,
        start: LoadStart,
    ) -> tokio::task::JoinHandle<Result<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let cache = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let inner = &cache.inner;
            inner
                .flights
                .run(
                    key.as_str(),
                    &start,
                    |flight| inner.load_still_fresh(key.as_str(), flight, &options),
                    || inner.stats.record_coalesced_waiter(),
                    || cache.lead_load(&key, &options, loader, recheck, start.clone()),
                )
                .await
        })
    }

    /// Stores an owned value created at `created_at_ms` (a moment ago, see
    /// `load_and_store`): encoded for the byte tiers, decoded as it is for the tiers that keep
    /// decoded values (so the first hit there needs no decode either).
    async fn store_owned<T>(
        &self,
        key: &Key,
        value: &T,
        options: &SetOptions,
        created_at_ms: u64,
    ) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let now = self.inner.entry_time();
        let env = entry::build_envelope(
            self.inner.codec,
            self.inner.max_value_bytes,
            value,
            options,
            created_at_ms.min(now),
        )?;
        let raw = env.encode()?;
        let decoded = aurelis_cache_core::ValueEntry::new(
            value.clone(),
            aurelis_cache_core::EntryMeta::of(&env),
            u32::try_from(raw.len()).unwrap_or(u32::MAX),
        );
        let lifetime = entry::store_lifetime(&env, now);
        let written = self.inner.write_all(&[(key.as_str(), raw)], lifetime, Some(&decoded)).await;
        self.inner.stats.record_write();
        self.inner.publish(Invalidation::Key(key.as_str().to_owned()), now);
        written
    }

    async fn store_value<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        options: &SetOptions,
    ) -> Result<()> {
        let now = self.inner.entry_time();
        let env = entry::build_envelope(
            self.inner.codec,
            self.inner.max_value_bytes,
            value,
            options,
            now,
        )?;
        let raw = env.encode()?;
        self.write_encoded(&[(key.as_str(), raw)], &env, now).await
    }

    async fn write_encoded(
        &self,
        entries: &[(&str, Bytes)],
        env: &Envelope,
        now: u64,
    ) -> Result<()> {
        let lifetime = entry::store_lifetime(env, now);
        // Exclusively: another write or a delete of these keys, a load's store or a
        // write-back waits (or is skipped) until this returned (see `invalidation`).
        let changing = self.inner.epochs.changing(entries.iter().map(|(k, _)| *k)).await;
        let written = self.inner.write_all(entries, lifetime, None).await;
        drop(changing);
        for (key, _) in entries {
            self.inner.stats.record_write();
            self.inner.publish(Invalidation::Key((*key).to_owned()), now);
        }
        written
    }

    // ----- writes ------------------------------------------------------------------------

    /// Caches `value` under `key` in every tier, each with its TTL cap (no entry TTL of its
    /// own); [`Cache::set_with`] takes options.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("user_data", "u1"), &("John", 42)).await?;
    /// assert_eq!(cache.get::<(String, u32)>(("user_data", "u1")).await?, Some(("John".into(), 42)));
    /// // A second set replaces the value.
    /// cache.set(("user_data", "u1"), &("John", 43)).await?;
    /// assert_eq!(cache.get::<(String, u32)>(("user_data", "u1")).await?, Some(("John".into(), 43)));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with`].
    pub async fn set<T: Serialize + ?Sized>(&self, key: impl ToKey, value: &T) -> Result<()> {
        self.set_with(key, value, &SetOptions::DEFAULT).await
    }

    /// Caches `value` with per-entry options (TTL, tags, stale window).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use std::time::Duration;
    /// let opts = aurelis_cache::SetOptions::new().ttl(Duration::from_millis(50)).tag("user:1");
    /// cache.set_with(("profile", "1"), &"p", &opts).await?;
    /// assert!(cache.get::<String>(("profile", "1")).await?.is_some());
    /// tokio::time::sleep(Duration::from_millis(80)).await;
    /// assert_eq!(cache.get::<String>(("profile", "1")).await?, None, "expired");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key, [`ErrorKind::Codec`] when `value` cannot be
    /// serialized or a tag is invalid, [`ErrorKind::ValueTooLarge`] when the encoded value is
    /// over the cache's maximum, and the last tier error when no tier could store it (or any
    /// tier error in strict mode).
    pub async fn set_with<T: Serialize + ?Sized>(
        &self,
        key: impl ToKey,
        value: &T,
        options: &SetOptions,
    ) -> Result<()> {
        let key = key.to_key(&self.inner.keys)?;
        self.ready().await?;
        self.store_value(&key, value, options).await
    }

    /// Caches several values with the same options. Each tier gets one `set_many` call.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use aurelis_cache::SetOptions;
    /// cache.set_many(&[(("n", "a"), 1u8), (("n", "b"), 2)], &SetOptions::new()).await?;
    /// assert_eq!(cache.get_many::<u8>([("n", "a"), ("n", "b")]).await?, [Some(1), Some(2)]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with`]; a bad key or value fails the call before anything is written.
    pub async fn set_many<K: ToKey, T: Serialize>(
        &self,
        entries: &[(K, T)],
        options: &SetOptions,
    ) -> Result<()> {
        self.ready().await?;
        let now = self.inner.entry_time();
        let mut encoded = Vec::with_capacity(entries.len());
        let mut envelope = None;
        for (key, value) in entries {
            let key = key.to_key(&self.inner.keys)?;
            let env = entry::build_envelope(
                self.inner.codec,
                self.inner.max_value_bytes,
                value,
                options,
                now,
            )?;
            encoded.push((key, env.encode()?));
            envelope.get_or_insert(env);
        }
        let Some(env) = envelope else { return Ok(()) };
        let pairs: Vec<(&str, Bytes)> =
            encoded.iter().map(|(k, raw)| (k.as_str(), raw.clone())).collect();
        self.write_encoded(&pairs, &env, now).await
    }

    // ----- invalidation ------------------------------------------------------------------

    /// Removes `key` from every tier (and, through the backplane, from other instances'
    /// in-process tiers). Returns whether any tier held it.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("doc", "d"), &1u8).await?;
    /// assert!(cache.delete(("doc", "d")).await?);
    /// assert_eq!(cache.get::<u8>(("doc", "d")).await?, None);
    /// assert!(!cache.delete(("doc", "d")).await?, "nothing left to delete");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key; tier errors only in strict mode.
    pub async fn delete(&self, key: impl ToKey) -> Result<bool> {
        let key = key.to_key(&self.inner.keys)?;
        self.ready().await?;
        // Exclusively: a write of the key in progress finishes first, then all its copies go.
        // Shared (as writes hold it), the delete could clear memory between the write's tiers
        // and the write then fill it: memory kept a value no lower tier had.
        let exclusive = self.inner.epochs.storing(key.as_str()).await;
        let removed = self.inner.delete_everywhere(key.as_str(), Scope::All).await;
        drop(exclusive);
        self.inner.stats.record_delete();
        self.inner.publish(Invalidation::Key(key.as_str().to_owned()), now_ms());
        removed
    }

    /// Invalidates `key` everywhere: [`Cache::delete`] under the reference's name, for
    /// callers that do not need to know whether anything was cached. For whole groups of
    /// entries see [`Cache::invalidate_category`], [`Cache::invalidate_tag`],
    /// [`Cache::invalidate_model`], [`Cache::invalidate_pattern`] and [`Cache::clear`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("user_data", "u1"), &1u8).await?;
    /// cache.invalidate(("user_data", "u1")).await?;
    /// assert_eq!(cache.get::<u8>(("user_data", "u1")).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::delete`].
    pub async fn invalidate(&self, key: impl ToKey) -> Result<()> {
        self.delete(key).await.map(drop)
    }

    /// Invalidates every entry of `category` in every tier and, through the backplane, every
    /// process: O(1), a durable mark (entries created before it are stale and dropped when
    /// next read), not a scan of the stored keys.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("session", "a"), &1u8).await?;
    /// cache.set(("session", "b"), &2u8).await?;
    /// cache.invalidate_category("session").await?;
    /// assert_eq!(cache.get::<u8>(("session", "a")).await?, None);
    /// assert_eq!(cache.get::<u8>(("session", "b")).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad category; a disk tier that cannot keep the mark only
    /// in strict mode.
    pub async fn invalidate_category(&self, category: &str) -> Result<()> {
        let prefix = self.inner.keys.category_prefix(category)?;
        self.apply_invalidation(Invalidation::Prefix(prefix)).await
    }

    /// Invalidates every key matching the glob `pattern` (a durable mark, like
    /// [`Cache::invalidate_category`]; each read checks the key against the live pattern marks), matched against the part of the key
    /// after `namespace:version:` (for example `user_data:*` or `model_info:gpt-4o*`).
    /// Identifiers are stored with `:` escaped as `%3A`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("model_info", "gpt-4o"), &1u8).await?;
    /// cache.set(("model_info", "claude"), &2u8).await?;
    /// cache.invalidate_pattern("model_info:gpt-*").await?;
    /// assert_eq!(cache.get::<u8>(("model_info", "gpt-4o")).await?, None);
    /// assert_eq!(cache.get::<u8>(("model_info", "claude")).await?, Some(2));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty pattern; tier errors only in strict mode.
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<()> {
        if pattern.is_empty() {
            return Err(Error::invalid_key("invalidation pattern is empty"));
        }
        let full = format!("{}{pattern}", self.inner.keys.prefix());
        self.apply_invalidation(Invalidation::Pattern(full)).await
    }

    /// Invalidates every entry of `model`'s answers (a durable mark) (keys from
    /// [`KeyBuilder::build_model_key`](aurelis_cache_core::KeyBuilder::build_model_key)).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let key = cache.keys().build_model_key("gpt-4o", "Hi", &aurelis_cache::Params::new())?;
    /// cache.set(&key, &"Hello").await?;
    /// cache.invalidate_model("gpt-4o").await?;
    /// assert_eq!(cache.get::<String>(&key).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad model name; tier errors only in strict mode.
    pub async fn invalidate_model(&self, model: &str) -> Result<()> {
        let prefix = self.inner.keys.model_prefix(model)?;
        self.apply_invalidation(Invalidation::Prefix(prefix)).await
    }

    /// Makes every entry tagged `tag` (written up to now) a miss, in every tier and, through
    /// the backplane, in every instance. A durable mark: kept on the disk tier and in the
    /// shared tier, so a process started later honours it too.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let tagged = aurelis_cache::SetOptions::new().tag("user:1");
    /// cache.set_with(("profile", "1"), &1u8, &tagged).await?;
    /// cache.invalidate_tag("user:1").await?;
    /// assert_eq!(cache.get::<u8>(("profile", "1")).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty tag.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        if tag.is_empty() {
            return Err(Error::invalid_key("tag is empty"));
        }
        self.apply_invalidation(Invalidation::Tag(tag.to_owned())).await
    }

    /// Invalidates every entry of this cache's namespace and version in every tier and process
    /// (a durable mark; other namespaces and versions sharing the stores are untouched).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("a", "1"), &1u8).await?;
    /// cache.clear().await?;
    /// assert_eq!(cache.get::<u8>(("a", "1")).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Tier errors only in strict mode.
    pub async fn clear(&self) -> Result<()> {
        self.apply_invalidation(Invalidation::Clear).await
    }

    async fn apply_invalidation(&self, invalidation: Invalidation) -> Result<()> {
        self.ready().await?;
        self.inner.invalidate_everywhere(invalidation).await
    }

    // ----- lifecycle ---------------------------------------------------------------------

    /// Starts the cache's background work now instead of at its first operation: loads the
    /// durable invalidation marks, starts the repair tasks of the tiers and subscribes the
    /// backplane (if any; an unreachable backplane connects later in the background).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.connect_backplane().await?;
    /// cache.set(("a", "1"), &1u8).await?;
    /// assert_eq!(cache.get::<u8>(("a", "1")).await?, Some(1));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// None today; reserved for start-up failures that cannot be retried.
    pub async fn connect_backplane(&self) -> Result<()> {
        self.ready().await
    }

    /// A durable point: waits (up to `limit`) until every invalidation made so far was handed
    /// to the backplane, and flushes every tier (the disk tier's writes reach the disk).
    /// Returns the number of invalidations still unsent when `limit` ran out (0 when all went).
    ///
    /// What survives what: after `flush` returns, a crash loses nothing written before it;
    /// without it, the disk tier loses at most its flush interval (`flush_every_ms`, 500 ms by
    /// default) of writes on a crash. Dropping the last handle of a cache flushes the disk
    /// tier too; a `static` (the process-wide cache) is never dropped, so call
    /// [`crate::shutdown`] (or this) before the process exits.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("a", "1"), &1u8).await?;
    /// assert_eq!(cache.flush(std::time::Duration::from_secs(5)).await?, 0);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The first tier error when a tier could not be flushed.
    pub async fn flush(&self, limit: Duration) -> Result<usize> {
        let unsent = self.inner.sync.drain(limit).await;
        let mut first_err = None;
        for tier in &self.inner.tiers {
            if let Err(e) = tier.store().flush().await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(unsent),
        }
    }

    /// Flushes (see [`Cache::flush`]) and stops the cache's background tasks. The handle
    /// stays usable, but nothing is repaired or received in the background any more.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .tier(aurelis_cache::Tier::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set(("a", "1"), &1u8).await?;
    /// assert_eq!(cache.close(std::time::Duration::from_secs(5)).await?, 0);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::flush`].
    pub async fn close(&self, limit: Duration) -> Result<usize> {
        let result = self.flush(limit).await;
        for task in self.inner.sync.tasks.lock().drain(..) {
            task.abort();
        }
        result
    }

    /// A builder with the default key scheme (`aurelis:v1`) and no tiers.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.tier_names(), ["memory"]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }
}

#[cfg(test)]
mod future_size {
    use super::*;

    /// Every move of a read's future copies all of it, hits included, so what only a lower
    /// tier's hit needs (the write-back with its envelope, bytes and decoded entry) is boxed
    /// where it is awaited. With it in line the `get` future was 1,256 bytes; moka's own
    /// `get` future is 768.
    #[test]
    fn a_read_future_holds_no_write_back() {
        let memory = Arc::new(aurelis_cache_moka::MokaStore::builder().build().unwrap());
        let cache = Cache::builder().tier(crate::Tier::new("memory", memory)).build().unwrap();
        let walk = cache.inner.read_from::<String>("k", Resume::start());
        assert!(std::mem::size_of_val(&walk) <= 512, "walk: {}", std::mem::size_of_val(&walk));
        drop(walk);
        let get = cache.get::<String>(("category", "id"));
        assert!(std::mem::size_of_val(&get) <= 768, "get: {}", std::mem::size_of_val(&get));
        drop(get);
        let shared = cache.get_shared::<String>(("category", "id"));
        assert!(
            std::mem::size_of_val(&shared) <= 768,
            "get_shared: {}",
            std::mem::size_of_val(&shared)
        );
    }
}
