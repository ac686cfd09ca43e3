#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[cfg(feature = "candle")]
mod bert;
mod cache;
mod config;
mod guard;
mod lexical;
mod scope;
pub mod synthetic;
mod text;
mod vector;

#[cfg(feature = "candle")]
pub use bert::BertEmbedder;
pub use cache::{
    Candidate, EntryId, Hit, Lookup, Score, ShadowReport, SimilarityCache, SimilarityCacheBuilder,
    Verdict, Verifier,
};
pub use config::SimilarityConfig;
pub use guard::{Guard, Veto, VetoReason};
pub use lexical::lexical_score;
pub use scope::{Message, Scope, ScopeBuilder};
pub use text::{Analysis, Token, TokenKind};
pub use vector::{Embedder, HashEmbedder};

/// The guide (`docs/similarity.md`), compiled as a doctest so its examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/similarity.md")]
mod guide {}
