//! `CacheConfig`: the serde twin of [`CacheBuilder`](crate::CacheBuilder), loadable from TOML
//! with environment overrides.
//!
//! Defaults mirror the reference layering: memory 300 s / 1000 entries, Redis 3600 s (off
//! unless enabled), disk 86400 s.
//!
//! ```toml
//! namespace = "myapp"
//!
//! [memory]
//! ttl_secs = 300
//! max_entries = 1000
//!
//! [disk]
//! ttl_secs = 86400
//! path = "/var/cache/myapp"
//! ```
//!
//! Environment overrides: `AURELIS_CACHE__<SECTION>__<FIELD>=value` (double underscores
//! between path parts, case-insensitive), e.g. `AURELIS_CACHE__DISK__PATH=/tmp/cache` or
//! `AURELIS_CACHE__MEMORY__TTL_SECS=60`. Values are read as TOML scalars when they parse as
//! one (numbers, booleans) and as strings otherwise.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::{Codec, Error, Result};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::layer::{BreakerConfig, Layer};
use crate::options::DEFAULT_MAX_VALUE_BYTES;

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "AURELIS_CACHE__";

/// The whole cache's configuration.
///
/// # Examples
///
/// ```
/// let config = aurelis_cache::CacheConfig::from_toml_str(r#"
///     namespace = "myapp"
///     [memory]
///     ttl_secs = 60
/// "#)?;
/// assert_eq!(config.namespace, "myapp");
/// assert_eq!(config.memory.ttl_secs, 60);
/// assert_eq!(config.disk.ttl_secs, 86_400);
///
/// let bad = aurelis_cache::CacheConfig::from_toml_str("namespac = \"typo\"");
/// assert!(bad.unwrap_err().to_string().contains("namespac"));
/// # Ok::<(), aurelis_cache::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Key namespace.
    pub namespace: String,
    /// Key version.
    pub version: String,
    /// Codec of new entries.
    pub codec: Codec,
    /// Largest encoded value accepted.
    pub max_value_bytes: usize,
    /// Return tier errors to callers instead of skipping the tier.
    pub strict: bool,
    /// Circuit breaker of every layer.
    pub breaker: BreakerConfig,
    /// The memory tier.
    #[cfg(feature = "moka")]
    pub memory: MemoryLayerConfig,
    /// The Redis tier.
    #[cfg(feature = "redis")]
    pub redis: RedisLayerConfig,
    /// The disk tier.
    #[cfg(feature = "sled")]
    pub disk: DiskLayerConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            namespace: "aurelis".into(),
            version: "v1".into(),
            codec: Codec::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            strict: false,
            breaker: BreakerConfig::default(),
            #[cfg(feature = "moka")]
            memory: MemoryLayerConfig::default(),
            #[cfg(feature = "redis")]
            redis: RedisLayerConfig::default(),
            #[cfg(feature = "sled")]
            disk: DiskLayerConfig::default(),
        }
    }
}

/// The memory tier's layer settings and store config (flattened: `max_entries`,
/// `max_bytes`, `name` sit beside `ttl_secs`).
#[cfg(feature = "moka")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MemoryLayerConfig {
    /// Whether the tier is used.
    pub enabled: bool,
    /// Longest lifetime of an entry in this tier.
    pub ttl_secs: u64,
    /// Lookup order (higher first).
    pub priority: i32,
    /// Time limit of one operation, if any.
    pub timeout_ms: Option<u64>,
    /// The moka store.
    #[serde(flatten)]
    pub store: aurelis_cache_moka::MokaConfig,
}

#[cfg(feature = "moka")]
impl Default for MemoryLayerConfig {
    fn default() -> Self {
        MemoryLayerConfig {
            enabled: true,
            ttl_secs: 300,
            priority: 3,
            timeout_ms: None,
            store: aurelis_cache_moka::MokaConfig::default(),
        }
    }
}

/// The Redis tier's layer settings and store config (flattened: `url`, `cluster_urls`,
/// `password`, `pool_size`, `timeout_ms`, `key_prefix`... sit beside `ttl_secs`).
#[cfg(feature = "redis")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisLayerConfig {
    /// Whether the tier is used (off by default: it needs a server).
    pub enabled: bool,
    /// Longest lifetime of an entry in this tier.
    pub ttl_secs: u64,
    /// Lookup order (higher first).
    pub priority: i32,
    /// Keep other instances' memory tiers coherent through Redis pub/sub.
    pub backplane: bool,
    /// The Redis store.
    #[serde(flatten)]
    pub store: aurelis_cache_redis::RedisConfig,
}

#[cfg(feature = "redis")]
impl Default for RedisLayerConfig {
    fn default() -> Self {
        RedisLayerConfig {
            enabled: false,
            ttl_secs: 3600,
            priority: 2,
            backplane: true,
            store: aurelis_cache_redis::RedisConfig::default(),
        }
    }
}

/// The default directory of the disk tier.
pub const DEFAULT_DISK_PATH: &str = "./aurelis-cache-data";

/// The disk tier's layer settings and store config (flattened: `path`, `max_bytes`,
/// `sweep_interval_secs`... sit beside `ttl_secs`).
#[cfg(feature = "sled")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DiskLayerConfig {
    /// Whether the tier is used.
    pub enabled: bool,
    /// Longest lifetime of an entry in this tier.
    pub ttl_secs: u64,
    /// Lookup order (higher first).
    pub priority: i32,
    /// Time limit of one operation, if any.
    pub timeout_ms: Option<u64>,
    /// The sled store (`path` defaults to [`DEFAULT_DISK_PATH`]).
    #[serde(flatten)]
    pub store: aurelis_cache_sled::SledConfig,
}

#[cfg(feature = "sled")]
impl Default for DiskLayerConfig {
    fn default() -> Self {
        DiskLayerConfig {
            enabled: true,
            ttl_secs: 86_400,
            priority: 1,
            timeout_ms: None,
            store: aurelis_cache_sled::SledConfig::default(),
        }
    }
}

impl CacheConfig {
    /// Parses a TOML document.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) with the parser's message (which names
    /// the field and line) when the text is not a valid config.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::config(format!("invalid cache config: {e}")))
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the file when it cannot be read
    /// or parsed.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read cache config {}", path.display())).with_source(e)
        })?;
        toml::from_str(&text)
            .map_err(|e| Error::config(format!("invalid cache config {}: {e}", path.display())))
    }

    /// The file at `path` (or the defaults when `None`), then the process environment's
    /// `AURELIS_CACHE__*` overrides.
    ///
    /// # Errors
    ///
    /// As [`CacheConfig::from_toml_file`] and [`CacheConfig::with_overrides`].
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let config = match path {
            Some(p) => Self::from_toml_file(p)?,
            None => Self::default(),
        };
        config.with_overrides(std::env::vars())
    }

    /// Applies `AURELIS_CACHE__SECTION__FIELD=value` overrides from `vars` (other names are
    /// ignored).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = aurelis_cache::CacheConfig::default().with_overrides([
    ///     ("AURELIS_CACHE__MEMORY__TTL_SECS".to_string(), "60".to_string()),
    ///     ("AURELIS_CACHE__NAMESPACE".to_string(), "myapp".to_string()),
    ///     ("HOME".to_string(), "/root".to_string()),
    /// ])?;
    /// assert_eq!(config.memory.ttl_secs, 60);
    /// assert_eq!(config.namespace, "myapp");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the variable when it does not
    /// fit the config (unknown field, wrong type).
    pub fn with_overrides<I, K, V>(self, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut doc = toml::Table::try_from(&self)
            .map_err(|e| Error::config(format!("cannot represent the config as TOML: {e}")))?;
        let mut applied = Vec::new();
        for (name, value) in vars {
            let Some(path) = name.as_ref().strip_prefix(ENV_PREFIX) else { continue };
            let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            if parts.iter().any(String::is_empty) {
                return Err(Error::config(format!(
                    "malformed override variable {}",
                    name.as_ref()
                )));
            }
            set_path(&mut doc, &parts, parse_scalar(value.as_ref()));
            applied.push(name.as_ref().to_owned());
        }
        if applied.is_empty() {
            return Ok(self);
        }
        toml::Value::Table(doc).try_into().map_err(|e| {
            Error::config(format!("invalid cache config after overrides {applied:?}: {e}"))
        })
    }

    /// Builds the cache this config describes (layers by priority).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the bad field (a zero TTL, no
    /// enabled tier, a bad namespace...), and the stores' own build errors (an unopenable
    /// disk path, a bad Redis URL).
    pub async fn build(&self) -> Result<Cache> {
        // Without any tier feature nothing below adds a layer (and `build` reports that).
        #[cfg_attr(
            not(any(feature = "moka", feature = "redis", feature = "sled")),
            allow(unused_mut)
        )]
        let mut builder = Cache::builder()
            .namespace(self.namespace.clone())
            .version(self.version.clone())
            .codec(self.codec)
            .max_value_bytes(self.max_value_bytes)
            .strict(self.strict);
        #[cfg_attr(
            not(any(feature = "moka", feature = "redis", feature = "sled")),
            allow(unused_mut)
        )]
        let mut layers = 0;
        #[cfg(feature = "moka")]
        if self.memory.enabled {
            let m = &self.memory;
            let store = aurelis_cache_moka::MokaStore::from_config(&m.store)?;
            let layer = layer(
                "memory",
                Arc::new(store),
                m.ttl_secs,
                m.priority,
                m.timeout_ms,
                &self.breaker,
            )?;
            builder = builder.layer(layer);
            layers += 1;
        }
        #[cfg(feature = "redis")]
        if self.redis.enabled {
            let r = &self.redis;
            let store = aurelis_cache_redis::RedisStore::from_config(&r.store).await?;
            let layer =
                layer("redis", Arc::new(store), r.ttl_secs, r.priority, None, &self.breaker)?;
            builder = builder.layer(layer);
            if r.backplane {
                let backplane = aurelis_cache_redis::RedisBackplane::new(
                    &r.store,
                    &self.namespace,
                    &self.version,
                )?;
                builder = builder.backplane(Arc::new(backplane));
            }
            layers += 1;
        }
        #[cfg(feature = "sled")]
        if self.disk.enabled {
            let d = &self.disk;
            let mut store_config = d.store.clone();
            if store_config.path.is_none() {
                store_config.path = Some(DEFAULT_DISK_PATH.into());
            }
            // Opening (and recovering) a database reads the disk: off the async workers.
            let store = match tokio::runtime::Handle::try_current() {
                Ok(rt) => rt
                    .spawn_blocking(move || {
                        aurelis_cache_sled::SledStore::from_config(&store_config)
                    })
                    .await
                    .map_err(|e| Error::config(format!("opening the disk tier panicked: {e}")))??,
                Err(_) => aurelis_cache_sled::SledStore::from_config(&store_config)?,
            };
            let layer = layer(
                "disk",
                Arc::new(store),
                d.ttl_secs,
                d.priority,
                d.timeout_ms,
                &self.breaker,
            )?;
            builder = builder.layer(layer);
            layers += 1;
        }
        if layers == 0 {
            return Err(Error::config(
                "every tier is disabled; enable at least one of memory, redis, disk",
            ));
        }
        builder.build_connected().await
    }
}

#[allow(dead_code)]
fn layer(
    section: &str,
    store: Arc<dyn aurelis_cache_core::Store>,
    ttl_secs: u64,
    priority: i32,
    timeout_ms: Option<u64>,
    breaker: &BreakerConfig,
) -> Result<Layer> {
    if ttl_secs == 0 {
        return Err(Error::config(format!("{section}.ttl_secs must be greater than zero")));
    }
    if timeout_ms == Some(0) {
        return Err(Error::config(format!("{section}.timeout_ms must be greater than zero")));
    }
    let name = store.name().to_owned();
    let mut layer = Layer::new(name, store)
        .ttl(Duration::from_secs(ttl_secs))
        .priority(priority)
        .breaker(breaker.clone());
    if let Some(ms) = timeout_ms {
        layer = layer.timeout(Duration::from_millis(ms));
    }
    Ok(layer)
}

fn parse_scalar(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(doc: &mut toml::Table, parts: &[String], value: toml::Value) {
    match parts {
        [] => {}
        [last] => {
            doc.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry =
                doc.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

impl Cache {
    /// Builds a cache from a config; same as [`CacheConfig::build`].
    ///
    /// # Errors
    ///
    /// As [`CacheConfig::build`].
    pub async fn from_config(config: &CacheConfig) -> Result<Cache> {
        config.build().await
    }
}
