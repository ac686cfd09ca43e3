//! Writing the cached function and its companions.
//!
//! For `async fn f(args) -> R`, the output is six functions (associated functions of the same
//! impl block for a method, which then also take `&self`):
//!
//! | name | what it does |
//! |---|---|
//! | `f(args) -> R` | the cached call: `get_or_compute_with` on the key of `args` |
//! | `f_no_cache(args) -> R` | the body as written, without the cache |
//! | `f_refresh(args) -> R` | runs the body and stores a cacheable result |
//! | `f_invalidate(args) -> Result<()>` | invalidates the entry of `args` |
//! | `f_invalidate_all() -> Result<()>` | invalidates the function's category |
//! | `f_cache_key(args) -> Result<Key>` | the key of `args` |
//!
//! Everything that does not depend on the function's types lives in
//! `aurelis_cache::__macro_support`, so the generated code is a few calls.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ItemFn, Pat};

use crate::attr::{Attributes, DurationArg};
use crate::signature::{Function, Output};

/// The macro: the generated functions, or the errors next to the function as written (so the
/// rest of the crate still resolves it and only the attribute's mistakes are reported).
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "#[cached] goes on an `async fn` with a body (a free function or a method of an inherent impl)",
            );
            let mut out = err.into_compile_error();
            out.extend(item);
            return out;
        }
    };
    let attrs = Attributes::parse(args);
    let function = Function::analyse(&mut func);
    let result = match (attrs, function) {
        (Ok(attrs), Ok(function)) => expand(&attrs, &function),
        (Err(mut a), Err(f)) => {
            a.combine(f);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(tokens) => tokens,
        Err(e) => {
            let mut out = e.into_compile_error();
            out.extend(func.into_token_stream());
            out
        }
    }
}

/// The path of the runtime helpers.
fn support() -> TokenStream {
    quote!(::aurelis_cache::__macro_support)
}

fn expand(attrs: &Attributes, f: &Function) -> syn::Result<TokenStream> {
    let ms = support();
    let item = &f.item;
    let sig = &item.sig;
    let vis = &item.vis;
    let name = &sig.ident;
    let name_str = name.unraw().to_string();
    let output = &sig.output;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;

    // `cache_err` / `cache_none` make the whole return type the cached value.
    let mode = match (f.output, attrs.cache_err, attrs.cache_none) {
        (Output::Result, Some(_), _) | (Output::Option, _, Some(_)) => Output::Value,
        (kind, None, None) => kind,
        (_, Some(span), _) => {
            return Err(syn::Error::new(
                span,
                "`cache_err` needs a `Result` return type (it caches `Err` values too)",
            ))
        }
        (_, _, Some(span)) => {
            return Err(syn::Error::new(
                span,
                "`cache_none` needs an `Option` return type (it caches `None` too)",
            ))
        }
    };

    let (main_attrs, shared_attrs) = split_attrs(&item.attrs);
    let receiver = f.method.then(|| quote!(&self,));
    let receiver_as_written: Option<TokenStream> = sig.inputs.iter().find_map(|a| match a {
        FnArg::Receiver(r) => Some(quote!(#r,)),
        FnArg::Typed(_) => None,
    });
    // The arguments as written (markers removed), and without `mut` for the wrappers, which
    // only pass them on.
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let params: Vec<TokenStream> = typed
        .iter()
        .map(|t| {
            let mut t = (*t).clone();
            if let Pat::Ident(p) = &mut *t.pat {
                p.mutability = None;
            }
            t.into_token_stream()
        })
        .collect();
    let arg_names: Vec<&Ident> = f.args.iter().map(|a| &a.ident).collect();
    // Arguments only the attribute expressions use (a cache passed in, say) would be unused
    // in `f_no_cache`, the body as written: it mentions them once.
    let mut attr_tokens = TokenStream::new();
    for expr in attrs.cache.iter().chain(&attrs.key).chain(&attrs.tags) {
        expr.to_tokens(&mut attr_tokens);
    }
    let attr_names = names_used(attr_tokens);
    let used_by_attrs: Vec<&Ident> =
        arg_names.iter().copied().filter(|n| attr_names.contains(&n.to_string())).collect();
    // `f_invalidate_all` takes no arguments, except those the `cache` expression uses.
    let cache_args =
        attrs.cache.as_ref().map(|e| names_used(e.to_token_stream())).unwrap_or_default();
    let invalidate_all_params: Vec<&TokenStream> = params
        .iter()
        .zip(&arg_names)
        .filter(|(_, name)| cache_args.contains(&name.to_string()))
        .map(|(p, _)| p)
        .collect();

    let no_cache = format_ident!("{}_no_cache", name_str, span = name.span());
    let refresh = format_ident!("{}_refresh", name_str, span = name.span());
    let invalidate = format_ident!("{}_invalidate", name_str, span = name.span());
    let invalidate_all = format_ident!("{}_invalidate_all", name_str, span = name.span());
    let cache_key = format_ident!("{}_cache_key", name_str, span = name.span());

    let body_call = if f.method {
        quote!(self.#no_cache(#(#arg_names),*))
    } else {
        quote!(#no_cache(#(#arg_names),*))
    };

    // The category, a `const` in every generated body.
    let category = match &attrs.category {
        Some(lit) => quote!(const __AURELIS_CATEGORY: &str = #lit;),
        None => {
            if f.method {
                return Err(syn::Error::new(
                    Span::call_site(),
                    "#[cached] methods need a `category`: the macro cannot see the type's name, and two types' methods of one name in one module would share entries; write category = \"...\"",
                ));
            }
            quote! {
                const __AURELIS_CATEGORY: &str = {
                    const LEN: usize = #ms::category_len(::core::module_path!(), #name_str);
                    const BYTES: [u8; LEN] = #ms::category_bytes(::core::module_path!(), #name_str);
                    #ms::category_str(&BYTES)
                };
            }
        }
    };

    // The cache: an `Option<&Cache>` named `__aurelis_cache`.
    let cache = match &attrs.cache {
        None => quote!(let __aurelis_cache = #ms::global_cache();),
        // A `&mut self` method's body needs `self` while the cache is in use: a cache that is
        // a field of `self` is cloned (an `Arc`) rather than borrowed.
        Some(expr) if f.mut_receiver => {
            let span = expr.span();
            let get = quote_spanned!(span=> #ms::CacheSource::cache_ref(&(#expr)));
            quote! {
                let __aurelis_cache_owned: #ms::Cache = ::core::clone::Clone::clone(#get);
                let __aurelis_cache = ::core::option::Option::Some(&__aurelis_cache_owned);
            }
        }
        Some(expr) => {
            let span = expr.span();
            let get = quote_spanned!(span=> #ms::CacheSource::cache_ref(__aurelis_cache_holder));
            quote! {
                let __aurelis_cache_holder = &(#expr);
                let __aurelis_cache = ::core::option::Option::Some(#get);
            }
        }
    };

    // The key: a closure from the cache's key builder to `Result<Key>`.
    let key = match &attrs.key {
        Some(expr) => {
            quote!(#ms::custom_key(__aurelis_keys, __AURELIS_CATEGORY, #name_str, &(#expr)))
        }
        None => {
            // Sorted by name, as the key's canonical JSON has them: the key text is then
            // written in one pass (`KeyArgs` sorts arguments that come out of order).
            let mut named: Vec<_> = f
                .args
                .iter()
                .filter(|a| !a.skip)
                .map(|a| (a.ident.unraw().to_string(), &a.ident))
                .collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            let args = named
                .into_iter()
                .map(|(arg_name, ident)| quote_spanned!(ident.span()=> .arg(#arg_name, &#ident)));
            quote!(#ms::KeyArgs::new() #(#args)* .build(__aurelis_keys, __AURELIS_CATEGORY, #name_str))
        }
    };
    let target = quote! {
        let __aurelis_target = #ms::target(__aurelis_cache, |__aurelis_keys| #key);
    };

    // The entry options.
    let time = |d: &DurationArg| match d {
        DurationArg::Secs(secs, span) => {
            quote_spanned!(*span=> #ms::Duration::from_secs(#secs))
        }
        DurationArg::Expr(expr) => {
            let span = expr.span();
            quote_spanned!(span=> #ms::duration(#expr))
        }
    };
    let ttl = attrs.ttl.as_ref().map(|d| {
        let d = time(d);
        quote!(.ttl(#d))
    });
    let stale_for = attrs.stale_for.as_ref().map(|(d, _)| {
        let d = time(d);
        quote!(.stale_for(#d))
    });
    let tags = attrs.tags.iter().map(|t| {
        let span = t.span();
        quote_spanned!(span=> .tag(#ms::tag(&(#t))))
    });
    let options = quote! {
        let __aurelis_options = #ms::SetOptions::new() #ttl #stale_for #(#tags)*;
    };

    // Static registration for `invalidate_on`, read by `CacheInvalidator`.
    let registrations = attrs.invalidate_on.iter().map(|event| {
        quote! {
            #ms::inventory::submit! {
                #ms::EventRegistration::new(#event, __AURELIS_CATEGORY)
            }
        }
    });

    let out_span = f.output_span();
    let (call, refresh_fn) = match mode {
        Output::Value => ("call_value", "refresh_value"),
        Output::Result => ("call_result", "refresh_result"),
        Output::Option => ("call_option", "refresh_option"),
    };
    // Spanned at the return type (every token, the path too): a value that cannot be cached
    // is reported there.
    let call = Ident::new(call, out_span);
    let refresh_fn = Ident::new(refresh_fn, out_span);
    let call = quote_spanned! {out_span=>
        ::aurelis_cache::__macro_support::#call(__aurelis_target, &__aurelis_options, move || #body_call).await
    };
    let refresh_call = quote_spanned! {out_span=>
        ::aurelis_cache::__macro_support::#refresh_fn(__aurelis_target, &__aurelis_options, #body_call).await
    };
    let touch_args = quote!(let _ = (#(&#arg_names,)*););

    let block = &item.block;
    let first_line = if f.method { format!("Self::{name_str}") } else { name_str.clone() };
    let doc_no_cache = format!(
        "Runs `{first_line}` without the cache: the function's body as written (generated by `#[cached]`)."
    );
    let doc_refresh = format!(
        "Runs the body of `{first_line}` and stores its result under the arguments' key, as a cache miss would; returns the fresh result (generated by `#[cached]`)."
    );
    let doc_invalidate = format!(
        "Invalidates the entry of `{first_line}` for these arguments, in every tier and process (generated by `#[cached]`)."
    );
    let doc_invalidate_all = format!(
        "Invalidates every entry of `{first_line}`'s category, in every tier and process (generated by `#[cached]`)."
    );
    let doc_cache_key = format!(
        "The cache key `{first_line}` uses for these arguments (generated by `#[cached]`)."
    );

    Ok(quote! {
        #(#main_attrs)*
        #vis async fn #name #generics (#receiver_as_written #(#params),*) #output #where_clause {
            #category
            #(#registrations)*
            #cache
            #target
            #options
            #call
        }

        #(#shared_attrs)*
        #[doc = #doc_no_cache]
        #vis async fn #no_cache #generics (#receiver_as_written #(#typed),*) #output #where_clause {
            #(let _ = &#used_by_attrs;)*
            #block
        }

        #(#shared_attrs)*
        #[doc = #doc_refresh]
        #vis async fn #refresh #generics (#receiver_as_written #(#params),*) #output #where_clause {
            #category
            #cache
            #target
            #options
            #refresh_call
        }

        #(#shared_attrs)*
        #[doc = #doc_invalidate]
        #vis async fn #invalidate #generics (#receiver #(#params),*) -> ::aurelis_cache::Result<()> #where_clause {
            #touch_args
            #category
            #cache
            #target
            #ms::invalidate(__aurelis_target).await
        }

        #(#shared_attrs)*
        #[doc = #doc_invalidate_all]
        #vis async fn #invalidate_all #generics (#receiver #(#invalidate_all_params),*) -> ::aurelis_cache::Result<()> #where_clause {
            #category
            #cache
            #ms::invalidate_all(__aurelis_cache, __AURELIS_CATEGORY).await
        }

        #(#shared_attrs)*
        #[doc = #doc_cache_key]
        #vis fn #cache_key #generics (#receiver #(#params),*) -> ::aurelis_cache::Result<::aurelis_cache::Key> #where_clause {
            #touch_args
            #category
            #cache
            #target
            #ms::key_of(__aurelis_target)
        }
    })
}

/// The identifiers an expression uses as values: not a field or method name (after `.`), not
/// a later segment of a path (after `::`), not a macro's name.
fn names_used(tokens: TokenStream) -> BTreeSet<String> {
    fn walk(tokens: TokenStream, out: &mut BTreeSet<String>) {
        let mut after_dot_or_path = false;
        let mut iter = tokens.into_iter().peekable();
        while let Some(tt) = iter.next() {
            match tt {
                TokenTree::Ident(ident) => {
                    let is_macro =
                        matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!');
                    if !after_dot_or_path && !is_macro {
                        out.insert(ident.unraw().to_string());
                    }
                    after_dot_or_path = false;
                }
                TokenTree::Punct(p) => {
                    after_dot_or_path = p.as_char() == '.' || p.as_char() == ':';
                }
                TokenTree::Group(g) => {
                    walk(g.stream(), out);
                    after_dot_or_path = false;
                }
                TokenTree::Literal(_) => after_dot_or_path = false,
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(tokens, &mut out);
    out
}

/// The function's attributes: all of them for the cached function; for the companions only
/// `cfg`, `cfg_attr` and lint levels (docs, `#[tracing::instrument]`, `#[deprecated]` and
/// the like describe the function, not its companions).
fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    let shared = attrs
        .iter()
        .filter(|a| {
            ["cfg", "cfg_attr", "allow", "warn", "deny", "expect", "forbid"]
                .iter()
                .any(|n| a.path().is_ident(n))
        })
        .collect();
    (attrs.iter().collect(), shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_used_skips_fields_paths_and_macros() {
        let used =
            names_used(quote!(pick(shard, &self.cache, crate::caches::MAIN, format!("{x}"))));
        let used: Vec<_> = used.into_iter().collect();
        // `x` inside the format string is a literal, not a token: not seen (documented).
        assert_eq!(used, ["crate", "pick", "self", "shard"]);
    }
}
