//! Cross-process single-flight: a lease per key, so that of the processes missing the same
//! key at the same time, one loads it and the others wait for its value.
//!
//! Within one process the cache already runs one load per key (coalescing); a
//! [`FlightLease`] extends that to every process sharing a store that can hold leases (Redis:
//! `SET NX PX`). The cache takes the lease before it calls a loader; a process that finds the
//! lease taken waits for the value to appear in the shared tier, up to a deadline, and takes
//! over when the lease is gone without a value (its holder failed, was cancelled or died: a
//! lease expires after its time to live, which the holder renews while it loads).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// Leases for cross-process single-flight (see the [module documentation](self)).
///
/// A lease is named by the cache key it guards and held under a random token, so only its
/// holder can renew or release it.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use aurelis_cache_core::lease::{FlightLease, LocalLeases};
///
/// let leases = LocalLeases::default();
/// let token = leases.try_acquire("k", Duration::from_secs(5)).await?.expect("free");
/// // Taken: a second caller does not get it.
/// assert!(leases.try_acquire("k", Duration::from_secs(5)).await?.is_none());
/// assert!(leases.is_held("k").await?);
/// // Only the holder's token releases it.
/// leases.release("k", "not the token").await?;
/// assert!(leases.is_held("k").await?);
/// leases.release("k", &token).await?;
/// assert!(!leases.is_held("k").await?);
/// # Ok::<(), aurelis_cache_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait FlightLease: Debug + Send + Sync + 'static {
    /// Takes the lease of `key` for `ttl` if nobody holds it; the token to renew and release
    /// it with, or `None` when it is taken.
    ///
    /// # Errors
    ///
    /// When the lease store cannot be reached (the cache then loads without a lease).
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<String>>;

    /// Extends the lease of `key` to `ttl` from now if `token` still holds it; `false` when
    /// it does not (it expired and may be someone else's).
    ///
    /// # Errors
    ///
    /// When the lease store cannot be reached.
    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool>;

    /// Whether anyone holds the lease of `key`.
    ///
    /// # Errors
    ///
    /// When the lease store cannot be reached.
    async fn is_held(&self, key: &str) -> Result<bool>;

    /// Gives the lease of `key` back if `token` holds it (a lease held by someone else is
    /// left alone).
    ///
    /// # Errors
    ///
    /// When the lease store cannot be reached (the lease then expires on its own).
    async fn release(&self, key: &str, token: &str) -> Result<()>;
}

/// A random token for a lease: 128 bits from the operating system's generator, as hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // A failing generator leaves a token that is unique enough within the process (the time
    // and a counter); leases then still work, only tokens across processes could collide.
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes[..8].copy_from_slice(&now.to_le_bytes());
        bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Leases inside one process (a map with expiry times): for tests and for code written
/// against [`FlightLease`] that runs without Redis. It gives nothing across processes.
#[derive(Debug, Default)]
pub struct LocalLeases {
    map: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
}

impl LocalLeases {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (String, std::time::Instant)>>
    {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl FlightLease for LocalLeases {
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        let now = std::time::Instant::now();
        let mut map = self.lock();
        if map.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let token = new_token();
        map.insert(key.to_owned(), (token.clone(), now + ttl));
        Ok(Some(token))
    }

    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let now = std::time::Instant::now();
        let mut map = self.lock();
        match map.get_mut(key) {
            Some((held, until)) if held == token && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn is_held(&self, key: &str) -> Result<bool> {
        let now = std::time::Instant::now();
        Ok(self.lock().get(key).is_some_and(|(_, until)| *until > now))
    }

    async fn release(&self, key: &str, token: &str) -> Result<()> {
        let mut map = self.lock();
        if map.get(key).is_some_and(|(held, _)| held == token) {
            map.remove(key);
        }
        Ok(())
    }
}
