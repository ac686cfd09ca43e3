//! The serde twin of [`CompressionLayerBuilder`](crate::CompressionLayerBuilder).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::layer::{DEFAULT_THRESHOLD, DEFAULT_ZSTD_LEVEL};

/// The compression algorithm a layer writes with. Every algorithm is read whatever a layer
/// writes.
///
/// # Examples
///
/// ```
/// use aurelis_cache_compress::Algorithm;
/// assert_eq!(Algorithm::default(), Algorithm::Zstd);
/// assert_eq!(serde_json::to_string(&Algorithm::Lz4).unwrap(), "\"lz4\"");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Algorithm {
    /// Store payloads uncompressed (entries written compressed elsewhere stay readable).
    None,
    /// zstd: the best ratio for its speed; the default.
    #[default]
    Zstd,
    /// lz4: the fastest, with a lower ratio.
    Lz4,
}

/// A zstd dictionary file and the id its entries carry.
///
/// # Examples
///
/// ```
/// let d = aurelis_cache_compress::DictionaryConfig::new(2, "/etc/app/answers.dict");
/// assert_eq!(d.id, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DictionaryConfig {
    /// The id entries compressed with it carry; never reuse one for other bytes.
    pub id: u32,
    /// The dictionary file (see [`ZstdDictionary::bytes`](crate::ZstdDictionary::bytes)).
    pub path: PathBuf,
}

impl DictionaryConfig {
    /// A dictionary file under an id.
    pub fn new(id: u32, path: impl Into<PathBuf>) -> Self {
        DictionaryConfig { id, path: path.into() }
    }
}

/// Configuration of a [`CompressionLayer`](crate::CompressionLayer), readable from TOML, JSON
/// or any serde format. Missing fields take their defaults; unknown fields are an error.
///
/// # Examples
///
/// ```
/// use aurelis_cache_compress::{Algorithm, CompressionConfig, CompressionLayer};
///
/// let config: CompressionConfig = toml::from_str(r#"
///     algorithm = "zstd"
///     level = 6
///     threshold = 2048
///     [dictionary]
///     id = 2
///     path = "answers-v2.dict"
/// "#).unwrap();
/// assert_eq!((config.algorithm, config.level, config.threshold), (Algorithm::Zstd, 6, 2048));
/// assert_eq!(config.dictionary.unwrap().id, 2);
///
/// let defaults = CompressionConfig::default();
/// assert_eq!(defaults.threshold, 1024);
/// let layer = CompressionLayer::from_config(&defaults)?;
/// assert_eq!(layer.algorithm(), Algorithm::Zstd);
/// assert!(toml::from_str::<CompressionConfig>("levle = 3").is_err());
/// # Ok::<(), aurelis_cache_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CompressionConfig {
    /// The algorithm payloads are written with (default `zstd`).
    pub algorithm: Algorithm,
    /// The zstd level (default [`DEFAULT_ZSTD_LEVEL`]; negative levels are faster, up to 22
    /// compresses hardest). Ignored by other algorithms.
    pub level: i32,
    /// Payloads smaller than this many bytes are stored uncompressed (default 1024).
    pub threshold: usize,
    /// A zstd dictionary to compress with (zstd only).
    pub dictionary: Option<DictionaryConfig>,
    /// Older dictionaries, registered for reading only, so that entries written with them
    /// stay readable after the dictionary changed.
    pub previous_dictionaries: Vec<DictionaryConfig>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            algorithm: Algorithm::default(),
            level: DEFAULT_ZSTD_LEVEL,
            threshold: DEFAULT_THRESHOLD,
            dictionary: None,
            previous_dictionaries: Vec::new(),
        }
    }
}
