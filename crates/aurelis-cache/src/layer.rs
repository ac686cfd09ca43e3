//! Layers: a store with its place in the lookup order, its TTL cap, its time limit, its
//! circuit breaker and the keys it missed while it could not be written.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::{Error, ErrorKind, Result, Store, TierStats};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// When to stop calling a failing tier, and how to find out it is back.
///
/// Only transport failures count (a backend that cannot be reached or does not answer in
/// time); a refused operation (a value too large, a key of the wrong type) does not. The
/// breaker opens after `failure_threshold` consecutive failures, or when, within one second,
/// at least `failure_threshold` calls failed and they were at least `failure_rate_percent` of
/// the calls (so one dead shard of a cluster, failing a third of the calls, opens it). While
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
/// use aurelis_cache::{Layer, MokaStore};
///
/// let memory = Layer::new("memory", Arc::new(MokaStore::builder().build()?))
///     .ttl(Duration::from_secs(300))
///     .priority(3)
///     .timeout(Duration::from_millis(50));
/// assert_eq!(memory.name(), "memory");
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Clone)]
pub struct Layer {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) priority: Option<i32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) breaker: BreakerConfig,
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("name", &self.name)
            .field("store", &self.store.name())
            .field("ttl", &self.ttl)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Layer {
    /// A layer called `name` over `store`, with no TTL cap, no time limit and the default
    /// breaker. Without priorities, layers are looked up in the order they were added.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let layer = aurelis_cache::Layer::new("memory", memory);
    /// assert_eq!(layer.name(), "memory");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn new(name: impl Into<String>, store: Arc<dyn Store>) -> Self {
        Layer {
            name: name.into(),
            store,
            ttl: None,
            priority: None,
            timeout: None,
            breaker: BreakerConfig::default(),
        }
    }

    /// The longest an entry lives in this tier, whatever its own TTL.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let layer = aurelis_cache::Layer::new("memory", memory).ttl(std::time::Duration::from_secs(300));
    /// # let _ = layer;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Lookup order: higher priority is checked first (ties keep insertion order).
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let layer = aurelis_cache::Layer::new("memory", memory).priority(3);
    /// # let _ = layer;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Time limit of every operation on this tier; a late answer counts as a failure.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let layer = aurelis_cache::Layer::new("memory", memory).timeout(std::time::Duration::from_millis(20));
    /// # let _ = layer;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The circuit breaker's settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let breaker = aurelis_cache::BreakerConfig::new(3, std::time::Duration::from_millis(250));
    /// let layer = aurelis_cache::Layer::new("memory", memory).breaker(breaker);
    /// # let _ = layer;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The layer's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// assert_eq!(aurelis_cache::Layer::new("l1", memory).name(), "l1");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layer's store.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let layer = aurelis_cache::Layer::new("memory", memory);
    /// assert_eq!(layer.store().name(), "memory");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Keys a tier missed (a write or delete that failed or was skipped) before it is trusted
/// with them again; past this many, the tier is flushed of what it cannot prove fresh.
pub(crate) const MAX_PENDING: usize = 100_000;

/// The length of the failure-rate window.
const WINDOW_MS: u64 = 1_000;

/// A layer in use: its settings, stats, breaker state and the keys it missed.
pub(crate) struct LayerState {
    pub(crate) layer: Layer,
    pub(crate) stats: TierStats,
    pub(crate) in_process: bool,
    pub(crate) shared: bool,
    pub(crate) persistent: bool,
    pub(crate) conditional_write: bool,
    pub(crate) scan: bool,
    consecutive: AtomicU32,
    window_start_ms: AtomicU64,
    window_calls: AtomicU32,
    window_failures: AtomicU32,
    open: AtomicBool,
    pending: Mutex<HashSet<String>>,
    pending_len: AtomicUsize,
    overflow: AtomicBool,
    /// Wakes the repair task.
    pub(crate) wake: tokio::sync::Notify,
}

impl fmt::Debug for LayerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerState")
            .field("layer", &self.layer)
            .field("open", &self.open.load(SeqCst))
            .field("pending", &self.pending_len.load(SeqCst))
            .finish()
    }
}

impl LayerState {
    pub(crate) fn new(layer: Layer) -> Self {
        let capabilities = layer.store.capabilities();
        LayerState {
            in_process: capabilities.in_process,
            shared: capabilities.shared,
            persistent: capabilities.persistent,
            conditional_write: capabilities.conditional_write,
            scan: capabilities.scan,
            stats: TierStats::new(layer.name.clone()),
            layer,
            consecutive: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            window_calls: AtomicU32::new(0),
            window_failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            pending: Mutex::new(HashSet::new()),
            pending_len: AtomicUsize::new(0),
            overflow: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.layer.name
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.layer.store
    }

    /// Whether the tier may be called now; counts a skip when it may not.
    pub(crate) fn available(&self) -> bool {
        if self.open.load(SeqCst) {
            self.stats.record_skipped();
            return false;
        }
        true
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
    /// closed, key not missed); unlike [`LayerState::readable`] it counts nothing.
    pub(crate) fn readable_quietly(&self, key: &str) -> bool {
        if self.open.load(SeqCst) || self.overflow.load(SeqCst) {
            return false;
        }
        self.pending_len.load(SeqCst) == 0 || !self.pending.lock().contains(key)
    }

    /// Whether the breaker is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(SeqCst)
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
                    tracing::error!(tier = %self.layer.name, "too many missed keys: the tier will be flushed of what it cannot prove fresh before it serves again");
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
        crate::entry::cap_ttl(remaining, self.layer.ttl)
    }

    /// Runs one store operation under the layer's time limit, recording transport failures in
    /// the breaker and every failure in the stats.
    pub(crate) async fn call<T, F>(&self, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let result = match self.layer.timeout {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {} ms", limit.as_millis()),
                )
                .with_tier(self.layer.name.as_str())),
            },
            None => fut.await,
        };
        match &result {
            Ok(_) => self.record_outcome(false),
            Err(err) => {
                self.stats.record_error();
                if err.kind() == ErrorKind::Timeout {
                    self.stats.record_timeout();
                }
                if err.is_transport() {
                    tracing::warn!(tier = %self.layer.name, error = %err, "cache tier operation failed");
                    self.record_outcome(true);
                } else {
                    tracing::debug!(tier = %self.layer.name, error = %err, "cache tier refused an operation");
                }
            }
        }
        result
    }

    fn record_outcome(&self, failed: bool) {
        let threshold = self.layer.breaker.failure_threshold;
        if !failed {
            if self.consecutive.load(SeqCst) != 0 {
                self.consecutive.store(0, SeqCst);
            }
            if threshold > 0 {
                self.count_in_window(false);
            }
            return;
        }
        let consecutive = self.consecutive.fetch_add(1, SeqCst) + 1;
        if threshold == 0 {
            return;
        }
        let (calls, failures) = self.count_in_window(true);
        let rate = u64::from(self.layer.breaker.failure_rate_percent.clamp(1, 100));
        let by_rate = failures >= threshold && u64::from(failures) * 100 >= u64::from(calls) * rate;
        if (consecutive >= threshold || by_rate) && !self.open.swap(true, SeqCst) {
            tracing::error!(
                tier = %self.layer.name,
                consecutive,
                failures_in_window = failures,
                calls_in_window = calls,
                "circuit breaker open: tier skipped until a background probe succeeds"
            );
            self.wake.notify_one();
        }
    }

    /// Counts a call in the current one-second window; returns (calls, failures) so far.
    fn count_in_window(&self, failed: bool) -> (u32, u32) {
        let now = now_ms();
        let start = self.window_start_ms.load(SeqCst);
        if now.saturating_sub(start) >= WINDOW_MS
            && self.window_start_ms.compare_exchange(start, now, SeqCst, SeqCst).is_ok()
        {
            self.window_calls.store(0, SeqCst);
            self.window_failures.store(0, SeqCst);
        }
        let calls = self.window_calls.fetch_add(1, SeqCst) + 1;
        let failures = if failed {
            self.window_failures.fetch_add(1, SeqCst) + 1
        } else {
            self.window_failures.load(SeqCst)
        };
        (calls, failures)
    }

    /// Puts the tier back in use.
    pub(crate) fn close(&self) {
        self.consecutive.store(0, SeqCst);
        self.window_calls.store(0, SeqCst);
        self.window_failures.store(0, SeqCst);
        if self.open.swap(false, SeqCst) {
            tracing::info!(tier = %self.layer.name, "tier answers again and caught up: circuit breaker closed");
        }
    }
}
