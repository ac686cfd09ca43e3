#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backplane;
mod config;
mod conn;
mod error;
mod lease;
mod store;

pub use backplane::RedisBackplane;
pub use config::RedisConfig;
pub use store::{RedisStore, RedisStoreBuilder};
