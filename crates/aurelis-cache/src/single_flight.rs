//! Cross-process single-flight: of the processes missing the same key at the same time, one
//! calls the loader and the others wait for its value in the shared tier.
//!
//! Within a process, concurrent misses already share one load ([`Cache::get_or_compute`]).
//! With a [`SingleFlight`] set on the builder (automatic with a Redis tier built from
//! [`CacheConfig`](crate::CacheConfig)), the leading caller of each process first takes a
//! lease on the key ([`FlightLease`]; Redis `SET NX PX`):
//!
//! - the process that gets the lease calls the loader, renews the lease every third of its
//!   time to live while the loader runs, stores the value in every tier (the shared one
//!   included), and only then releases the lease;
//! - a process that finds the lease taken polls the shared tier for a fresh value (5 ms,
//!   doubling up to 100 ms) and returns it when it appears (counted as
//!   `remote_loads_awaited`), without calling its loader;
//! - when the lease disappears without a value (its holder's loader failed, the holder was
//!   cancelled or died and the lease expired), a waiter takes the lease and loads;
//! - after [`SingleFlight::max_wait`], or when the lease store cannot be reached, a waiter
//!   stops waiting and loads on its own (a duplicate call is preferred to no answer).
//!
//! [`Cache::get_or_compute`]: crate::Cache::get_or_compute

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache_core::lease::FlightLease;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::Inner;
use crate::tiers::Lookup;

/// How long a lease lives unless renewed (its holder renews it while it loads).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// How long a process waits for another's load before it loads on its own.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(120);

/// The first pause between two looks at the shared tier; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);

/// Cross-process single-flight settings: where leases live and how long to wait (see the
/// [module documentation](self)).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use aurelis_cache::core::lease::LocalLeases;
/// use aurelis_cache::{Cache, MokaStore, SingleFlight, Tier};
///
/// // With Redis, the `RedisStore` of the shared tier is the lease store; `LocalLeases`
/// // keeps this example self-contained (it gives nothing across processes).
/// let flight = SingleFlight::new(Arc::new(LocalLeases::default()))
///     .lease_ttl(Duration::from_secs(10))
///     .max_wait(Duration::from_secs(60));
/// assert_eq!(flight.lease_ttl_value(), Duration::from_secs(10));
/// let cache = Cache::builder()
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)))
///     .single_flight(flight)
///     .build()?;
/// let v: u8 = cache.get_or_compute(("k", "1"), || async { Ok::<_, std::io::Error>(1) }).await?;
/// assert_eq!(v, 1);
/// # Ok::<(), aurelis_cache::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SingleFlight {
    pub(crate) lease: Arc<dyn FlightLease>,
    pub(crate) lease_ttl: Duration,
    pub(crate) max_wait: Duration,
}

impl SingleFlight {
    /// Leases in `lease` (for a fleet: the Redis store of the shared tier), with
    /// [`DEFAULT_LEASE_TTL`] and [`DEFAULT_MAX_WAIT`].
    pub fn new(lease: Arc<dyn FlightLease>) -> Self {
        SingleFlight { lease, lease_ttl: DEFAULT_LEASE_TTL, max_wait: DEFAULT_MAX_WAIT }
    }

    /// How long a lease lives unless its holder renews it: how long waiters wait for a
    /// holder that died. At least 10 ms.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(10));
        self
    }

    /// How long a process waits for another's load before it loads on its own.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The lease time to live.
    pub fn lease_ttl_value(&self) -> Duration {
        self.lease_ttl
    }

    /// The longest wait for another process's load.
    pub fn max_wait_value(&self) -> Duration {
        self.max_wait
    }
}

/// What taking the lease gave.
pub(crate) enum Leased<T> {
    /// Another process loaded the value meanwhile.
    Value(Arc<T>),
    /// This process holds the lease (release it with this token after storing).
    Held(String),
    /// No lease (the lease store cannot be reached, or the wait timed out): load anyway.
    Unleased,
}

impl Inner {
    /// Takes the lease of `key`, or waits for the value another process is loading under it
    /// (see the [module documentation](self)).
    pub(crate) async fn take_lease<T>(&self, flight: &SingleFlight, key: &str) -> Leased<T>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        let deadline = Instant::now() + flight.max_wait;
        let mut pause = FIRST_POLL;
        loop {
            match flight.lease.try_acquire(key, flight.lease_ttl).await {
                Ok(Some(token)) => {
                    // The previous holder may have stored the value just before it released
                    // the lease: look once more before loading.
                    if let Some(v) = self.fresh_in_shared::<T>(key).await {
                        let _ = flight.lease.release(key, &token).await;
                        self.stats.record_remote_load_awaited();
                        return Leased::Value(v);
                    }
                    return Leased::Held(token);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(key, error = %e, "single-flight lease unavailable: loading without it");
                    return Leased::Unleased;
                }
            }
            // Someone else loads it: wait for the value, or for the lease to go.
            loop {
                let now = Instant::now();
                if now >= deadline {
                    tracing::warn!(
                        key,
                        waited_ms = flight.max_wait.as_millis() as u64,
                        "another process's load took too long: loading without the lease"
                    );
                    return Leased::Unleased;
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(MAX_POLL);
                if let Some(v) = self.fresh_in_shared::<T>(key).await {
                    self.stats.record_remote_load_awaited();
                    return Leased::Value(v);
                }
                match flight.lease.is_held(key).await {
                    Ok(true) => {}
                    // Gone without a value: try to take over.
                    Ok(false) => break,
                    Err(_) => return Leased::Unleased,
                }
            }
        }
    }

    /// A fresh value of `key` if a shared tier holds one: then read through every tier (so it
    /// is copied into the tiers above), else `None`; counts nothing while there is none.
    async fn fresh_in_shared<T>(&self, key: &str) -> Option<Arc<T>>
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
    {
        let mut found = false;
        for tier in self.tiers.iter().filter(|t| t.shared) {
            if !tier.readable_quietly(key) {
                continue;
            }
            if let Ok(Some(_)) = tier.store().get(key).await {
                found = true;
                break;
            }
        }
        if !found {
            return None;
        }
        match self.read::<T>(key).await {
            Ok(Lookup::Fresh(v, _)) => Some(v),
            _ => None,
        }
    }
}

/// Gives a lease back when dropped without [`LeaseGuard::release`] (the holder's load was
/// cancelled): in the background, so waiters need not wait for the lease to expire.
pub(crate) struct LeaseGuard {
    lease: Arc<dyn FlightLease>,
    key: String,
    token: Option<String>,
}

impl LeaseGuard {
    pub(crate) fn new(lease: Arc<dyn FlightLease>, key: &str, token: String) -> Self {
        LeaseGuard { lease, key: key.to_owned(), token: Some(token) }
    }

    pub(crate) fn token(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// Releases the lease now.
    pub(crate) async fn release(mut self) {
        if let Some(token) = self.token.take() {
            if let Err(e) = self.lease.release(&self.key, &token).await {
                tracing::debug!(key = %self.key, error = %e, "lease not released: it expires on its own");
            }
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let lease = self.lease.clone();
        let key = std::mem::take(&mut self.key);
        handle.spawn(async move {
            let _ = lease.release(&key, &token).await;
        });
    }
}
