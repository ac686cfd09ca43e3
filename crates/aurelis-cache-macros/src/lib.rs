//! The `#[cached]` attribute of Aurelis Cache.
//!
//! Use it as `aurelis_cache::cached` (feature `macros` of the `aurelis-cache` crate, on by
//! default): the code it generates calls the runtime helpers of `aurelis_cache`, so this crate
//! alone is not enough. The attribute is documented, with runnable examples, on its re-export
//! `aurelis_cache::cached` and in the workspace's `docs/macros.md`.
//!
//! The crate has three parts: `attr` reads `#[cached(...)]` and the per-argument
//! `#[cached(skip)]`, `signature` checks the function (async, receiver, plain argument names,
//! return kind), and `expand` writes the cached function and its companions.
#![forbid(unsafe_code)]

mod attr;
mod expand;
mod signature;

use proc_macro::TokenStream;

/// (The attribute is implemented in the `aurelis-cache-macros` crate; the code it generates
/// calls `aurelis_cache`, so use it as `aurelis_cache::cached`.)
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}
