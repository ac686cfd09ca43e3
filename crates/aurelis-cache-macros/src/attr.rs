//! Reading `#[cached(...)]` on the function and `#[cached(skip)]` on its arguments.
//!
//! Every mistake is a `syn::Error` spanned at the attribute (or the value) that is wrong, so
//! the compiler points at it.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Token, UnOp};

/// The attributes the function accepts, in the order the docs list them.
const NAMES: &str =
    "ttl, category, key, cache, tags, invalidate_on, stale_for, cache_err, cache_none";

/// The longest category the cache accepts (`aurelis_cache_core::key::MAX_PART_LEN`).
const MAX_CATEGORY_LEN: usize = 128;

/// A time span: whole seconds written as an integer literal, or any `Duration` expression.
pub(crate) enum DurationArg {
    /// `ttl = 3600`: checked here (at least one second).
    Secs(u64, Span),
    /// `ttl = Duration::from_millis(1500)`: type-checked by the compiler where it is used.
    Expr(Box<Expr>),
}

/// `#[cached(...)]` on the function.
#[derive(Default)]
pub(crate) struct Attributes {
    pub(crate) ttl: Option<DurationArg>,
    pub(crate) stale_for: Option<(DurationArg, Span)>,
    pub(crate) category: Option<LitStr>,
    pub(crate) key: Option<Expr>,
    pub(crate) cache: Option<Expr>,
    pub(crate) tags: Vec<Expr>,
    pub(crate) invalidate_on: Vec<LitStr>,
    /// Where `cache_err` was switched on.
    pub(crate) cache_err: Option<Span>,
    /// Where `cache_none` was switched on.
    pub(crate) cache_none: Option<Span>,
    seen: Vec<String>,
}

impl Attributes {
    /// Parses the attribute's arguments (the tokens inside `#[cached(...)]`).
    pub(crate) fn parse(args: TokenStream) -> syn::Result<Self> {
        let mut attrs = Attributes::default();
        let parser = syn::meta::parser(|meta| attrs.parse_one(meta));
        parser.parse2(args)?;
        if let (Some((_, span)), None) = (&attrs.stale_for, &attrs.ttl) {
            return Err(syn::Error::new(
                *span,
                "`stale_for` needs a `ttl`: an entry can only be stale after it expires",
            ));
        }
        Ok(attrs)
    }

    fn parse_one(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(ident) = meta.path.get_ident() else {
            return Err(meta.error(format!("unknown attribute; expected one of: {NAMES}")));
        };
        let name = ident.to_string();
        if self.seen.contains(&name) {
            return Err(meta.error(format!("duplicate `{name}`")));
        }
        match name.as_str() {
            "ttl" => self.ttl = Some(duration(&meta, "ttl")?),
            "stale_for" => self.stale_for = Some((duration(&meta, "stale_for")?, meta.path.span())),
            "category" => self.category = Some(category(&meta)?),
            "key" => {
                self.key = Some(value(&meta, "key", "key = <an expression over the arguments>")?)
            }
            "cache" => self.cache = Some(cache(&meta)?),
            "tags" => self.tags = tags(&meta)?,
            "invalidate_on" => self.invalidate_on = events(&meta)?,
            "cache_err" => self.cache_err = flag(&meta, "cache_err")?.then(|| meta.path.span()),
            "cache_none" => self.cache_none = flag(&meta, "cache_none")?.then(|| meta.path.span()),
            "key_func" => {
                return Err(meta.error(
                    "`key_func` is called `key` here: key = <an expression over the arguments>",
                ))
            }
            "skip" => {
                return Err(
                    meta.error("`skip` goes on an argument: `#[cached(skip)] client: &Client`")
                )
            }
            other => {
                return Err(
                    meta.error(format!("unknown attribute `{other}`; expected one of: {NAMES}"))
                )
            }
        }
        self.seen.push(name);
        Ok(())
    }
}

/// The expression after `name =`, with a message showing the form when `=` is missing.
fn value(meta: &ParseNestedMeta<'_>, name: &str, form: &str) -> syn::Result<Expr> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("`{name}` needs a value: {form}")));
    }
    meta.value()?.parse()
}

fn duration(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<DurationArg> {
    let form = format!("{name} = 3600 (seconds) or {name} = Duration::from_secs(3600)");
    let expr = value(meta, name, &form)?;
    match &expr {
        Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => {
            let secs: u64 = int.base10_parse()?;
            if secs == 0 {
                return Err(syn::Error::new(
                    int.span(),
                    format!("`{name}` must be at least 1 second"),
                ));
            }
            Ok(DurationArg::Secs(secs, int.span()))
        }
        Expr::Lit(ExprLit { lit: Lit::Float(f), .. }) => Err(syn::Error::new(
            f.span(),
            format!("`{name}` takes whole seconds; for fractions write {name} = Duration::from_millis(..)"),
        )),
        Expr::Lit(lit) => Err(syn::Error::new(
            lit.span(),
            format!("`{name}` takes seconds or a `Duration`: {form}"),
        )),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => Err(syn::Error::new(
            unary.span(),
            format!("`{name}` cannot be negative"),
        )),
        _ => Ok(DurationArg::Expr(Box::new(expr))),
    }
}

fn category(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let expr = value(meta, "category", "category = \"model_responses\"")?;
    let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = expr else {
        return Err(syn::Error::new(
            expr.span(),
            "`category` takes a string literal: category = \"model_responses\"",
        ));
    };
    check_category(&lit.value()).map_err(|why| syn::Error::new(lit.span(), why))?;
    Ok(lit)
}

/// The cache's rules for a category (`aurelis_cache_core::key`), checked at compile time.
fn check_category(category: &str) -> Result<(), String> {
    if category.is_empty() {
        return Err("`category` is empty".into());
    }
    if category.len() > MAX_CATEGORY_LEN {
        return Err(format!(
            "`category` is {} bytes, longer than the maximum of {MAX_CATEGORY_LEN}",
            category.len()
        ));
    }
    if category.starts_with('@') {
        return Err("categories starting with `@` are reserved for the cache's own keys".into());
    }
    if let Some(c) = category.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, ':' | '*' | '?' | '[' | ']' | '\\')
    }) {
        return Err(format!(
            "`category` holds {c:?}; white space, control characters and `: * ? [ ] \\` are not allowed (use `.` or `_` as a separator)"
        ));
    }
    Ok(())
}

fn cache(meta: &ParseNestedMeta<'_>) -> syn::Result<Expr> {
    let expr = value(meta, "cache", "cache = self.cache or cache = *CACHE")?;
    if let Expr::Lit(lit) = &expr {
        return Err(syn::Error::new(
            lit.span(),
            "`cache` takes an expression giving the cache (a `Cache`, `&Cache` or `Arc<Cache>`), for example cache = self.cache",
        ));
    }
    Ok(expr)
}

fn tags(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Expr>> {
    let expr = value(meta, "tags", "tags = [\"users\", format!(\"user:{user_id}\")]")?;
    let Expr::Array(array) = expr else {
        return Err(syn::Error::new(
            expr.span(),
            "`tags` takes a list: tags = [\"users\", format!(\"user:{user_id}\")]",
        ));
    };
    Ok(array.elems.into_iter().collect())
}

fn events(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<LitStr>> {
    let form = "invalidate_on = [\"model_config_updated\"]";
    let expr = value(meta, "invalidate_on", form)?;
    let Expr::Array(array) = expr else {
        return Err(syn::Error::new(
            expr.span(),
            format!("`invalidate_on` takes a list of event names: {form}"),
        ));
    };
    if array.elems.is_empty() {
        return Err(syn::Error::new(
            array.span(),
            format!("`invalidate_on` names no event: {form}"),
        ));
    }
    let mut events = Vec::new();
    for elem in array.elems {
        match elem {
            Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) if !lit.value().is_empty() => {
                events.push(lit)
            }
            Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => {
                return Err(syn::Error::new(lit.span(), "an event name cannot be empty"))
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "event names are string literals (they are registered at compile time)",
                ))
            }
        }
    }
    Ok(events)
}

/// A switch: `cache_err` alone or `cache_err = true` / `false`.
fn flag(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<bool> {
    if meta.input.peek(Token![=]) {
        let expr: Expr = meta.value()?.parse()?;
        return match expr {
            Expr::Lit(ExprLit { lit: Lit::Bool(b), .. }) => Ok(b.value),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{name}` is a switch: write `{name}` or `{name} = true`"),
            )),
        };
    }
    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        return Err(meta.error(format!("`{name}` is a switch: write `{name}` or `{name} = true`")));
    }
    Ok(true)
}

/// Removes the `#[cached(...)]` attributes of one argument; returns whether one said `skip`.
pub(crate) fn take_skip(attrs: &mut Vec<Attribute>) -> syn::Result<bool> {
    let mut skip = false;
    let mut result = Ok(());
    attrs.retain(|attr| {
        if !attr.path().is_ident("cached") {
            return true;
        }
        let parsed = match &attr.meta {
            syn::Meta::List(_) => attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    if skip {
                        return Err(meta.error("duplicate `skip`"));
                    }
                    skip = true;
                    Ok(())
                } else {
                    Err(meta.error(
                        "the only option of an argument is `skip`: #[cached(skip)] leaves it out of the key",
                    ))
                }
            }),
            _ => Err(syn::Error::new(
                attr.span(),
                "write #[cached(skip)] to leave an argument out of the key",
            )),
        };
        if let Err(e) = parsed {
            match &mut result {
                Ok(()) => result = Err(e),
                Err(first) => first.combine(e),
            }
        }
        false
    });
    result.map(|()| skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn err(tokens: TokenStream) -> String {
        match Attributes::parse(tokens) {
            Ok(_) => panic!("parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_every_attribute() {
        let attrs = Attributes::parse(quote! {
            ttl = 3600, category = "models", key = user_id, cache = self.cache,
            tags = ["a", format!("b:{x}")], invalidate_on = ["e1", "e2"],
            stale_for = Duration::from_secs(60), cache_err, cache_none = false
        })
        .unwrap();
        assert!(matches!(attrs.ttl, Some(DurationArg::Secs(3600, _))));
        assert!(matches!(attrs.stale_for, Some((DurationArg::Expr(_), _))));
        assert_eq!(attrs.category.unwrap().value(), "models");
        assert_eq!(attrs.tags.len(), 2);
        assert_eq!(attrs.invalidate_on.len(), 2);
        assert!(attrs.cache_err.is_some());
        assert!(attrs.cache_none.is_none());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(err(quote!(ttl = 0)).contains("at least 1 second"));
        assert!(err(quote!(ttl = "1h")).contains("seconds or a `Duration`"));
        assert!(err(quote!(ttl = 1.5)).contains("whole seconds"));
        assert!(err(quote!(ttl = -5)).contains("negative"));
        assert!(err(quote!(ttl)).contains("needs a value"));
        assert!(err(quote!(ttl = 1, ttl = 2)).contains("duplicate `ttl`"));
        assert!(err(quote!(tll = 1)).contains("unknown attribute `tll`"));
        assert!(err(quote!(key_func = x)).contains("called `key`"));
        assert!(err(quote!(category = "a:b")).contains("':'"));
        assert!(err(quote!(category = "@x")).contains("reserved"));
        assert!(err(quote!(category = models)).contains("string literal"));
        assert!(err(quote!(tags = "a")).contains("takes a list"));
        assert!(err(quote!(invalidate_on = "e")).contains("list of event names"));
        assert!(err(quote!(invalidate_on = [])).contains("no event"));
        assert!(err(quote!(invalidate_on = [name])).contains("string literals"));
        assert!(err(quote!(cache_err = 1)).contains("switch"));
        assert!(err(quote!(cache = "redis")).contains("expression giving the cache"));
        assert!(err(quote!(stale_for = 60)).contains("needs a `ttl`"));
        assert!(err(quote!(skip)).contains("goes on an argument"));
    }

    #[test]
    fn categories_follow_the_key_rules() {
        assert!(check_category("model_responses").is_ok());
        assert!(check_category("app.models.get").is_ok());
        for bad in ["", "a b", "a*", "a[", "a\\b", "@model", &"x".repeat(129)] {
            assert!(check_category(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn skip_is_read_and_removed() {
        let mut attrs: Vec<Attribute> =
            vec![syn::parse_quote!(#[cached(skip)]), syn::parse_quote!(#[allow(unused)])];
        assert!(take_skip(&mut attrs).unwrap());
        assert_eq!(attrs.len(), 1);
        let mut attrs: Vec<Attribute> = vec![syn::parse_quote!(#[cached(ignore)])];
        assert!(take_skip(&mut attrs).unwrap_err().to_string().contains("only option"));
        let mut attrs: Vec<Attribute> = vec![syn::parse_quote!(#[cached])];
        assert!(take_skip(&mut attrs).is_err());
    }
}
