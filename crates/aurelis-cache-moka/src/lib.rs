#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod config;
mod store;

pub use config::MokaConfig;
pub use store::{MokaStore, MokaStoreBuilder};
