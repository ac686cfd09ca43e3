//! [`CacheBuilder`]: builds a [`Cache`] from tiers and settings.

use std::sync::Arc;

use aurelis_cache_core::{Backplane, CacheStats, Codec, Error, KeyBuilder, Result};

use crate::cache::{Cache, Inner};
use crate::coalesce::Flights;
use crate::invalidation::{Epochs, Marks};
use crate::options::DEFAULT_MAX_VALUE_BYTES;
use crate::single_flight::SingleFlight;
use crate::sync::SyncState;
use crate::tier::{Tier, TierState};

/// A random 128-bit instance id (from the OS-seeded hasher keys), so instances in containers
/// that all run as PID 1 never collide.
fn random_instance_id() -> String {
    use std::hash::BuildHasher;
    let a = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    let b = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{a:016x}{b:016x}")
}

/// Builds a [`Cache`] from tiers.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use aurelis_cache::{Cache, Tier, MokaStore};
///
/// let cache = Cache::builder()
///     .namespace("myapp")
///     .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)).ttl(Duration::from_secs(300)))
///     .build()?;
/// assert_eq!(cache.tier_names(), ["memory"]);
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Debug)]
pub struct CacheBuilder {
    namespace: String,
    version: String,
    codec: Codec,
    max_value_bytes: usize,
    strict: bool,
    tiers: Vec<Tier>,
    backplane: Option<Arc<dyn Backplane>>,
    single_flight: Option<SingleFlight>,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            namespace: "aurelis".into(),
            version: "v1".into(),
            codec: Codec::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            strict: false,
            tiers: Vec::new(),
            backplane: None,
            single_flight: None,
        }
    }
}

impl CacheBuilder {
    /// The key namespace (default `aurelis`).
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().namespace("myapp").tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.keys().namespace(), "myapp");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The key version (default `v1`); bump it to abandon every entry of an old format.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().version("v2").tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.keys().prefix(), "aurelis:v2:");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The codec of new entries (default MessagePack, which reads back everything serde can
    /// write; postcard is smaller but cannot decode `serde_json::Value` and friends). Entries are always read with the codec
    /// they were written with.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().codec(aurelis_cache::Codec::Json).tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.codec(), aurelis_cache::Codec::Json);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The largest encoded value accepted (default [`DEFAULT_MAX_VALUE_BYTES`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().max_value_bytes(1 << 20).tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.max_value_bytes(), 1 << 20);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// In strict mode a tier error is returned to the caller instead of being skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().strict(true).tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert!(cache.is_strict());
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Adds a tier (tiers are read in order of priority, then in the order added).
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build()?;
    /// assert_eq!(cache.tier_names(), ["memory"]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tiers.push(tier);
        self
    }

    /// Keeps in-process tiers coherent with other instances through `backplane` (with Redis:
    /// `RedisBackplane` (feature `redis`); see docs/invalidation.md
    /// and the `coherence_redis` tests, which run two caches against a real server).
    pub fn backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// Cross-process single-flight: concurrent misses of one key in different processes call
    /// the loader once (see [`SingleFlight`]). Used only when the cache has a shared tier
    /// (one that other processes read, such as Redis), where the waiters find the value.
    pub fn single_flight(mut self, flight: SingleFlight) -> Self {
        self.single_flight = Some(flight);
        self
    }

    /// Builds the cache. Tiers are ordered by priority (highest first), ties in the order
    /// they were added. Background work (durable marks, repair of tiers, the backplane
    /// subscription) starts with the first operation, or with [`Cache::connect_backplane`]
    /// (or [`CacheBuilder::build_connected`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = aurelis_cache::Cache::builder().build().unwrap_err();
    /// assert_eq!(err.kind(), aurelis_cache::ErrorKind::Config);
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when there is no tier, two tiers share a name, the namespace or
    /// version is not a valid key part, or `max_value_bytes` is zero.
    pub fn build(self) -> Result<Cache> {
        let keys = KeyBuilder::new(self.namespace, self.version)
            .map_err(|e| Error::config(format!("cache key scheme: {}", e.message())))?;
        if self.tiers.is_empty() {
            return Err(Error::config("a cache needs at least one tier"));
        }
        if self.max_value_bytes == 0 {
            return Err(Error::config("max_value_bytes must be greater than zero"));
        }
        let mut tiers = self.tiers;
        for (i, a) in tiers.iter().enumerate() {
            if a.name.is_empty() {
                return Err(Error::config("a tier name is empty"));
            }
            if tiers[..i].iter().any(|b| b.name == a.name) {
                return Err(Error::config(format!("two tiers are named `{}`", a.name)));
            }
        }
        // Stable sort: equal priorities keep insertion order.
        tiers.sort_by_key(|t| std::cmp::Reverse(t.priority.unwrap_or(0)));
        let tiers: Vec<Arc<TierState>> =
            tiers.into_iter().map(|t| Arc::new(TierState::new(t))).collect();
        let stats = CacheStats::new();
        // The first tier's hits that answer a read count once, for it and for the cache.
        stats.count_hits_answered_by(tiers[0].stats.clone());
        Ok(Cache::from_inner(Inner {
            tiers,
            keys,
            codec: self.codec,
            max_value_bytes: self.max_value_bytes,
            strict: self.strict,
            stats,
            flights: Flights::default(),
            epochs: Arc::new(Epochs::new()),
            marks: Marks::new(),
            sync: SyncState::new(self.backplane),
            instance_id: random_instance_id(),
            ready: tokio::sync::OnceCell::new(),
            single_flight: self.single_flight,
        }))
    }

    /// Builds the cache and starts it: durable marks loaded, background tasks running, the
    /// backplane (if any) subscribed. An unreachable backplane does not fail this: the cache
    /// serves from its other tiers and the backplane connects in the background.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().tier(aurelis_cache::Tier::new("memory", memory)).build_connected().await?;
    /// cache.set(("k", "1"), &1u8).await?;
    /// assert_eq!(cache.get::<u8>(("k", "1")).await?, Some(1));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`CacheBuilder::build`].
    pub async fn build_connected(self) -> Result<Cache> {
        let cache = self.build()?;
        cache.connect_backplane().await?;
        Ok(cache)
    }
}
