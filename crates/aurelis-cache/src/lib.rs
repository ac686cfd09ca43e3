#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "macros")]
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __macro_support;
mod builder;
mod cache;
mod coalesce;
pub mod config;
mod entry;
mod global;
mod invalidation;
mod invalidator;
pub mod layer;
pub mod llm;
#[cfg(feature = "metrics")]
mod metrics;
mod monitor;
mod options;
mod report;
pub mod single_flight;
pub mod strategy;
mod sync;
mod tier;
mod tiers;
mod to_key;
mod warm;

pub use aurelis_cache_core as core;
pub use aurelis_cache_core::{
    Backplane, Bytes, CacheStats, Capabilities, Codec, Envelope, Error, ErrorKind, Invalidation,
    Key, KeyBuilder, Params, Result, StatsReport, Store, TierReport,
};
pub use builder::CacheBuilder;
pub use cache::Cache;
pub use config::CacheConfig;
pub use global::{get_cache_manager, init, install, shutdown};
pub use invalidator::{CacheInvalidator, EventContext, InvalidationRules, ResolvedTarget};
pub use llm::{FileCacheManager, ModelRequest, ModelResponse, ModelResponseCache};
#[cfg(feature = "metrics")]
pub use metrics::{spawn_metrics_exporter, MetricsExporter, METRIC_NAMES};
pub use monitor::{
    BackendMetrics, BreakerState, CacheMetrics, CacheMonitor, CompressionReport, Efficiency,
    OverallMetrics, PerformanceReport, PerformanceSummary, WriteQueueReport, WriteQueueStats,
};
pub use options::{SetOptions, DEFAULT_MAX_VALUE_BYTES};
pub use single_flight::SingleFlight;
pub use tier::{BreakerConfig, Tier};
pub use to_key::{ParamsArg, ToKey};
pub use warm::{CacheWarmer, WarmFailure, WarmProgress, WarmSummary};

#[cfg(feature = "compress")]
pub use aurelis_cache_compress::{
    Algorithm, CompressedStore, CompressionConfig, CompressionLayer, CompressionStats,
    ZstdDictionary,
};
#[cfg(feature = "macros")]
#[doc = include_str!("cached.md")]
pub use aurelis_cache_macros::cached;
#[cfg(feature = "moka")]
pub use aurelis_cache_moka::{MokaConfig, MokaStore};
#[cfg(feature = "redis")]
pub use aurelis_cache_redis::{RedisBackplane, RedisConfig, RedisStore};
/// Similar-prompt lookup (feature `similarity`): the index the model cache uses.
#[cfg(feature = "similarity")]
pub use aurelis_cache_similarity as similarity;
#[cfg(feature = "sled")]
pub use aurelis_cache_sled::{SledConfig, SledStore};

/// The workspace README and guides, compiled as doctests so their examples stay true.
#[cfg(all(doctest, feature = "moka", feature = "sled"))]
mod guides {
    #[doc = include_str!("../../../README.md")]
    mod readme {}
    #[doc = include_str!("../../../docs/getting-started.md")]
    mod getting_started {}
    #[doc = include_str!("../../../docs/tiers.md")]
    mod tiers {}
    #[doc = include_str!("../../../docs/strategies.md")]
    mod strategies {}
    #[doc = include_str!("../../../docs/invalidation.md")]
    mod invalidation {}
    #[doc = include_str!("../../../docs/llm-caching.md")]
    mod llm_caching {}
    #[doc = include_str!("../../../docs/operations.md")]
    mod operations {}
    #[doc = include_str!("../../../docs/compression.md")]
    mod compression {}
    #[doc = include_str!("../../../docs/monitoring.md")]
    mod monitoring {}
    #[cfg(feature = "macros")]
    #[doc = include_str!("../../../docs/macros.md")]
    mod macros {}
}
