#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod compressor;
mod config;
mod dictionary;
mod error;
mod layer;
mod stats;

pub use config::{Algorithm, CompressionConfig, DictionaryConfig};
pub use dictionary::{ZstdDictionary, DEFAULT_DICTIONARY_SIZE};
pub use layer::{
    CompressedStore, CompressionLayer, CompressionLayerBuilder, DEFAULT_THRESHOLD,
    DEFAULT_ZSTD_LEVEL,
};
pub use stats::CompressionStats;
