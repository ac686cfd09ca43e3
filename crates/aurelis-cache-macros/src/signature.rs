//! What the macro needs to know about the function: async or not, its receiver, its
//! arguments (plain names, skipped or not) and the kind of its return type.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr;

/// How the return type is cached, read from the type as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Any other type: every result is cached.
    Value,
    /// A path ending in `Result`: only `Ok` values are cached (unless `cache_err`).
    Result,
    /// A path ending in `Option`: only `Some` values are cached (unless `cache_none`).
    Option,
}

/// One argument after the receiver.
pub(crate) struct Arg {
    /// Its name (the pattern is a plain identifier).
    pub(crate) ident: Ident,
    /// Whether `#[cached(skip)]` leaves it out of the key.
    pub(crate) skip: bool,
}

/// The checked function.
pub(crate) struct Function {
    /// The function with the `#[cached(skip)]` markers removed.
    pub(crate) item: ItemFn,
    /// Whether it takes `&self` or `&mut self`.
    pub(crate) method: bool,
    /// Whether it takes `&mut self`.
    pub(crate) mut_receiver: bool,
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
}

impl Function {
    /// Checks `item`; the markers are removed from it whatever the outcome, so that it can be
    /// emitted as it is next to the errors.
    pub(crate) fn analyse(item: &mut ItemFn) -> syn::Result<Function> {
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(first) => first.combine(e),
            None => errors = Some(e),
        };
        let sig = &item.sig;
        if sig.asyncness.is_none() {
            push(syn::Error::new(
                sig.fn_token.span(),
                "#[cached] goes on an `async fn` (the cache is async)",
            ));
        }
        if let Some(param) =
            sig.generics.params.iter().find(|p| !matches!(p, GenericParam::Lifetime(_)))
        {
            push(syn::Error::new(
                param.span(),
                "#[cached] functions cannot have type or const parameters: the cached value and the key need concrete types",
            ));
        }
        if let Some(u) = &sig.unsafety {
            push(syn::Error::new(u.span(), "#[cached] functions cannot be `unsafe`"));
        }
        if let Some(v) = &sig.variadic {
            push(syn::Error::new(v.span(), "#[cached] functions cannot be variadic"));
        }
        let output = output_kind(&sig.output);
        let mut method = false;
        let mut mut_receiver = false;
        let mut args = Vec::new();
        for (i, input) in item.sig.inputs.iter_mut().enumerate() {
            match input {
                FnArg::Receiver(receiver) => {
                    if receiver.reference.is_none() || receiver.colon_token.is_some() {
                        push(syn::Error::new(
                            receiver.span(),
                            "#[cached] methods take `&self` or `&mut self`",
                        ));
                    }
                    if let Some(attr) = receiver.attrs.iter().find(|a| a.path().is_ident("cached"))
                    {
                        push(syn::Error::new(
                            attr.span(),
                            "`self` is never part of the key; #[cached(skip)] is not needed",
                        ));
                    }
                    receiver.attrs.retain(|a| !a.path().is_ident("cached"));
                    method = i == 0;
                    mut_receiver = receiver.mutability.is_some();
                }
                FnArg::Typed(typed) => {
                    let skip = match attr::take_skip(&mut typed.attrs) {
                        Ok(skip) => skip,
                        Err(e) => {
                            push(e);
                            false
                        }
                    };
                    match &*typed.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                            args.push(Arg { ident: p.ident.clone(), skip });
                        }
                        other => push(syn::Error::new(
                            other.span(),
                            "#[cached] needs a plain name for each argument (it names the argument in the key); destructure inside the body",
                        )),
                    }
                }
            }
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(Function { item: item.clone(), method, mut_receiver, args, output }),
        }
    }

    /// The span to blame for trait errors about the cached value: the return type.
    pub(crate) fn output_span(&self) -> Span {
        match &self.item.sig.output {
            ReturnType::Default => self.item.sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        }
    }
}

fn output_kind(output: &ReturnType) -> Output {
    let ReturnType::Type(_, ty) = output else { return Output::Value };
    let Type::Path(path) = &**ty else { return Output::Value };
    match path.path.segments.last().map(|s| s.ident.to_string()).as_deref() {
        Some("Result") => Output::Result,
        Some("Option") => Output::Option,
        _ => Output::Value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn return_kinds_are_read_from_the_written_type() {
        let kind = |ty: ReturnType| output_kind(&ty);
        assert_eq!(kind(parse_quote!(-> Result<u32, E>)), Output::Result);
        assert_eq!(kind(parse_quote!(-> anyhow::Result<u32>)), Output::Result);
        assert_eq!(kind(parse_quote!(-> std::option::Option<u32>)), Output::Option);
        assert_eq!(kind(parse_quote!(-> Vec<u32>)), Output::Value);
        assert_eq!(kind(parse_quote!()), Output::Value);
    }

    #[test]
    fn arguments_receivers_and_skips() {
        let mut item: ItemFn = parse_quote! {
            async fn f(&self, a: u32, #[cached(skip)] #[allow(unused)] b: &str, mut c: String) -> u32 { 1 }
        };
        let f = Function::analyse(&mut item).unwrap();
        assert!(f.method);
        let names: Vec<_> = f.args.iter().map(|a| (a.ident.to_string(), a.skip)).collect();
        assert_eq!(names, [("a".into(), false), ("b".into(), true), ("c".into(), false)]);
        // The marker is gone, other attributes stay.
        let FnArg::Typed(b) = &f.item.sig.inputs[2] else { panic!() };
        assert_eq!(b.attrs.len(), 1);
    }

    #[test]
    fn refusals() {
        let check = |mut item: ItemFn| match Function::analyse(&mut item) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        assert!(check(parse_quote!(
            fn f() -> u32 {
                1
            }
        ))
        .contains("async fn"));
        assert!(check(parse_quote!(
            async fn f<T>(t: T) -> u32 {
                1
            }
        ))
        .contains("type or const"));
        assert!(check(parse_quote!(
            async fn f(self) -> u32 {
                1
            }
        ))
        .contains("&self"));
        assert!(check(parse_quote!(
            async fn f((a, b): (u8, u8)) -> u32 {
                1
            }
        ))
        .contains("plain name"));
        let mut ok: ItemFn = parse_quote!(
            async fn f<'a>(a: &'a str) -> u32 {
                1
            }
        );
        assert!(Function::analyse(&mut ok).is_ok());
    }
}
