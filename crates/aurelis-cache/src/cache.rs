//! The tiered cache.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache_core::envelope::now_ms;
use aurelis_cache_core::{
    Backplane, BackplaneEvent, Bytes, CacheStats, Codec, Envelope, Error, ErrorKind, Invalidation,
    InvalidationMessage, Key, KeyBuilder, Op, Params, Result, StatsReport,
};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::layer::{Layer, LayerState};

/// The largest encoded value accepted by default (16 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Per-entry settings for a write.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let opts = aurelis_cache::SetOptions::new()
///     .ttl(Duration::from_secs(60))
///     .tag("user:42")
///     .stale_for(Duration::from_secs(600));
/// assert_eq!(opts.tags(), ["user:42"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    ttl: Option<Duration>,
    tags: Vec<String>,
    stale_for: Option<Duration>,
}

impl SetOptions {
    /// No TTL of its own (each tier's cap applies), no tags, no stale window.
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = aurelis_cache::SetOptions::new();
    /// assert!(opts.tags().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry's own time to live (each tier still caps it with its own).
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = aurelis_cache::SetOptions::new().ttl(std::time::Duration::from_secs(60));
    /// # let _ = opts;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag, for [`Cache::invalidate_tag`].
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = aurelis_cache::SetOptions::new().tag("user:1").tag("team:7");
    /// assert_eq!(opts.tags(), ["user:1", "team:7"]);
    /// ```
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// How long after expiry the entry may still be served by [`Cache::get_or_compute`]
    /// when the loader fails (fail-safe). Needs a TTL.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = aurelis_cache::SetOptions::new().ttl(Duration::from_secs(60)).stale_for(Duration::from_secs(600));
    /// # let _ = opts;
    /// ```
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = Some(stale_for);
        self
    }

    /// The tags.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aurelis_cache::SetOptions::new().tag("a").tags(), ["a"]);
    /// ```
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
}

/// Builds a [`Cache`] from layers.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use aurelis_cache::{Cache, Layer, MokaStore};
///
/// let cache = Cache::builder()
///     .namespace("myapp")
///     .layer(Layer::new("memory", Arc::new(MokaStore::builder().build()?)).ttl(Duration::from_secs(300)))
///     .build()?;
/// assert_eq!(cache.layer_names(), ["memory"]);
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Debug)]
pub struct CacheBuilder {
    namespace: String,
    version: String,
    codec: Codec,
    max_value_bytes: usize,
    strict: bool,
    layers: Vec<Layer>,
    backplane: Option<Arc<dyn Backplane>>,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            namespace: "aurelis".into(),
            version: "v1".into(),
            codec: Codec::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            strict: false,
            layers: Vec::new(),
            backplane: None,
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
    /// let cache = aurelis_cache::Cache::builder().namespace("myapp").layer(aurelis_cache::Layer::new("memory", memory)).build()?;
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
    /// let cache = aurelis_cache::Cache::builder().version("v2").layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// assert_eq!(cache.keys().prefix(), "aurelis:v2:");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The codec of new entries (default postcard). Entries are always read with the codec
    /// they were written with.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().codec(aurelis_cache::Codec::Json).layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// # let _ = cache;
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
    /// let cache = aurelis_cache::Cache::builder().max_value_bytes(1 << 20).layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// # let _ = cache;
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
    /// let cache = aurelis_cache::Cache::builder().strict(true).layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// # let _ = cache;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Adds a layer.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// assert_eq!(cache.layer_names(), ["memory"]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Keeps in-process tiers coherent with other instances through `backplane`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "redis")] {
    /// let config = aurelis_cache::RedisConfig::default();
    /// let backplane = std::sync::Arc::new(aurelis_cache::RedisBackplane::new(&config, "aurelis")?);
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let builder = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).backplane(backplane);
    /// # let _ = builder;
    /// # }
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// Builds the cache. Layers are ordered by priority (highest first), ties in the order
    /// they were added. A backplane, if any, is subscribed by [`Cache::connect_backplane`]
    /// (or by [`CacheBuilder::build_connected`]).
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
    /// [`ErrorKind::Config`] when there is no layer, two layers share a name, the namespace or
    /// version is not a valid key part, or `max_value_bytes` is zero.
    pub fn build(self) -> Result<Cache> {
        let keys = KeyBuilder::new(self.namespace, self.version)
            .map_err(|e| Error::config(format!("cache key scheme: {}", e.message())))?;
        if self.layers.is_empty() {
            return Err(Error::config("a cache needs at least one layer"));
        }
        if self.max_value_bytes == 0 {
            return Err(Error::config("max_value_bytes must be greater than zero"));
        }
        let mut layers = self.layers;
        for (i, a) in layers.iter().enumerate() {
            if a.name.is_empty() {
                return Err(Error::config("a layer name is empty"));
            }
            if layers[..i].iter().any(|b| b.name == a.name) {
                return Err(Error::config(format!("two layers are named `{}`", a.name)));
            }
        }
        // Stable sort: equal priorities keep insertion order.
        layers.sort_by_key(|l| std::cmp::Reverse(l.priority.unwrap_or(0)));
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let instance_id = format!(
            "{}-{}-{}",
            std::process::id(),
            now_ms(),
            INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Ok(Cache {
            inner: Arc::new(Inner {
                layers: layers.into_iter().map(|l| Arc::new(LayerState::new(l))).collect(),
                keys,
                codec: self.codec,
                max_value_bytes: self.max_value_bytes,
                strict: self.strict,
                stats: CacheStats::new(),
                inflight: Mutex::new(HashMap::new()),
                tag_invalidations: RwLock::new(HashMap::new()),
                backplane: self.backplane,
                backplane_task: Mutex::new(None),
                instance_id,
            }),
        })
    }

    /// Builds the cache and subscribes its backplane, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build_connected().await?;
    /// # let _ = cache;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`CacheBuilder::build`], and [`ErrorKind::Backend`] when the first backplane
    /// subscription fails.
    pub async fn build_connected(self) -> Result<Cache> {
        let cache = self.build()?;
        cache.connect_backplane().await?;
        Ok(cache)
    }
}

type Inflight = Arc<OnceCell<Result<Bytes>>>;

struct Inner {
    layers: Vec<Arc<LayerState>>,
    keys: KeyBuilder,
    codec: Codec,
    max_value_bytes: usize,
    strict: bool,
    stats: CacheStats,
    inflight: Mutex<HashMap<String, Inflight>>,
    /// Tag -> when it was last invalidated (ms since the epoch). Entries carrying the tag and
    /// created at or before that time are stale.
    tag_invalidations: RwLock<HashMap<String, u64>>,
    backplane: Option<Arc<dyn Backplane>>,
    backplane_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    instance_id: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.backplane_task.get_mut().take() {
            task.abort();
        }
    }
}

/// A tiered cache: a lookup walks the layers in order and the first fresh hit wins; a hit in
/// a lower layer is copied up with its remaining lifetime; writes go to every layer, each with
/// `min(entry TTL, layer TTL)`. A failing layer is skipped, counted and logged; it never fails
/// a read another layer or the loader can answer (unless the cache is strict).
///
/// Cloning is cheap (an `Arc`); clones share everything.
///
/// # Examples
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use aurelis_cache::{Cache, Layer, MokaStore, Params};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// let cache = Cache::builder()
///     .layer(Layer::new("memory", Arc::new(MokaStore::builder().build()?)).ttl(Duration::from_secs(300)))
///     .build()?;
///
/// cache.set("user_data", "user123", None, &("John", "developer")).await?;
/// let user: Option<(String, String)> = cache.get("user_data", "user123", None).await?;
/// assert_eq!(user, Some(("John".into(), "developer".into())));
///
/// // `None` can be cached, and is not a miss:
/// cache.set("lookup", "nobody", None, &None::<u32>).await?;
/// assert_eq!(cache.get::<Option<u32>>("lookup", "nobody", None).await?, Some(None));
/// assert_eq!(cache.get::<Option<u32>>("lookup", "never-set", None).await?, None);
///
/// let page = Params::new().with("page", 1);
/// let answer: u64 = cache
///     .get_or_compute("search", "q", Some(&page), Default::default(), || async {
///         Ok::<_, std::io::Error>(42)
///     })
///     .await?;
/// assert_eq!(answer, 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.keys.namespace())
            .field("version", &self.inner.keys.version())
            .field("layers", &self.layer_names())
            .field("strict", &self.inner.strict)
            .finish()
    }
}

/// What one lookup found.
enum Found {
    Fresh(Envelope),
    /// Expired, but inside its stale window (fail-safe candidate).
    Stale(Envelope),
    Miss,
}

impl Cache {
    /// A builder with the default key scheme (`aurelis:v1`) and no layers.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// # let _ = cache;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The key builder of this cache.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// assert_eq!(cache.keys().build_key("c", "i", None)?.as_str(), "aurelis:v1:c:i");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn keys(&self) -> &KeyBuilder {
        &self.inner.keys
    }

    /// The layer names in lookup order.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// assert_eq!(cache.layer_names(), ["memory"]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn layer_names(&self) -> Vec<&str> {
        self.inner.layers.iter().map(|l| l.name()).collect()
    }

    /// The live counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
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
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// assert!(!cache.instance_id().is_empty());
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Whether the circuit breaker of layer `name` is open (the layer is being skipped).
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build()?;
    /// assert!(!cache.is_layer_down("memory"));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    pub fn is_layer_down(&self, name: &str) -> bool {
        self.inner.layers.iter().any(|l| l.name() == name && l.is_open())
    }

    // ----- reads -------------------------------------------------------------------------

    /// The value cached under `(category, identifier, params)`, or `None` on a miss.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("user_data", "u1", None, &42u32).await?;
    /// assert_eq!(cache.get::<u32>("user_data", "u1", None).await?, Some(42));
    /// assert_eq!(cache.get::<u32>("user_data", "u2", None).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad category or identifier. Tier failures are not
    /// errors (they are skipped and counted) unless the cache is strict. An entry that cannot
    /// be decoded into `T` is a miss, counted as corrupt and deleted.
    pub async fn get<T: DeserializeOwned>(
        &self,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
    ) -> Result<Option<T>> {
        let key = self.inner.keys.build_key(category, identifier, params)?;
        self.get_key(&key).await
    }

    /// Like [`Cache::get`], for a key built beforehand (see [`Cache::keys`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let key = cache.keys().build_key("user_data", "u1", None)?;
    /// cache.set_key(&key, &"John", &Default::default()).await?;
    /// assert_eq!(cache.get_key::<String>(&key).await?.as_deref(), Some("John"));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    pub async fn get_key<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>> {
        let started = Instant::now();
        let (found, finished) = self.lookup(key.as_str(), started).await?;
        let result = match found {
            Found::Fresh(env) => match self.decode::<T>(key.as_str(), &env).await {
                Some(v) => {
                    self.inner.stats.record_hit();
                    Some(v)
                }
                None => {
                    self.inner.stats.record_miss();
                    None
                }
            },
            Found::Stale(_) | Found::Miss => {
                self.inner.stats.record_miss();
                None
            }
        };
        // The last layer's clock reading ends the lookup: decoding is not timed, which saves
        // a clock reading on every get.
        self.inner.stats.record_get_latency(finished.duration_since(started));
        Ok(result)
    }

    /// The values of several identifiers of one category, in order (`None` for misses). Each
    /// tier is asked once for all the keys still missing.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("n", "one", None, &1u8).await?;
    /// assert_eq!(cache.get_many::<u8>("n", &["one", "two"], None).await?, [Some(1), None]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        category: &str,
        identifiers: &[&str],
        params: Option<&Params>,
    ) -> Result<Vec<Option<T>>> {
        let keys = identifiers
            .iter()
            .map(|id| self.inner.keys.build_key(category, id, params))
            .collect::<Result<Vec<_>>>()?;
        self.get_many_keys(&keys).await
    }

    /// Like [`Cache::get_many`], for keys built beforehand.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let keys = [cache.keys().build_key("n", "a", None)?, cache.keys().build_key("n", "b", None)?];
    /// cache.set("n", "b", None, &2u8).await?;
    /// assert_eq!(cache.get_many_keys::<u8>(&keys).await?, [None, Some(2)]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get`].
    pub async fn get_many_keys<T: DeserializeOwned>(&self, keys: &[Key]) -> Result<Vec<Option<T>>> {
        let mut found: Vec<Option<Envelope>> = vec![None; keys.len()];
        for (depth, layer) in self.inner.layers.iter().enumerate() {
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
            if missing.is_empty() {
                break;
            }
            if !layer.available() {
                continue;
            }
            let refs: Vec<&str> = missing.iter().map(|&i| keys[i].as_str()).collect();
            let started = Instant::now();
            let values = match layer.call(layer.store().get_many(&refs)).await {
                Ok(v) => v,
                Err(e) => {
                    self.on_tier_error(e)?;
                    continue;
                }
            };
            layer.stats.record_latency(Op::GetMany, started.elapsed());
            for (&i, value) in missing.iter().zip(values) {
                let key = keys[i].as_str();
                match value.map(|raw| (raw.clone(), self.check(layer, key, raw))) {
                    Some((raw, Checked::Fresh(env))) => {
                        layer.stats.record_hit();
                        self.write_back(depth, key, &raw, &env).await;
                        found[i] = Some(env);
                    }
                    Some((_, Checked::Stale(_))) | Some((_, Checked::Dropped)) | None => {
                        layer.stats.record_miss();
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (key, env) in keys.iter().zip(found) {
            let value = match env {
                Some(env) => self.decode::<T>(key.as_str(), &env).await,
                None => None,
            };
            if value.is_some() {
                self.inner.stats.record_hit();
            } else {
                self.inner.stats.record_miss();
            }
            out.push(value);
        }
        Ok(out)
    }

    /// The value under `(category, identifier, params)`, or the loader's result, cached.
    ///
    /// Concurrent callers missing the same key wait for one loader call (request coalescing):
    /// N concurrent misses run the loader once. A loader error is returned to every waiter
    /// and never cached. When the loader fails and an expired entry is still inside its
    /// stale window ([`SetOptions::stale_for`]), that entry is served instead (fail-safe).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let v: u32 = cache
    ///     .get_or_compute("reports", "daily", None, Default::default(), || async {
    ///         Ok::<_, std::io::Error>(7)
    ///     })
    ///     .await?;
    /// assert_eq!(v, 7);
    /// assert_eq!(cache.stats().snapshot().loader_calls, 1);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key, [`ErrorKind::Loader`] (with the loader's error
    /// as source) when the loader fails and nothing stale can be served,
    /// [`ErrorKind::Codec`] / [`ErrorKind::ValueTooLarge`] when the result cannot be cached.
    pub async fn get_or_compute<T, F, Fut, E>(
        &self,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
        options: SetOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let key = self.inner.keys.build_key(category, identifier, params)?;
        self.get_or_compute_key(&key, options, loader).await
    }

    /// Like [`Cache::get_or_compute`], for a key built beforehand.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let key = cache.keys().build_model_key("gpt-4o", "Hi!", &aurelis_cache::Params::new())?;
    /// let answer: String = cache
    ///     .get_or_compute_key(&key, Default::default(), || async {
    ///         Ok::<_, std::io::Error>("Hello!".to_string())
    ///     })
    ///     .await?;
    /// assert_eq!(answer, "Hello!");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::get_or_compute`].
    pub async fn get_or_compute_key<T, F, Fut, E>(
        &self,
        key: &Key,
        options: SetOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let mut stale = None;
        let (found, finished) = self.lookup(key.as_str(), started).await?;
        self.inner.stats.record_get_latency(finished.duration_since(started));
        match found {
            Found::Fresh(env) => {
                if let Some(v) = self.decode::<T>(key.as_str(), &env).await {
                    self.inner.stats.record_hit();
                    return Ok(v);
                }
            }
            Found::Stale(env) => stale = Some(env),
            Found::Miss => {}
        }
        self.inner.stats.record_miss();

        let (cell, leader_slot) = {
            let mut inflight = self.inner.inflight.lock();
            match inflight.get(key.as_str()) {
                Some(cell) => (cell.clone(), false),
                None => {
                    let cell: Inflight = Arc::new(OnceCell::new());
                    inflight.insert(key.as_str().to_owned(), cell.clone());
                    (cell, true)
                }
            }
        };
        if !leader_slot {
            self.inner.stats.record_coalesced_waiter();
        }
        let outcome = cell
            .get_or_init(|| async {
                self.inner.stats.record_loader_call();
                let value = match loader().await {
                    Ok(v) => v,
                    Err(e) => {
                        self.inner.stats.record_loader_error();
                        return Err(
                            Error::new(ErrorKind::Loader, "the loader failed").with_source(e)
                        );
                    }
                };
                let env = self.envelope(&value, &options)?;
                let raw = env.encode()?;
                self.write_all(key.as_str(), &raw, &env).await?;
                Ok(raw)
            })
            .await
            .clone();
        {
            let mut inflight = self.inner.inflight.lock();
            if inflight.get(key.as_str()).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(key.as_str());
            }
        }
        match outcome {
            Ok(raw) => {
                let env = Envelope::decode(raw)?;
                env.value::<T>()
            }
            Err(err) if err.kind() == ErrorKind::Loader => match stale {
                Some(env) => match env.value::<T>() {
                    Ok(v) => {
                        tracing::warn!(key = %key, error = %err, "loader failed: serving a stale entry");
                        self.inner.stats.record_stale_served();
                        Ok(v)
                    }
                    Err(_) => Err(err),
                },
                None => Err(err),
            },
            Err(err) => Err(err),
        }
    }

    // ----- writes ------------------------------------------------------------------------

    /// Caches `value` under `(category, identifier, params)` in every layer, each with its TTL
    /// cap (no entry TTL of its own).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("user_data", "u1", None, &("John", 42)).await?;
    /// assert!(cache.get::<(String, u32)>("user_data", "u1", None).await?.is_some());
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with`].
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
        value: &T,
    ) -> Result<()> {
        self.set_with(category, identifier, params, value, &SetOptions::default()).await
    }

    /// Caches `value` with per-entry options (TTL, tags, stale window).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// use std::time::Duration;
    /// let opts = aurelis_cache::SetOptions::new().ttl(Duration::from_secs(60)).tag("user:1");
    /// cache.set_with("profile", "1", None, &"p", &opts).await?;
    /// assert!(cache.get::<String>("profile", "1", None).await?.is_some());
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
        category: &str,
        identifier: &str,
        params: Option<&Params>,
        value: &T,
        options: &SetOptions,
    ) -> Result<()> {
        let key = self.inner.keys.build_key(category, identifier, params)?;
        self.set_key(&key, value, options).await
    }

    /// Like [`Cache::set_with`], for a key built beforehand.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let key = cache.keys().build_key("doc", "d", None)?;
    /// cache.set_key(&key, &1u8, &Default::default()).await?;
    /// assert_eq!(cache.get_key::<u8>(&key).await?, Some(1));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with`].
    pub async fn set_key<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        options: &SetOptions,
    ) -> Result<()> {
        let env = self.envelope(value, options)?;
        let raw = env.encode()?;
        self.write_all(key.as_str(), &raw, &env).await
    }

    /// Caches several values of one category with the same options. Each tier gets one
    /// `set_many` call.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set_many("n", &[("a", 1u8), ("b", 2)], None, &Default::default()).await?;
    /// assert_eq!(cache.get_many::<u8>("n", &["a", "b"], None).await?, [Some(1), Some(2)]);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::set_with`].
    pub async fn set_many<T: Serialize>(
        &self,
        category: &str,
        entries: &[(&str, T)],
        params: Option<&Params>,
        options: &SetOptions,
    ) -> Result<()> {
        let mut encoded = Vec::with_capacity(entries.len());
        let mut envelope = None;
        for (id, value) in entries {
            let key = self.inner.keys.build_key(category, id, params)?;
            let env = self.envelope(value, options)?;
            encoded.push((key, env.encode()?));
            envelope.get_or_insert(env);
        }
        let Some(env) = envelope else { return Ok(()) };
        let pairs: Vec<(&str, Bytes)> =
            encoded.iter().map(|(k, raw)| (k.as_str(), raw.clone())).collect();
        let lifetime = self.store_lifetime(&env, now_ms());
        self.write_layers(lifetime, Op::SetMany, |layer, ttl| layer.store().set_many(&pairs, ttl))
            .await?;
        for (key, _) in &encoded {
            self.inner.stats.record_write();
            self.publish(Invalidation::Key(key.as_str().to_owned()));
        }
        Ok(())
    }

    // ----- invalidation ------------------------------------------------------------------

    /// Removes `(category, identifier, params)` from every layer (and, through the backplane,
    /// from other instances' in-process layers). Returns whether any layer held it.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("doc", "d", None, &1u8).await?;
    /// assert!(cache.delete("doc", "d", None).await?);
    /// assert_eq!(cache.get::<u8>("doc", "d", None).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad key; tier errors only in strict mode.
    pub async fn delete(
        &self,
        category: &str,
        identifier: &str,
        params: Option<&Params>,
    ) -> Result<bool> {
        let key = self.inner.keys.build_key(category, identifier, params)?;
        self.delete_key(&key).await
    }

    /// Like [`Cache::delete`], for a key built beforehand.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let key = cache.keys().build_key("doc", "d", None)?;
    /// cache.set_key(&key, &1u8, &Default::default()).await?;
    /// assert!(cache.delete_key(&key).await?);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Tier errors only in strict mode.
    pub async fn delete_key(&self, key: &Key) -> Result<bool> {
        let mut any = false;
        for layer in &self.inner.layers {
            if !layer.available() {
                continue;
            }
            let started = Instant::now();
            match layer.call(layer.store().delete(key.as_str())).await {
                Ok(removed) => {
                    layer.stats.record_latency(Op::Delete, started.elapsed());
                    if removed {
                        layer.stats.record_delete();
                        any = true;
                    }
                }
                Err(e) => self.on_tier_error(e)?,
            }
        }
        self.inner.stats.record_delete();
        self.publish(Invalidation::Key(key.as_str().to_owned()));
        Ok(any)
    }

    /// Removes every entry of `category` from every layer. Returns how many entries the
    /// layers removed in all.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("session", "a", None, &1u8).await?;
    /// cache.set("session", "b", None, &2u8).await?;
    /// assert_eq!(cache.invalidate_category("session").await?, 2);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad category; tier errors only in strict mode.
    pub async fn invalidate_category(&self, category: &str) -> Result<u64> {
        let prefix = self.inner.keys.category_prefix(category)?;
        self.invalidate(Invalidation::Prefix(prefix)).await
    }

    /// Removes every key matching the glob `pattern`, matched against the part of the key
    /// after `namespace:version:` (for example `user_data:*` or `model_info:gpt-4o*`).
    /// Identifiers are stored with `:` escaped as `%3A`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("model_info", "gpt-4o", None, &1u8).await?;
    /// cache.set("model_info", "claude", None, &2u8).await?;
    /// assert_eq!(cache.invalidate_pattern("model_info:gpt-*").await?, 1);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty pattern; tier errors only in strict mode.
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64> {
        if pattern.is_empty() {
            return Err(Error::invalid_key("invalidation pattern is empty"));
        }
        let full = format!("{}{pattern}", self.inner.keys.prefix());
        self.invalidate(Invalidation::Pattern(full)).await
    }

    /// Removes every entry of `model`'s answers (keys from
    /// [`KeyBuilder::build_model_key`](aurelis_cache_core::KeyBuilder::build_model_key)).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let key = cache.keys().build_model_key("gpt-4o", "Hi", &aurelis_cache::Params::new())?;
    /// cache.set_key(&key, &"Hello", &Default::default()).await?;
    /// assert_eq!(cache.invalidate_model("gpt-4o").await?, 1);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad model name; tier errors only in strict mode.
    pub async fn invalidate_model(&self, model: &str) -> Result<u64> {
        let prefix = self.inner.keys.model_prefix(model)?;
        self.invalidate(Invalidation::Prefix(prefix)).await
    }

    /// Makes every entry tagged `tag` (written up to now) a miss, in every layer and, through
    /// the backplane, in every instance. Entries are dropped lazily when next read.
    ///
    /// Tag invalidations are held in this process's memory (and sent over the backplane):
    /// a process started later does not know about them, so persistent tiers may still serve
    /// entries tagged before a restart until they expire.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// let tagged = aurelis_cache::SetOptions::new().tag("user:1");
    /// cache.set_with("profile", "1", None, &1u8, &tagged).await?;
    /// cache.invalidate_tag("user:1").await?;
    /// assert_eq!(cache.get::<u8>("profile", "1", None).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for an empty tag.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        if tag.is_empty() {
            return Err(Error::invalid_key("tag is empty"));
        }
        self.invalidate(Invalidation::Tag(tag.to_owned())).await
    }

    /// Removes every entry of this cache's namespace and version from every layer.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("a", "1", None, &1u8).await?;
    /// cache.clear().await?;
    /// assert_eq!(cache.get::<u8>("a", "1", None).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Tier errors only in strict mode.
    pub async fn clear(&self) -> Result<u64> {
        self.invalidate(Invalidation::Clear).await
    }

    async fn invalidate(&self, invalidation: Invalidation) -> Result<u64> {
        self.inner.stats.record_invalidation();
        let removed = self.apply_invalidation(&invalidation, Scope::All).await?;
        self.publish(invalidation);
        Ok(removed)
    }

    /// Applies an invalidation to the layers in `scope`.
    async fn apply_invalidation(&self, inv: &Invalidation, scope: Scope) -> Result<u64> {
        if let Invalidation::Tag(tag) = inv {
            // Entries created before `at` are stale. `at` is the next millisecond, so an entry
            // written earlier in this very millisecond is covered; waiting until `at` has come
            // makes every write after this call strictly newer, so none of them is hidden.
            let at = now_ms() + 1;
            {
                let mut tags = self.inner.tag_invalidations.write();
                let slot = tags.entry(tag.clone()).or_insert(0);
                *slot = (*slot).max(at);
            }
            while now_ms() < at {
                tokio::time::sleep(Duration::from_micros(250)).await;
            }
            return Ok(0);
        }
        let mut removed = 0;
        for layer in &self.inner.layers {
            let in_scope = match scope {
                Scope::All => true,
                Scope::Local => !layer.shared,
                Scope::InProcess => layer.in_process,
            };
            if !in_scope {
                continue;
            }
            if !layer.available() {
                continue;
            }
            let store = layer.store();
            let started = Instant::now();
            let result = match inv {
                Invalidation::Key(k) => layer.call(store.delete(k)).await.map(u64::from),
                Invalidation::Prefix(p) => layer.call(store.delete_prefix(p)).await,
                Invalidation::Pattern(p) => layer.call(store.delete_pattern(p)).await,
                Invalidation::Clear => {
                    layer.call(store.delete_prefix(self.inner.keys.prefix())).await
                }
                Invalidation::Tag(_) => Ok(0),
                _ => Ok(0),
            };
            match result {
                Ok(n) => {
                    layer.stats.record_latency(Op::Invalidate, started.elapsed());
                    removed += n;
                }
                Err(e) => self.on_tier_error(e)?,
            }
        }
        Ok(removed)
    }

    // ----- backplane ---------------------------------------------------------------------

    /// Subscribes to the backplane given to the builder (no-op without one). Remote
    /// invalidations drop the matching entries from this instance's in-process layers; after
    /// a reconnect the in-process layers are flushed, because messages may have been missed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// // Without a backplane this does nothing.
    /// cache.connect_backplane().await?;
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`] when the first subscription fails.
    pub async fn connect_backplane(&self) -> Result<()> {
        let Some(backplane) = self.inner.backplane.clone() else { return Ok(()) };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<BackplaneEvent>();
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let cache = Cache { inner };
                cache.on_backplane_event(event).await;
            }
        });
        if let Some(old) = self.inner.backplane_task.lock().replace(task) {
            old.abort();
        }
        backplane
            .subscribe(Arc::new(move |event| {
                let _ = tx.send(event);
            }))
            .await
    }

    async fn on_backplane_event(&self, event: BackplaneEvent) {
        match event {
            BackplaneEvent::Invalidate(msg) => {
                if msg.origin == self.inner.instance_id {
                    return;
                }
                for invalidation in &msg.invalidations {
                    tracing::debug!(origin = %msg.origin, ?invalidation, "remote invalidation");
                    // Shared tiers (Redis) were already invalidated by the sender; this
                    // process's own tiers (memory, disk) were not.
                    if let Err(e) = self.apply_invalidation(invalidation, Scope::Local).await {
                        tracing::warn!(error = %e, "could not apply a remote invalidation");
                    }
                }
            }
            BackplaneEvent::Reconnected => {
                tracing::warn!("backplane reconnected: flushing in-process layers (messages may have been missed)");
                // The disk tier is not flushed: losing it would cost every warm entry; see
                // docs/operations.md for what that leaves uncovered.
                if let Err(e) =
                    self.apply_invalidation(&Invalidation::Clear, Scope::InProcess).await
                {
                    tracing::warn!(error = %e, "could not flush in-process layers");
                }
            }
            BackplaneEvent::Disconnected => {
                tracing::warn!(
                    "backplane disconnected: in-process layers will be flushed on reconnect"
                );
            }
            _ => {}
        }
    }

    fn publish(&self, invalidation: Invalidation) {
        let Some(backplane) = self.inner.backplane.clone() else { return };
        let msg = InvalidationMessage::new(self.inner.instance_id.clone(), invalidation);
        // Fire and forget: a backplane that is down must not fail or slow down the caller.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = backplane.publish(&msg).await {
                    tracing::warn!(error = %e, "could not publish an invalidation");
                }
            });
        }
    }

    // ----- stats -------------------------------------------------------------------------

    /// A report of the counters, latencies, and each layer's entries and bytes (asked of the
    /// stores, each under its layer's time limit; `None` where a store could not tell).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// # let cache = aurelis_cache::Cache::builder()
    /// #     .layer(aurelis_cache::Layer::new("memory", std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?)))
    /// #     .build()?;
    /// cache.set("a", "1", None, &1u8).await?;
    /// cache.get::<u8>("a", "1", None).await?;
    /// let report = cache.stats_report().await;
    /// assert_eq!(report.overall.hits, 1);
    /// assert_eq!(report.tiers[0].entries, Some(1));
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn stats_report(&self) -> StatsReport {
        let mut tiers = Vec::with_capacity(self.inner.layers.len());
        for layer in &self.inner.layers {
            let mut report = layer.stats.snapshot();
            let counters = layer.store().counters();
            report.evictions = counters.evictions;
            report.expirations = counters.expirations;
            if !layer.is_open() {
                let limit = layer.layer.timeout.unwrap_or(Duration::from_secs(2));
                report.entries = tokio::time::timeout(limit, layer.store().len())
                    .await
                    .ok()
                    .and_then(|r| r.ok());
                report.bytes = tokio::time::timeout(limit, layer.store().size_bytes())
                    .await
                    .ok()
                    .and_then(|r| r.ok());
            }
            tiers.push(report);
        }
        StatsReport::new(self.inner.stats.snapshot(), tiers)
    }

    // ----- internals ---------------------------------------------------------------------

    fn envelope<T: Serialize + ?Sized>(&self, value: &T, options: &SetOptions) -> Result<Envelope> {
        let payload = self.inner.codec.encode(value)?;
        if payload.len() > self.inner.max_value_bytes {
            return Err(Error::new(
                ErrorKind::ValueTooLarge,
                format!(
                    "encoded value is {} bytes, over the maximum of {} (max_value_bytes)",
                    payload.len(),
                    self.inner.max_value_bytes
                ),
            ));
        }
        let mut env = Envelope::new(self.inner.codec, payload.into())
            .with_ttl(options.ttl)
            .with_tags(options.tags.clone());
        if let (Some(at), Some(stale)) = (env.expires_at_ms, options.stale_for) {
            env.stale_until_ms = Some(at.saturating_add(stale.as_millis() as u64));
        }
        Ok(env)
    }

    /// How long a store should keep an entry: until expiry, or the end of its stale window.
    fn store_lifetime(&self, env: &Envelope, now: u64) -> Option<Duration> {
        env.stale_until_ms
            .or(env.expires_at_ms)
            .map(|until| Duration::from_millis(until.saturating_sub(now).max(1)))
    }

    async fn write_all(&self, key: &str, raw: &Bytes, env: &Envelope) -> Result<()> {
        let lifetime = self.store_lifetime(env, now_ms());
        self.write_layers(lifetime, Op::Set, |layer, ttl| layer.store().set(key, raw.clone(), ttl))
            .await?;
        self.inner.stats.record_write();
        self.publish(Invalidation::Key(key.to_owned()));
        Ok(())
    }

    /// Runs `write` on every available layer concurrently, each with its capped TTL. A failing
    /// layer is skipped (counted, logged); the write fails only when no layer took it, or in
    /// strict mode when any layer failed.
    async fn write_layers<'a, F, Fut>(
        &'a self,
        lifetime: Option<Duration>,
        op: Op,
        write: F,
    ) -> Result<()>
    where
        F: Fn(&'a Arc<LayerState>, Option<Duration>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let writes = self.inner.layers.iter().filter(|l| l.available()).map(|layer| {
            let fut = write(layer, layer.cap_ttl(lifetime));
            async move {
                let started = Instant::now();
                let result = layer.call(fut).await;
                if result.is_ok() {
                    layer.stats.record_latency(op, started.elapsed());
                    layer.stats.record_write();
                }
                result
            }
        });
        let mut written = 0;
        let mut last_err = None;
        for result in futures::future::join_all(writes).await {
            match result {
                Ok(()) => written += 1,
                Err(e) => {
                    self.inner.stats.record_error();
                    if self.inner.strict {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        match (written, last_err) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(Error::new(
                ErrorKind::Unavailable,
                "every layer is skipped (circuit breakers open); nothing was written",
            )),
            _ => Ok(()),
        }
    }

    fn on_tier_error(&self, e: Error) -> Result<()> {
        self.inner.stats.record_error();
        if self.inner.strict {
            return Err(e);
        }
        Ok(())
    }

    /// Walks the layers for `key`; writes a lower-layer hit back to the layers above it.
    /// `started` is when the caller began (one clock reading serves as the first layer's
    /// start: the read path takes one reading per layer asked, plus one).
    async fn lookup(&self, key: &str, started: Instant) -> Result<(Found, Instant)> {
        let mut stale = None;
        let mut clock = started;
        for (depth, layer) in self.inner.layers.iter().enumerate() {
            if !layer.available() {
                continue;
            }
            let result = layer.call(layer.store().get(key)).await;
            let now = Instant::now();
            let raw = match result {
                Ok(raw) => raw,
                Err(e) => {
                    clock = now;
                    self.on_tier_error(e)?;
                    continue;
                }
            };
            layer.stats.record_latency(Op::Get, now.duration_since(clock));
            clock = now;
            match raw.map(|raw| (raw.clone(), self.check(layer, key, raw))) {
                Some((raw, Checked::Fresh(env))) => {
                    layer.stats.record_hit();
                    self.write_back(depth, key, &raw, &env).await;
                    return Ok((Found::Fresh(env), clock));
                }
                Some((_, Checked::Stale(env))) => {
                    layer.stats.record_miss();
                    stale.get_or_insert(env);
                }
                Some((_, Checked::Dropped)) | None => layer.stats.record_miss(),
            }
        }
        Ok((stale.map_or(Found::Miss, Found::Stale), clock))
    }

    /// Verifies what a layer returned. Corrupt entries and expired entries past their stale
    /// window are deleted from that layer (in the background). In-process layers skip the
    /// checksum: their bytes never left this process's memory.
    fn check(&self, layer: &Arc<LayerState>, key: &str, raw: Bytes) -> Checked {
        let decoded =
            if layer.in_process { Envelope::decode_trusted(raw) } else { Envelope::decode(raw) };
        let env = match decoded {
            Ok(env) => env,
            Err(e) => {
                layer.stats.record_corrupt();
                self.inner.stats.record_corrupt();
                tracing::warn!(tier = %layer.name(), key, error = %e, "corrupt cache entry dropped");
                self.delete_in_background(layer, key);
                return Checked::Dropped;
            }
        };
        if !env.tags.is_empty() && self.tag_invalidated(&env) {
            self.delete_in_background(layer, key);
            return Checked::Dropped;
        }
        // The wall clock is read only for entries that can expire.
        if env.expires_at_ms.is_none() {
            return Checked::Fresh(env);
        }
        let now = now_ms();
        if env.is_fresh(now) {
            return Checked::Fresh(env);
        }
        layer.stats.record_expired();
        if env.stale_until_ms.is_some_and(|until| now < until) {
            return Checked::Stale(env);
        }
        self.delete_in_background(layer, key);
        Checked::Dropped
    }

    fn tag_invalidated(&self, env: &Envelope) -> bool {
        let tags = self.inner.tag_invalidations.read();
        env.tags.iter().any(|t| tags.get(t).is_some_and(|&at| env.created_at_ms < at))
    }

    fn delete_in_background(&self, layer: &Arc<LayerState>, key: &str) {
        let layer = layer.clone();
        let key = key.to_owned();
        let delete = async move {
            if let Err(e) = layer.call(layer.store().delete(&key)).await {
                tracing::debug!(tier = %layer.name(), error = %e, "could not drop a bad entry");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(delete);
            }
            Err(_) => tracing::debug!("no runtime: bad entry left for its tier to expire"),
        }
    }

    async fn write_back(&self, depth: usize, key: &str, raw: &Bytes, env: &Envelope) {
        if depth == 0 {
            return;
        }
        let now = now_ms();
        let Some(remaining) = env.remaining_ttl(now) else { return };
        let lifetime = match (remaining, env.stale_until_ms) {
            (r, None) => r,
            (_, Some(until)) => Some(Duration::from_millis(until.saturating_sub(now).max(1))),
        };
        for layer in &self.inner.layers[..depth] {
            if !layer.available() {
                continue;
            }
            let ttl = layer.cap_ttl(lifetime);
            let started = Instant::now();
            match layer.call(layer.store().set(key, raw.clone(), ttl)).await {
                Ok(()) => {
                    layer.stats.record_latency(Op::Set, started.elapsed());
                    layer.stats.record_writeback();
                }
                Err(e) => {
                    self.inner.stats.record_error();
                    tracing::debug!(tier = %layer.name(), error = %e, "write-back failed");
                }
            }
        }
    }

    /// Decodes an entry into `T`; an entry that is not a `T` (an old schema, a different type
    /// under the same key) is a miss, counted as corrupt and deleted from every layer.
    async fn decode<T: DeserializeOwned>(&self, key: &str, env: &Envelope) -> Option<T> {
        match env.value::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.inner.stats.record_corrupt();
                tracing::warn!(key, error = %e, "cached entry does not decode into the requested type; dropped");
                for layer in &self.inner.layers {
                    if layer.available() {
                        let _ = layer.call(layer.store().delete(key)).await;
                    }
                }
                None
            }
        }
    }
}

/// Which layers an invalidation reaches.
#[derive(Clone, Copy)]
enum Scope {
    /// Every layer (an invalidation made here).
    All,
    /// Layers no other process shares (an invalidation received from another process).
    Local,
    /// Layers in this process's memory (the flush after a backplane reconnect).
    InProcess,
}

enum Checked {
    Fresh(Envelope),
    Stale(Envelope),
    Dropped,
}
