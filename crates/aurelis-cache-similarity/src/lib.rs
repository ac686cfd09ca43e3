#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cache;
mod config;
mod guard;
mod lexical;
mod scope;
mod text;
mod vector;

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
