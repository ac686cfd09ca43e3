//! [`CacheBuilder`]: builds a [`Cache`] from layers and settings.

use std::sync::Arc;

use aurelis_cache_core::{Backplane, CacheStats, Codec, Error, KeyBuilder, Result};

use crate::cache::{Cache, Inner};
use crate::coalesce::Flights;
use crate::invalidation::{Epochs, Marks};
use crate::layer::{Layer, LayerState};
use crate::options::DEFAULT_MAX_VALUE_BYTES;
use crate::sync::SyncState;

/// A random 128-bit instance id (from the OS-seeded hasher keys), so instances in containers
/// that all run as PID 1 never collide.
fn random_instance_id() -> String {
    use std::hash::BuildHasher;
    let a = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    let b = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{a:016x}{b:016x}")
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

    /// The codec of new entries (default MessagePack, which reads back everything serde can
    /// write; postcard is smaller but cannot decode `serde_json::Value` and friends). Entries are always read with the codec
    /// they were written with.
    ///
    /// # Examples
    ///
    /// ```
    /// let memory = std::sync::Arc::new(aurelis_cache::MokaStore::builder().build()?);
    /// let cache = aurelis_cache::Cache::builder().codec(aurelis_cache::Codec::Json).layer(aurelis_cache::Layer::new("memory", memory)).build()?;
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
    /// let backplane = std::sync::Arc::new(aurelis_cache::RedisBackplane::new(&config, "aurelis", "v1")?);
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
        Ok(Cache::from_inner(Inner {
            tiers: layers.into_iter().map(|l| Arc::new(LayerState::new(l))).collect(),
            keys,
            codec: self.codec,
            max_value_bytes: self.max_value_bytes,
            strict: self.strict,
            stats: CacheStats::new(),
            flights: Flights::default(),
            epochs: Epochs::new(),
            marks: Marks::new(),
            sync: SyncState::new(self.backplane),
            instance_id: random_instance_id(),
            ready: tokio::sync::OnceCell::new(),
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
    /// let cache = aurelis_cache::Cache::builder().layer(aurelis_cache::Layer::new("memory", memory)).build_connected().await?;
    /// # let _ = cache;
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
