//! Layers: a store with its place in the lookup order, its TTL cap, its time limit and its
//! circuit breaker.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::{Error, ErrorKind, Result, Store, TierStats};
use serde::{Deserialize, Serialize};

/// When to stop calling a failing tier, and how to find out it is back.
///
/// After `failure_threshold` consecutive failures (errors or timeouts) the tier is skipped
/// (reads go to the other tiers and the loader, writes to the other tiers). A background task
/// probes it every `probe_interval_ms`; the first probe that succeeds puts it back in use.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let breaker = aurelis_cache::BreakerConfig::new(3, Duration::from_millis(200));
/// assert_eq!(breaker.failure_threshold, 3);
/// assert_eq!(aurelis_cache::BreakerConfig::default().probe_interval_ms, 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (0 = never open).
    pub failure_threshold: u32,
    /// How often an open breaker probes the tier.
    pub probe_interval_ms: u64,
}

impl BreakerConfig {
    /// Opens after `failure_threshold` consecutive failures (0 = never) and probes every
    /// `probe_interval` while open.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = aurelis_cache::BreakerConfig::new(0, std::time::Duration::from_secs(1));
    /// assert_eq!(b.failure_threshold, 0);
    /// ```
    pub fn new(failure_threshold: u32, probe_interval: Duration) -> Self {
        BreakerConfig { failure_threshold, probe_interval_ms: probe_interval.as_millis() as u64 }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, probe_interval_ms: 500 }
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

/// A layer in use: its settings, stats and breaker state.
pub(crate) struct LayerState {
    pub(crate) layer: Layer,
    pub(crate) stats: TierStats,
    pub(crate) in_process: bool,
    pub(crate) shared: bool,
    failures: AtomicU32,
    open: AtomicBool,
    probing: AtomicBool,
    opened_at_ms: AtomicU64,
}

impl fmt::Debug for LayerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerState")
            .field("layer", &self.layer)
            .field("open", &self.open.load(SeqCst))
            .finish()
    }
}

impl LayerState {
    pub(crate) fn new(layer: Layer) -> Self {
        let capabilities = layer.store.capabilities();
        LayerState {
            in_process: capabilities.in_process,
            shared: capabilities.shared,
            stats: TierStats::new(layer.name.clone()),
            layer,
            failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            opened_at_ms: AtomicU64::new(0),
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

    /// Whether the breaker is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(SeqCst)
    }

    /// The TTL to give this tier for an entry with `remaining` lifetime (`None` = forever).
    pub(crate) fn cap_ttl(&self, remaining: Option<Duration>) -> Option<Duration> {
        match (remaining, self.layer.ttl) {
            (Some(r), Some(cap)) => Some(r.min(cap)),
            (r, cap) => r.or(cap),
        }
    }

    /// Runs one store operation under the layer's time limit, recording failures in the
    /// breaker and the stats.
    pub(crate) async fn call<T, F>(self: &Arc<Self>, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let result = match self.layer.timeout {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => {
                    self.stats.record_timeout();
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!("no answer within {} ms", limit.as_millis()),
                    )
                    .with_tier(self.layer.name.as_str()))
                }
            },
            None => fut.await,
        };
        match &result {
            Ok(_) => {
                if self.failures.load(SeqCst) != 0 {
                    self.failures.store(0, SeqCst);
                }
            }
            Err(err) => self.record_failure(err),
        }
        result
    }

    fn record_failure(self: &Arc<Self>, err: &Error) {
        self.stats.record_error();
        let failures = self.failures.fetch_add(1, SeqCst) + 1;
        tracing::warn!(tier = %self.layer.name, error = %err, failures, "cache tier operation failed");
        let threshold = self.layer.breaker.failure_threshold;
        if threshold > 0 && failures >= threshold && !self.open.swap(true, SeqCst) {
            self.opened_at_ms.store(now_ms(), SeqCst);
            tracing::error!(
                tier = %self.layer.name,
                failures,
                "circuit breaker open: tier skipped until a background probe succeeds"
            );
            self.start_probe();
        }
    }

    fn start_probe(self: &Arc<Self>) {
        if self.probing.swap(true, SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to probe from: close again and let the next call find out.
            self.close();
            return;
        };
        let weak = Arc::downgrade(self);
        let interval = Duration::from_millis(self.layer.breaker.probe_interval_ms.max(1));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(state) = weak.upgrade() else { return };
                let probe = state.store().get("aurelis:__probe__");
                let limit = state.layer.timeout.unwrap_or(Duration::from_secs(1));
                if let Ok(Ok(_)) = tokio::time::timeout(limit, probe).await {
                    tracing::info!(tier = %state.layer.name, "tier answers again: circuit breaker closed");
                    state.close();
                    return;
                }
            }
        });
    }

    fn close(&self) {
        self.failures.store(0, SeqCst);
        self.open.store(false, SeqCst);
        self.probing.store(false, SeqCst);
    }
}
