//! The serde twin of [`SledStoreBuilder`](crate::SledStoreBuilder).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Configuration of a [`SledStore`](crate::SledStore), readable from TOML, JSON or any serde
/// format. Missing fields take their defaults; `path` is required to build a store.
///
/// # Examples
///
/// ```
/// use aurelis_cache_sled::{SledConfig, SledStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let text = format!(r#"
///     name = "disk"
///     path = "{}"
///     max_bytes = 1073741824
///     sweep_interval_secs = 30
/// "#, dir.path().join("cache").display());
/// let config: SledConfig = toml::from_str(&text).unwrap();
/// assert_eq!(config.max_bytes, Some(1 << 30));
/// assert_eq!(config.flush_every_ms, Some(500));
/// let store = SledStore::from_config(&config)?;
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SledConfig {
    /// The tier's name in stats, logs and errors (default `"disk"`).
    pub name: String,
    /// Directory of the sled database (required; created if missing).
    pub path: Option<PathBuf>,
    /// Size cap in bytes (keys + values + an 8-byte header per entry); past it the oldest
    /// written entries are evicted. None (the default) means no cap.
    pub max_bytes: Option<u64>,
    /// Seconds between background sweeps of expired entries (default 60; 0 turns the sweep
    /// off, expired entries are then removed only when read).
    pub sweep_interval_secs: u64,
    /// Milliseconds between sled's background flushes to disk (default 500). `None`, or 0 in
    /// a config file, turns them off: only [`SledStore::flush`](crate::SledStore::flush) and
    /// closing the store write to disk.
    #[serde(with = "flush_every_ms")]
    pub flush_every_ms: Option<u64>,
    /// Size of sled's page cache in bytes (default: sled's own, 1 GiB).
    pub cache_capacity_bytes: Option<u64>,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            name: crate::store::DEFAULT_NAME.to_owned(),
            path: None,
            max_bytes: None,
            sweep_interval_secs: crate::store::DEFAULT_SWEEP_INTERVAL.as_secs(),
            flush_every_ms: crate::store::DEFAULT_FLUSH_EVERY_MS,
            cache_capacity_bytes: None,
        }
    }
}

/// `flush_every_ms` as a plain integer, 0 for "off", so that every value survives a trip
/// through formats without a null (TOML) instead of turning back into the default.
mod flush_every_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(ms.unwrap_or(0))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.filter(|&ms| ms > 0))
    }
}
