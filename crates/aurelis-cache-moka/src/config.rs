//! The serde twin of [`MokaStoreBuilder`](crate::MokaStoreBuilder).

use serde::{Deserialize, Serialize};

/// Configuration of a [`MokaStore`](crate::MokaStore), readable from TOML, JSON or any serde
/// format. Missing fields take their defaults.
///
/// Set at most one of `max_entries` and `max_bytes`; with neither, the store holds up to
/// 1000 entries.
///
/// # Examples
///
/// ```
/// use aurelis_cache_moka::{MokaConfig, MokaStore};
///
/// let config: MokaConfig = toml::from_str(r#"
///     name = "memory"
///     max_bytes = 67108864
/// "#).unwrap();
/// assert_eq!(config.max_bytes, Some(64 * 1024 * 1024));
/// assert_eq!(config.max_entries, None);
/// let store = MokaStore::from_config(&config)?;
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MokaConfig {
    /// The tier's name in stats, logs and errors (default `"memory"`).
    pub name: String,
    /// Capacity as a number of entries (default 1000 when `max_bytes` is not set).
    pub max_entries: Option<u64>,
    /// Capacity in bytes, each entry weighing its key length plus its value length.
    pub max_bytes: Option<u64>,
    /// Seconds between background sweeps of expired entries nobody read (default 60; 0: no
    /// sweep, see [`MokaStoreBuilder::sweep_interval`](crate::MokaStoreBuilder::sweep_interval)).
    pub sweep_interval_secs: u64,
}

impl Default for MokaConfig {
    fn default() -> Self {
        MokaConfig {
            name: crate::store::DEFAULT_NAME.to_owned(),
            max_entries: None,
            max_bytes: None,
            sweep_interval_secs: crate::store::DEFAULT_SWEEP_INTERVAL.as_secs(),
        }
    }
}
