//! Tiers: a store with its place in the lookup order, its TTL cap, its time limit, its
//! circuit breaker (the last two as store layers, see [`crate::layer`]) and the keys it
//! missed while it could not be written.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::layer::Layer as _;
use aurelis_cache_core::{Store, TierStats};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::layer::{Breaker, CircuitBreaker, Counted, TimeoutLayer};

/// When to stop calling a failing tier, and how to find out it is back.
///
/// Only transport failures count (a backend that cannot be reached or does not answer in
/// time); a refused operation (a value too large, a key of the wrong type) does not. The
/// breaker opens after `failure_threshold` consecutive failures, or when, within one second,
/// at least `failure_threshold` calls failed and they were at least `failure_rate_percent` of
/// the calls (so one dead shard of a cluster, failing a third of the calls, opens it; the calls
/// are those the tier's stats count: hits, misses, writes, deletes, write-backs, errors). While
/// open, the tier is skipped: reads go to the other tiers and the loader, and the keys written
/// or invalidated meanwhile are remembered. A background task probes the tier every
/// `probe_interval_ms`; once it answers, the task first removes every remembered key from it
/// (so it cannot serve what was replaced meanwhile), then puts it back in use.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let breaker = aurelis_cache::BreakerConfig::new(3, Duration::from_millis(200));
/// assert_eq!(breaker.failure_threshold, 3);
/// assert_eq!(aurelis_cache::BreakerConfig::default().probe_interval_ms, 500);
/// assert_eq!(aurelis_cache::BreakerConfig::default().failure_rate_percent, 25);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker, and the fewest failures in one second
    /// that can open it by rate (0 = never open).
    pub failure_threshold: u32,
    /// The share of failed calls within one second that opens the breaker (1-100).
    pub failure_rate_percent: u8,
    /// How often an open breaker probes the tier.
    pub probe_interval_ms: u64,
}

impl BreakerConfig {
    /// Opens after `failure_threshold` consecutive failures (0 = never) and probes every
    /// `probe_interval` while open; the failure rate stays at its default (25 %).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = aurelis_cache::BreakerConfig::new(0, std::time::Duration::from_secs(1));
    /// assert_eq!(b.failure_threshold, 0);
    /// ```
    pub fn new(failure_threshold: u32, probe_interval: Duration) -> Self {
        BreakerConfig {
            failure_threshold,
            probe_interval_ms: crate::entry::millis(probe_interval),
            ..BreakerConfig::default()
        }
    }

    /// The failure rate (in percent of the calls in one second) that opens the breaker.
    pub fn failure_rate_percent(mut self, percent: u8) -> Self {
        self.failure_rate_percent = percent.clamp(1, 100);
        self
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, failure_rate_percent: 25, probe_interval_ms: 500 }
    }
}

/// One tier of a [`Cache`](crate::Cache): a store, a name, a TTL cap, a priority and a time limit.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use aurelis_cache::{Tier, MokaStore};
///
/// let memory = Tier::new("memory", Arc::new(MokaStore::builder().build()?))
///     .ttl(Duration::from_secs(300))
///     .priority(3)
///     .timeout(Duration::from_millis(50));
/// assert_eq!(memory.name(), "memory");
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Clone)]
pub struct Tier {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) priority: Option<i32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) breaker: BreakerConfig,
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("name", &self.name)
            .field("store", &self.store.name())
            .field("ttl", &self.ttl)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Tier {
    /// A tier called `name` over `store`, with no TTL cap, no time limit and the default
    /// breaker. Without priorities, tiers are looked up in the order they were added. The
    /// store is wrapped in the tier's layers (time limit, error counting, circuit breaker;
    /// see [`crate::layer`]) when the cache is built.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use std::{sync::Arc, time::Duration};
    /// use aurelis_cache::{Cache, MokaStore, SledStore, Tier};
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::builder()
    ///     .tier(Tier::new("disk", Arc::new(SledStore::builder().path(dir.path()).build()?)).priority(1))
    ///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)).priority(2).ttl(Duration::from_secs(300)))
    ///     .build()?;
    /// // Looked up by priority, highest first.
    /// assert_eq!(cache.tier_names(), ["memory", "disk"]);
    /// assert_eq!(cache.tier_ttl("memory"), Some(Duration::from_secs(300)));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn new(name: impl Into<String>, store: Arc<dyn Store>) -> Self {
        Tier {
            name: name.into(),
            store,
            ttl: None,
            priority: None,
            timeout: None,
            breaker: BreakerConfig::default(),
        }
    }

    /// The longest an entry lives in this tier, whatever its own TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Lookup order: higher priority is checked first (ties keep insertion order).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Time limit of every operation on this tier (a [`TimeoutLayer`]
    /// around its store); a late answer counts as a failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The circuit breaker's settings.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tier's store, as given (without the layers the cache adds).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Keys a tier missed (a write or delete that failed or was skipped) before it is trusted
/// with them again; past this many, the tier is flushed of what it cannot prove fresh.
pub(crate) const MAX_PENDING: usize = 100_000;

/// A tier in use: its settings, stats, breaker and the keys it missed.
pub(crate) struct TierState {
    pub(crate) config: Tier,
    pub(crate) stats: Arc<TierStats>,
    pub(crate) in_process: bool,
    /// Whether the store keeps decoded values ([`Store::as_value_store`], a property of the
    /// store, asked once): the hot path then skips the virtual call where there are none.
    pub(crate) keeps_values: bool,
    pub(crate) shared: bool,
    pub(crate) persistent: bool,
    pub(crate) conditional_write: bool,
    pub(crate) scan: bool,
    breaker: Arc<Breaker>,
    /// The tier's store with its layers: `CircuitBreaker(Timeout(store))` (the breaker layer
    /// also counts errors).
    guarded: Arc<dyn Store>,
    /// The same without the breaker, for the repair task's probes.
    unguarded: Arc<dyn Store>,
    pending: Mutex<HashSet<String>>,
    pending_len: AtomicUsize,
    overflow: AtomicBool,
    /// Cleared the first time the store answers that it has no synchronous read (a store's
    /// answer never changes), so a network tier's reads do not ask again.
    pub(crate) sync_read: AtomicBool,
    /// Wakes the repair task.
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for TierState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierState")
            .field("tier", &self.config)
            .field("breaker", &self.breaker)
            .field("pending", &self.pending_len.load(SeqCst))
            .finish()
    }
}

impl TierState {
    pub(crate) fn new(tier: Tier) -> Self {
        let capabilities = tier.store.capabilities();
        let stats = Arc::new(TierStats::new(tier.name.clone()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let breaker = Arc::new(Breaker::new(
            tier.name.clone(),
            tier.breaker.clone(),
            stats.clone(),
            wake.clone(),
        ));
        let timed: Arc<dyn Store> = match tier.timeout {
            Some(limit) => Arc::new(TimeoutLayer::new(limit).layer(tier.store.clone())),
            None => tier.store.clone(),
        };
        let unguarded: Arc<dyn Store> = Arc::new(Counted::new(timed.clone(), stats.clone()));
        let guarded: Arc<dyn Store> =
            Arc::new(CircuitBreaker::new(timed, breaker.clone(), stats.clone()));
        TierState {
            in_process: capabilities.in_process,
            keeps_values: tier.store.as_value_store().is_some(),
            shared: capabilities.shared,
            persistent: capabilities.persistent,
            conditional_write: capabilities.conditional_write,
            scan: capabilities.scan,
            stats,
            config: tier,
            breaker,
            guarded,
            unguarded,
            pending: Mutex::new(HashSet::new()),
            pending_len: AtomicUsize::new(0),
            overflow: AtomicBool::new(false),
            sync_read: AtomicBool::new(true),
            wake,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// The tier's store behind its layers (time limit, error counting, breaker).
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.guarded
    }

    /// The tier's store under its breaker: for the repair task, which probes the tier while
    /// the breaker is open.
    pub(crate) fn store_unguarded(&self) -> &dyn Store {
        &*self.unguarded
    }

    /// The store as the user gave it, for synchronous in-process lookups.
    pub(crate) fn store_raw(&self) -> &dyn Store {
        &*self.config.store
    }

    /// Whether the tier may be called now; counts a skip when it may not.
    pub(crate) fn available(&self) -> bool {
        self.breaker.admit()
    }

    /// Whether the tier may answer a read of `key`: its breaker is closed and it did not miss
    /// a write or invalidation of `key` (or more than it could remember).
    pub(crate) fn readable(&self, key: &str) -> bool {
        if !self.available() {
            return false;
        }
        if self.pending_len.load(SeqCst) == 0 {
            return true;
        }
        if self.overflow.load(SeqCst) {
            return false;
        }
        !self.pending.lock().contains(key)
    }

    /// Whether the tier holds the latest state of `key` as far as this process knows (breaker
    /// closed, key not missed); unlike [`TierState::readable`] it counts nothing.
    pub(crate) fn readable_quietly(&self, key: &str) -> bool {
        if self.breaker.is_open() || self.overflow.load(SeqCst) {
            return false;
        }
        self.pending_len.load(SeqCst) == 0 || !self.pending.lock().contains(key)
    }

    /// Whether the breaker is open.
    pub(crate) fn is_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether the repair task has work: an open breaker or keys missed.
    pub(crate) fn needs_repair(&self) -> bool {
        self.is_open() || self.pending_len.load(SeqCst) > 0
    }

    /// Whether the tier missed keys it was not yet repaired of.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending_len.load(SeqCst) > 0
    }

    /// Remembers that the tier missed a write or invalidation of `key`.
    pub(crate) fn missed(&self, key: &str) {
        {
            let mut pending = self.pending.lock();
            if pending.len() >= MAX_PENDING {
                if !self.overflow.swap(true, SeqCst) {
                    tracing::error!(tier = %self.config.name, "too many missed keys: the tier will be flushed of what it cannot prove fresh before it serves again");
                }
            } else {
                pending.insert(key.to_owned());
            }
            self.pending_len
                .store(pending.len().max(usize::from(self.overflow.load(SeqCst))), SeqCst);
        }
        self.wake.notify_one();
    }

    /// Remembers that the tier missed an invalidation it cannot replay key by key.
    pub(crate) fn missed_everything(&self) {
        self.overflow.store(true, SeqCst);
        self.pending_len.fetch_add(1, SeqCst);
        self.wake.notify_one();
    }

    /// The tier took the latest write of `key`: it no longer needs repairing for it.
    pub(crate) fn caught_up(&self, key: &str) {
        if self.pending_len.load(SeqCst) == 0 {
            return;
        }
        let mut pending = self.pending.lock();
        pending.remove(key);
        self.pending_len.store(pending.len() + usize::from(self.overflow.load(SeqCst)), SeqCst);
    }

    /// Up to `n` of the keys missed.
    pub(crate) fn pending_keys(&self, n: usize) -> Vec<String> {
        self.pending.lock().iter().take(n).cloned().collect()
    }

    /// Whether more was missed than could be remembered.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow.load(SeqCst)
    }

    /// The overflow was dealt with (the tier was flushed of what it cannot prove fresh).
    pub(crate) fn clear_overflow(&self) {
        let mut pending = self.pending.lock();
        pending.clear();
        self.overflow.store(false, SeqCst);
        self.pending_len.store(0, SeqCst);
    }

    /// The TTL to give this tier for an entry with `remaining` lifetime (`None` = forever).
    pub(crate) fn cap_ttl(&self, remaining: Option<Duration>) -> Option<Duration> {
        crate::entry::cap_ttl(remaining, self.config.ttl)
    }

    /// Puts the tier back in use (the repair task, once the tier caught up).
    pub(crate) fn close(&self) {
        self.breaker.close();
    }
}
