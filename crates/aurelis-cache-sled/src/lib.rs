#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod layout;
mod store;

pub use config::SledConfig;
pub use store::{SledStore, SledStoreBuilder};
