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
//! A tier section holds the tier's settings (`enabled`, `ttl_secs`, `priority`, `timeout_ms`)
//! and its store's ([`MokaConfig`](crate::MokaConfig), `SledConfig`, `RedisConfig`) in one
//! table. A key that none of them takes, at the top or in any section, is an error naming it.
//!
//! # Environment overrides
//!
//! [`CacheConfig::load`] applies `AURELIS_CACHE__<SECTION>__<FIELD>=value` on top of the file
//! (two underscores between parts; names in any case), e.g. `AURELIS_CACHE__DISK__PATH=/tmp/c`,
//! `AURELIS_CACHE__MEMORY__TTL_SECS=60`, `AURELIS_CACHE__NAMESPACE=myapp`. A value is read as
//! the type of the field it sets:
//!
//! - a text field (namespace, path, URL, password...) takes the value as it is:
//!   `AURELIS_CACHE__REDIS__PASSWORD=12345` is the password `"12345"`;
//! - an integer or boolean field parses it (`true`/`false` in any case, spaces around ignored);
//! - a list (`cluster_urls`) takes a TOML array or comma-separated values;
//! - an optional field that is unset (`max_entries`, `timeout_ms`, `password`...) takes the
//!   value as a TOML number or boolean when the field accepts one, as text otherwise.
//!
//! A value the field cannot take, a name that is not a field, or the name of a whole section is
//! an [`ErrorKind::Config`](crate::ErrorKind::Config) error naming the variable, the field and
//! the type it expects. Text fields take any value, so a password never shows in an error.
//! Variables without the prefix are ignored. An override cannot unset an optional field.
//!
//! ```
//! use aurelis_cache::{CacheConfig, ErrorKind};
//!
//! let config = CacheConfig::from_toml_str("[memory]\nttl_secs = 60")?.with_overrides([
//!     ("AURELIS_CACHE__NAMESPACE", "2024"),          // a text field stays text
//!     ("AURELIS_CACHE__MEMORY__MAX_ENTRIES", "500"), // an unset optional number
//!     ("AURELIS_CACHE__Strict", "TRUE"),             // names and booleans in any case
//! ])?;
//! assert_eq!(config.namespace, "2024");
//! assert_eq!(config.memory.ttl_secs, 60);
//! assert_eq!(config.memory.store.max_entries, Some(500));
//! assert!(config.strict);
//!
//! let wrong_type = CacheConfig::default()
//!     .with_overrides([("AURELIS_CACHE__MEMORY__TTL_SECS", "soon")])
//!     .unwrap_err();
//! assert_eq!(wrong_type.kind(), ErrorKind::Config);
//! assert_eq!(
//!     wrong_type.message(),
//!     "AURELIS_CACHE__MEMORY__TTL_SECS: memory.ttl_secs expects an integer"
//! );
//! let typo = CacheConfig::default()
//!     .with_overrides([("AURELIS_CACHE__MEMORY__TTL_SEC", "60")])
//!     .unwrap_err();
//! assert!(typo.message().starts_with("AURELIS_CACHE__MEMORY__TTL_SEC: unknown field"));
//!
//! // The same typo in a file:
//! let typo = CacheConfig::from_toml_str("[memory]\nttl_sec = 60").unwrap_err();
//! assert!(typo.message().contains("unknown field `ttl_sec` in [memory]"));
//! # Ok::<(), aurelis_cache::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::{Codec, Error, Result};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::options::DEFAULT_MAX_VALUE_BYTES;
use crate::tier::{BreakerConfig, Tier};

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
    /// Event rules for a [`CacheInvalidator`](crate::CacheInvalidator):
    /// `[invalidation.rules] user_updated = ["key:user_data:{user_id}", "tag:user:{user_id}"]`
    /// (see [`CacheConfig::invalidator`]).
    pub invalidation: crate::InvalidationRules,
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
            invalidation: crate::InvalidationRules::default(),
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
    /// Keys neither the layer nor the store takes: an error (`flatten` defeats
    /// `deny_unknown_fields`). Declared last, so it sees only what the fields above left.
    /// Compress payloads on the way into this tier (feature `compress`; off when absent):
    /// `[memory.compression] algorithm = "zstd"`, `level`, `threshold`, ... (see
    /// `aurelis_cache_compress::CompressionConfig`).
    #[cfg(feature = "compress")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<aurelis_cache_compress::CompressionConfig>,
    #[serde(flatten, skip_serializing, deserialize_with = "unknown_keys::memory")]
    unknown_keys: unknown_keys::Checked,
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
            #[cfg(feature = "compress")]
            compression: None,
            unknown_keys: unknown_keys::Checked,
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
    /// Cross-process single-flight through leases in this Redis (see
    /// [`SingleFlight`](crate::SingleFlight)): concurrent misses of one key in different
    /// processes call the loader once. On by default.
    pub single_flight: bool,
    /// The Redis store.
    #[serde(flatten)]
    pub store: aurelis_cache_redis::RedisConfig,
    /// Keys neither the layer nor the store takes: an error (see [`MemoryLayerConfig`]).
    /// Compress payloads on the way into this tier (feature `compress`; off when absent):
    /// `[redis.compression] algorithm = "zstd"`, `level`, `threshold`, ... (see
    /// `aurelis_cache_compress::CompressionConfig`).
    #[cfg(feature = "compress")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<aurelis_cache_compress::CompressionConfig>,
    #[serde(flatten, skip_serializing, deserialize_with = "unknown_keys::redis")]
    unknown_keys: unknown_keys::Checked,
}

#[cfg(feature = "redis")]
impl Default for RedisLayerConfig {
    fn default() -> Self {
        RedisLayerConfig {
            enabled: false,
            ttl_secs: 3600,
            priority: 2,
            backplane: true,
            single_flight: true,
            store: aurelis_cache_redis::RedisConfig::default(),
            #[cfg(feature = "compress")]
            compression: None,
            unknown_keys: unknown_keys::Checked,
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
    /// Keys neither the layer nor the store takes: an error (see [`MemoryLayerConfig`]).
    /// Compress payloads on the way into this tier (feature `compress`; off when absent):
    /// `[disk.compression] algorithm = "zstd"`, `level`, `threshold`, ... (see
    /// `aurelis_cache_compress::CompressionConfig`).
    #[cfg(feature = "compress")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<aurelis_cache_compress::CompressionConfig>,
    #[serde(flatten, skip_serializing, deserialize_with = "unknown_keys::disk")]
    unknown_keys: unknown_keys::Checked,
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
            #[cfg(feature = "compress")]
            compression: None,
            unknown_keys: unknown_keys::Checked,
        }
    }
}

impl CacheConfig {
    /// A [`CacheInvalidator`](crate::CacheInvalidator) over `cache` with this config's event
    /// rules (`[invalidation.rules]`).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = aurelis_cache::CacheConfig::from_toml_str(&format!(
    ///     "[disk]\npath = {:?}\n[invalidation.rules]\nuser_updated = [\"key:user_data:{{user_id}}\"]\n",
    ///     dir.path().join("db")
    /// ))?;
    /// let cache = config.build().await?;
    /// let invalidator = config.invalidator(&cache)?;
    /// cache.set(("user_data", "42"), &"Ada").await?;
    /// let context = aurelis_cache::EventContext::new().with("user_id", "42");
    /// invalidator.invalidate_on_event("user_updated", &context).await?;
    /// assert_eq!(cache.get::<String>(("user_data", "42")).await?, None);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a rule whose target does not parse.
    pub fn invalidator(&self, cache: &Cache) -> Result<crate::CacheInvalidator> {
        crate::CacheInvalidator::from_rules(cache.clone(), &self.invalidation)
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
    /// `AURELIS_CACHE__*` overrides (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// As [`CacheConfig::load_with_env`]; also when an `AURELIS_CACHE__*` variable's value is
    /// not valid UTF-8.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            // A name that is not UTF-8 cannot carry the prefix.
            let Some(name) = name.to_str() else { continue };
            if override_path(name).is_none() {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| Error::config(format!("{name}: the value is not valid UTF-8")))?;
            vars.push((name.to_owned(), value));
        }
        Self::load_with_env(path, vars)
    }

    /// The file at `path` (or the defaults when `None`), then the overrides among `vars`
    /// (as [`CacheConfig::with_overrides`]). [`CacheConfig::load`] passes the process
    /// environment; pass your own variables to load without reading it (in tests, say).
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = dir.path().join("cache.toml");
    /// std::fs::write(&file, "namespace = \"myapp\"\n[memory]\nttl_secs = 60\n").unwrap();
    /// let config = aurelis_cache::CacheConfig::load_with_env(
    ///     Some(&file),
    ///     [("AURELIS_CACHE__MEMORY__TTL_SECS", "30")],
    /// )?;
    /// assert_eq!(config.namespace, "myapp");
    /// assert_eq!(config.memory.ttl_secs, 30);
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`CacheConfig::from_toml_file`] and [`CacheConfig::with_overrides`].
    pub fn load_with_env<I, K, V>(path: Option<&Path>, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config = match path {
            Some(p) => Self::from_toml_file(p)?,
            None => Self::default(),
        };
        config.with_overrides(vars)
    }

    /// Applies the `AURELIS_CACHE__SECTION__FIELD=value` overrides among `vars`, each read as
    /// the type of the field it sets (see the [module docs](self)); other names are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = aurelis_cache::CacheConfig::default().with_overrides([
    ///     ("AURELIS_CACHE__MEMORY__TTL_SECS".to_string(), "60".to_string()),
    ///     ("AURELIS_CACHE__NAMESPACE".to_string(), "1234".to_string()),
    ///     ("HOME".to_string(), "/root".to_string()),
    /// ])?;
    /// assert_eq!(config.memory.ttl_secs, 60);
    /// assert_eq!(config.namespace, "1234");
    /// # Ok::<(), aurelis_cache::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the variable and the field when
    /// the name is not a field of the config, or the value is not of the field's type (the
    /// message names the type it expects).
    pub fn with_overrides<I, K, V>(self, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut doc: Option<toml::Table> = None;
        let mut config = self;
        for (name, value) in vars {
            let name = name.as_ref();
            let Some(path) = override_path(name) else { continue };
            if doc.is_none() {
                doc = Some(toml::Table::try_from(&config).map_err(|e| {
                    Error::config(format!("cannot represent the config as TOML: {e}"))
                })?);
            }
            let table = doc.as_mut().expect("set above");
            config = apply_override(table, name, path, value.as_ref())?;
        }
        Ok(config)
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
            #[cfg(feature = "compress")]
            let store = compressed(Arc::new(store), m.compression.as_ref(), "memory")?;
            #[cfg(not(feature = "compress"))]
            let store = Arc::new(store);
            let layer =
                layer("memory", store, m.ttl_secs, m.priority, m.timeout_ms, &self.breaker)?;
            builder = builder.tier(layer);
            layers += 1;
        }
        #[cfg(feature = "redis")]
        if self.redis.enabled {
            let r = &self.redis;
            let redis = Arc::new(aurelis_cache_redis::RedisStore::from_config(&r.store).await?);
            if r.single_flight {
                builder = builder.single_flight(crate::SingleFlight::new(redis.clone()));
            }
            #[cfg(feature = "compress")]
            let store = compressed(redis, r.compression.as_ref(), "redis")?;
            #[cfg(not(feature = "compress"))]
            let store: Arc<dyn aurelis_cache_core::Store> = redis;
            let layer = layer("redis", store, r.ttl_secs, r.priority, None, &self.breaker)?;
            builder = builder.tier(layer);
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
            #[cfg(feature = "compress")]
            let store = compressed(Arc::new(store), d.compression.as_ref(), "disk")?;
            #[cfg(not(feature = "compress"))]
            let store = Arc::new(store);
            let layer = layer("disk", store, d.ttl_secs, d.priority, d.timeout_ms, &self.breaker)?;
            builder = builder.tier(layer);
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

/// `store` behind a compression layer built from `config`, or `store` itself without one.
#[cfg(feature = "compress")]
fn compressed(
    store: Arc<dyn aurelis_cache_core::Store>,
    config: Option<&aurelis_cache_compress::CompressionConfig>,
    section: &str,
) -> Result<Arc<dyn aurelis_cache_core::Store>> {
    let Some(config) = config else { return Ok(store) };
    let layer = aurelis_cache_compress::CompressionLayer::from_config(config)
        .map_err(|e| Error::config(format!("[{section}.compression]: {}", e.message())))?;
    Ok(Arc::new(layer.layer(store)))
}

#[allow(dead_code)]
fn layer(
    section: &str,
    store: Arc<dyn aurelis_cache_core::Store>,
    ttl_secs: u64,
    priority: i32,
    timeout_ms: Option<u64>,
    breaker: &BreakerConfig,
) -> Result<Tier> {
    if ttl_secs == 0 {
        return Err(Error::config(format!("{section}.ttl_secs must be greater than zero")));
    }
    if timeout_ms == Some(0) {
        return Err(Error::config(format!("{section}.timeout_ms must be greater than zero")));
    }
    let name = store.name().to_owned();
    let mut layer = Tier::new(name, store)
        .ttl(Duration::from_secs(ttl_secs))
        .priority(priority)
        .breaker(breaker.clone());
    if let Some(ms) = timeout_ms {
        layer = layer.timeout(Duration::from_millis(ms));
    }
    Ok(layer)
}

/// What follows the prefix of an override variable's name (the prefix in any case).
fn override_path(name: &str) -> Option<&str> {
    let head = name.get(..ENV_PREFIX.len())?;
    head.eq_ignore_ascii_case(ENV_PREFIX).then(|| &name[ENV_PREFIX.len()..])
}

/// Sets the field `path` names in `doc` (the config as a table) to `raw` read as the field's
/// type, and returns the config it makes.
fn apply_override(doc: &mut toml::Table, var: &str, path: &str, raw: &str) -> Result<CacheConfig> {
    let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return Err(Error::config(format!(
            "{var}: malformed name, expected {ENV_PREFIX}<SECTION>__<FIELD> with two \
             underscores between parts"
        )));
    }
    let dotted = parts.join(".");
    let unknown = || Error::config(format!("{var}: unknown field `{dotted}` in the cache config"));
    let (field, sections) = parts.split_last().expect("split yields at least one part");
    let section = section_mut(doc, sections).ok_or_else(unknown)?;
    match section.get(field) {
        Some(toml::Value::Table(_)) => Err(Error::config(format!(
            "{var}: `{dotted}` is a section, not a field; set one of its fields with \
             {var}__<FIELD>"
        ))),
        Some(current) => {
            let expected = type_name(current);
            let value = typed(current, raw)
                .ok_or_else(|| Error::config(format!("{var}: {dotted} expects {expected}")))?;
            section.insert(field.clone(), value);
            parse_table(doc).map_err(|e| Error::config(format!("{var}: {dotted}: {e}")))
        }
        None => {
            // An optional field that is unset (absent from the table), or no field at all: try
            // the value as a TOML scalar, then as text.
            let mut candidates = vec![parse_scalar(raw)];
            if !candidates[0].is_str() {
                candidates.push(toml::Value::String(raw.to_owned()));
            }
            let mut first_error = None;
            for candidate in candidates {
                section_mut(doc, sections).ok_or_else(unknown)?.insert(field.clone(), candidate);
                match parse_table(doc) {
                    Ok(config) => return Ok(config),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            section_mut(doc, sections).ok_or_else(unknown)?.remove(field);
            let e = first_error.expect("at least one candidate was tried");
            if e.contains("unknown field") {
                Err(unknown())
            } else {
                Err(Error::config(format!("{var}: {dotted}: {e}")))
            }
        }
    }
}

/// The table at `sections` under `doc`, if each part names a table.
fn section_mut<'a>(doc: &'a mut toml::Table, sections: &[String]) -> Option<&'a mut toml::Table> {
    let mut table = doc;
    for section in sections {
        table = table.get_mut(section)?.as_table_mut()?;
    }
    Some(table)
}

/// The config `doc` describes, or the deserializer's message (without the field's path).
fn parse_table(doc: &toml::Table) -> std::result::Result<CacheConfig, String> {
    toml::Value::Table(doc.clone()).try_into().map_err(|e: toml::de::Error| e.message().to_owned())
}

/// `raw` as a value of the type of `current`, if it reads as one.
fn typed(current: &toml::Value, raw: &str) -> Option<toml::Value> {
    use toml::Value;
    let trimmed = raw.trim();
    match current {
        Value::String(_) => Some(Value::String(raw.to_owned())),
        Value::Integer(_) => trimmed.parse().ok().map(Value::Integer),
        Value::Float(_) => trimmed.parse().ok().map(Value::Float),
        Value::Boolean(_) if trimmed.eq_ignore_ascii_case("true") => Some(Value::Boolean(true)),
        Value::Boolean(_) if trimmed.eq_ignore_ascii_case("false") => Some(Value::Boolean(false)),
        Value::Boolean(_) => None,
        Value::Datetime(_) => trimmed.parse().ok().map(Value::Datetime),
        Value::Array(_) if trimmed.starts_with('[') => {
            Some(parse_scalar(trimmed)).filter(Value::is_array)
        }
        Value::Array(_) => Some(Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        )),
        Value::Table(_) => None,
    }
}

/// How an error names the type of `value`.
fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "text",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean (true or false)",
        toml::Value::Datetime(_) => "a TOML date-time",
        toml::Value::Array(_) => "a list (a TOML array, or comma-separated values)",
        toml::Value::Table(_) => "a section",
    }
}

/// `raw` as a TOML scalar (or array) when it reads as one, else as text.
fn parse_scalar(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// `deserialize_with` of the tier sections' last, flattened field: what the fields before it
/// left over are unknown keys.
#[cfg_attr(not(any(feature = "moka", feature = "redis", feature = "sled")), allow(dead_code))]
mod unknown_keys {
    use std::collections::BTreeMap;

    use serde::de::{Error as _, IgnoredAny};
    use serde::{Deserialize, Deserializer};

    /// The value of a section's `unknown_keys` field once deserialized: there were none.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub(super) struct Checked;

    #[cfg(feature = "moka")]
    pub(super) fn memory<'de, D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        deny(d, "memory", "MemoryLayerConfig and MokaConfig")
    }

    #[cfg(feature = "redis")]
    pub(super) fn redis<'de, D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        deny(d, "redis", "RedisLayerConfig and RedisConfig")
    }

    #[cfg(feature = "sled")]
    pub(super) fn disk<'de, D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        deny(d, "disk", "DiskLayerConfig and SledConfig")
    }

    fn deny<'de, D: Deserializer<'de>>(
        d: D,
        section: &str,
        types: &str,
    ) -> Result<Checked, D::Error> {
        let rest = BTreeMap::<String, IgnoredAny>::deserialize(d)?;
        if rest.is_empty() {
            return Ok(Checked);
        }
        let keys: Vec<String> = rest.keys().map(|k| format!("`{k}`")).collect();
        let plural = if keys.len() > 1 { "s" } else { "" };
        Err(D::Error::custom(format!(
            "unknown field{plural} {} in [{section}] (its fields are those of {types})",
            keys.join(", ")
        )))
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
