#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backplane;
mod canonical;
pub mod codec;
pub mod compression;
pub mod envelope;
pub mod error;
pub mod key;
pub mod layer;
pub mod lease;
pub mod stats;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod value;

pub use backplane::{
    Backplane, BackplaneEvent, BackplaneHandler, Invalidation, InvalidationMessage, Mark,
};
pub use bytes::Bytes;
pub use codec::Codec;
pub use envelope::{Compression, Envelope};
pub use error::{Error, ErrorKind, Result};
pub use key::{Key, KeyBuilder, KeyWriter, Params};
pub use layer::{Layer, LayeredStore};
pub use stats::{
    CacheStats, LatencySummary, Op, OverallReport, StatsReport, TierReport, TierStats,
};
pub use store::{glob_match, Capabilities, ScanPage, Store, StoreCounters};
pub use value::{EntryMeta, ValueEntry, ValueStore};
