//! The store layers every tier runs through: a time limit, per-tier error counting and a
//! circuit breaker, each a [`LayeredStore`] wrapper (see
//! [`aurelis_cache_core::layer`]) instead of code in the tier walk.
//!
//! A [`Tier`](crate::Tier)'s store is wrapped, from the outside in, as
//! `CircuitBreaker(Timeout(store))`: a call to an open breaker is refused before it reaches
//! anything (counted as skipped); a late answer is a timeout error; every error is counted
//! (by the breaker layer, so a call pays for one wrapper's boxed future, not two); transport
//! errors (backend, timeout, unavailable) feed the breaker. The repair task talks to the store
//! as `Counted(Timeout(store))`, without the breaker, to probe it while the breaker is open.
//!
//! [`TimeoutLayer`] is public: it works on any [`Store`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::layer::{BoxFuture, Layer, LayeredStore, Operation};
use aurelis_cache_core::stats::TierStats;
use aurelis_cache_core::{Bytes, Error, ErrorKind, Result, Store};

use crate::tier::BreakerConfig;

/// Gives every operation of a store a time limit: a call that does not answer within it
/// fails with [`ErrorKind::Timeout`] (and is dropped, which cancels it).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aurelis_cache::core::layer::Layer;
/// use aurelis_cache::core::testkit::{FaultyStore, MemoryMapStore};
/// use aurelis_cache::core::{ErrorKind, Store};
/// use aurelis_cache::layer::TimeoutLayer;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let slow = FaultyStore::new(std::sync::Arc::new(MemoryMapStore::new("slow")));
/// slow.control().delay(Duration::from_millis(200));
/// let store = TimeoutLayer::new(Duration::from_millis(20)).layer(slow);
/// let err = store.get("k").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// assert_eq!(err.tier(), Some("slow"));
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// A layer giving every operation `limit`.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<S: Store> Layer<S> for TimeoutLayer {
    type Store = TimeoutStore<S>;

    fn layer(&self, inner: S) -> TimeoutStore<S> {
        TimeoutStore { inner, limit: self.limit }
    }
}

/// A store whose operations have a time limit; built by [`TimeoutLayer`].
#[derive(Debug)]
pub struct TimeoutStore<S> {
    inner: S,
    limit: Duration,
}

impl<S: Store> LayeredStore for TimeoutStore<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    /// Passed on without a limit: a synchronous read cannot be interrupted (nor can the
    /// poll of an asynchronous one that does not yield), and only stores whose reads never
    /// wait on a network offer one.
    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        self.inner.get_sync(key)
    }

    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        self.inner.get_sync_with(key, read)
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            match tokio::time::timeout(self.limit, call).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer to `{}` within {} ms", op.as_str(), self.limit.as_millis()),
                )
                .with_tier(self.inner.name())),
            }
        })
    }
}

/// Counts every failed operation of a tier (errors, and time-outs among them) in its stats,
/// and logs it: transport failures as warnings, refusals (a value too large, a wrong type) at
/// debug level.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    stats: Arc<TierStats>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, stats: Arc<TierStats>) -> Self {
        Counted { inner, stats }
    }
}

impl<S: Store> LayeredStore for Counted<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let result = self.inner.get_sync(key)?;
        if let Err(err) = &result {
            self.count(Operation::Get, err);
        }
        Some(result)
    }

    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        let result = self.inner.get_sync_with(key, read)?;
        if let Err(err) = &result {
            self.count(Operation::Get, err);
        }
        Some(result)
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let result = call.await;
            if let Err(err) = &result {
                self.count(op, err);
            }
            result
        })
    }
}

impl<S: Store> Counted<S> {
    fn count(&self, op: Operation, err: &Error) {
        count_error(&self.stats, self.inner.name(), op, err);
    }
}

/// Counts a failed operation of tier `name` in its stats and logs it.
fn count_error(stats: &TierStats, name: &str, op: Operation, err: &Error) {
    stats.record_error();
    if err.kind() == ErrorKind::Timeout {
        stats.record_timeout();
    }
    if err.is_transport() {
        tracing::warn!(tier = %name, op = op.as_str(), error = %err, "cache tier operation failed");
    } else {
        tracing::debug!(tier = %name, op = op.as_str(), error = %err, "cache tier refused an operation");
    }
}

/// The length of the failure-rate window.
const WINDOW_MS: u64 = 1_000;

/// A tier's circuit breaker: opens after `failure_threshold` consecutive transport failures,
/// or when they reach `failure_rate_percent` of the calls within one second; closed again
/// only by the tier's repair task, once the tier answers and caught up with what it missed.
pub(crate) struct Breaker {
    name: String,
    config: BreakerConfig,
    stats: Arc<TierStats>,
    consecutive: AtomicU32,
    window_start_ms: AtomicU64,
    /// The tier's [`TierStats::calls`] when the window started: the calls in the window are
    /// taken from the tier's counters, so a successful call costs the breaker no write.
    window_base_calls: AtomicU64,
    window_failures: AtomicU32,
    open: AtomicBool,
    /// Wakes the tier's repair task when the breaker opens.
    wake: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("tier", &self.name)
            .field("open", &self.open.load(SeqCst))
            .finish_non_exhaustive()
    }
}

impl Breaker {
    pub(crate) fn new(
        name: String,
        config: BreakerConfig,
        stats: Arc<TierStats>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Breaker {
            name,
            config,
            stats,
            consecutive: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            window_base_calls: AtomicU64::new(0),
            window_failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
            wake,
        }
    }

    /// Whether the breaker is open (the tier is skipped).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(SeqCst)
    }

    /// Whether the tier may be called now; counts a skip when it may not.
    pub(crate) fn admit(&self) -> bool {
        if self.is_open() {
            self.stats.record_skipped();
            return false;
        }
        true
    }

    /// Records the outcome of one call.
    pub(crate) fn record(&self, failed: bool) {
        let threshold = self.config.failure_threshold;
        if !failed {
            // No clock reading and no count on the success path: the call is in the tier's
            // counters, which the window's count of calls is taken from; the next failure
            // restarts the window if it is over (the rate is only judged on failures).
            if self.consecutive.load(SeqCst) != 0 {
                self.consecutive.store(0, SeqCst);
            }
            return;
        }
        let consecutive = self.consecutive.fetch_add(1, SeqCst) + 1;
        if threshold == 0 {
            return;
        }
        let (calls, failures) = self.count_failure_in_window();
        let rate = u64::from(self.config.failure_rate_percent.clamp(1, 100));
        let by_rate =
            failures >= threshold && u64::from(failures) * 100 >= calls.saturating_mul(rate);
        if (consecutive >= threshold || by_rate) && !self.open.swap(true, SeqCst) {
            tracing::error!(
                tier = %self.name,
                consecutive,
                failures_in_window = failures,
                calls_in_window = calls,
                "circuit breaker open: tier skipped until a background probe succeeds"
            );
            self.wake.notify_one();
        }
    }

    /// Counts a failed call (already counted as an error in the tier's stats) in the current
    /// one-second window (restarted first when it is over); returns (calls, failures) so far.
    fn count_failure_in_window(&self) -> (u64, u32) {
        let now = now_ms();
        let start = self.window_start_ms.load(SeqCst);
        if now.saturating_sub(start) >= WINDOW_MS
            && self.window_start_ms.compare_exchange(start, now, SeqCst, SeqCst).is_ok()
        {
            // This failure is the window's first call.
            self.window_base_calls.store(self.stats.calls().wrapping_sub(1), SeqCst);
            self.window_failures.store(0, SeqCst);
        }
        let failures = self.window_failures.fetch_add(1, SeqCst) + 1;
        let calls = self.stats.calls().wrapping_sub(self.window_base_calls.load(SeqCst));
        // Failures are calls: never fewer calls than failures (a count read mid-update).
        (calls.max(u64::from(failures)), failures)
    }

    /// Puts the tier back in use.
    pub(crate) fn close(&self) {
        self.consecutive.store(0, SeqCst);
        self.window_base_calls.store(self.stats.calls(), SeqCst);
        self.window_failures.store(0, SeqCst);
        if self.open.swap(false, SeqCst) {
            tracing::info!(tier = %self.name, "tier answers again and caught up: circuit breaker closed");
        }
    }
}

/// A store behind a [`Breaker`]: refused (as [`ErrorKind::Unavailable`], counted as
/// skipped) while the breaker is open; every answer's outcome is recorded in the breaker
/// (only transport errors count as failures), and every error counted in the tier's stats
/// as [`Counted`] counts it (the refusals of an open breaker are skips, not errors).
#[derive(Debug)]
pub(crate) struct CircuitBreaker<S> {
    inner: S,
    breaker: Arc<Breaker>,
    stats: Arc<TierStats>,
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, breaker: Arc<Breaker>, stats: Arc<TierStats>) -> Self {
        CircuitBreaker { inner, breaker, stats }
    }
}

impl<S: Store> LayeredStore for CircuitBreaker<S> {
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    fn get_sync(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        if !self.breaker.admit() {
            return Some(Err(self.refusal(Operation::Get)));
        }
        let result = self.inner.get_sync(key)?;
        self.record(Operation::Get, &result);
        Some(result)
    }

    fn get_sync_with(&self, key: &str, read: &mut dyn FnMut(&[u8])) -> Option<Result<bool>> {
        if !self.breaker.admit() {
            return Some(Err(self.refusal(Operation::Get)));
        }
        let result = self.inner.get_sync_with(key, read)?;
        self.record(Operation::Get, &result);
        Some(result)
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            if !self.breaker.admit() {
                return Err(self.refusal(op));
            }
            let result = call.await;
            self.record(op, &result);
            result
        })
    }
}

impl<S: Store> CircuitBreaker<S> {
    fn refusal(&self, op: Operation) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!("circuit breaker open: `{}` not sent", op.as_str()),
        )
        .with_tier(self.inner.name())
    }

    fn record<T>(&self, op: Operation, result: &Result<T>) {
        match result {
            Ok(_) => self.breaker.record(false),
            Err(e) => {
                count_error(&self.stats, self.inner.name(), op, e);
                if e.is_transport() {
                    self.breaker.record(true);
                }
            }
        }
    }
}
