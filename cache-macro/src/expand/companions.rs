//! The companions generated next to a cached function (unless `companions = false`):
//!
//! - `{name}_invalidate(..)` takes only what makes the key: the parameters hashed into it (or
//!   those `key = ...` mentions), those `cache = ...` mentions, and `self` only when the key or
//!   the cache needs it; a method whose key does not is an associated function,
//!   `Repo::find_invalidate(id)`. A pool in `skip(...)` is not asked for;
//! - `{name}_refresh(..)` runs the function, so it takes all of its parameters;
//! - `{name}_stats()` returns the function's counters;
//! - `{name}_with_outcome(..)` (not for a batch function) makes the call and returns its value
//!   with how it was answered, so it takes all of the function's parameters.
//!
//! When the attribute is in error, stand-ins with the same signatures keep their callers
//! compiling, so the attribute's error is the only one.

use std::collections::BTreeSet;

use proc_macro2::{TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{FnArg, GenericParam, Ident, Pat, Signature};

use crate::args::Args;
use crate::item::CachedFn;

/// What the key is made of, as far as the companions' parameters are concerned.
pub(super) struct KeyInputs {
    skip: BTreeSet<String>,
    /// With `key = EXPR`: the identifiers it mentions (only those parameters make the key).
    key_mentions: Option<BTreeSet<String>>,
    /// The identifiers `cache = EXPR` mentions: the cache the entry is removed from.
    cache_mentions: BTreeSet<String>,
    include_self: bool,
}

impl KeyInputs {
    pub(super) fn of(args: &Args) -> KeyInputs {
        KeyInputs {
            skip: args.skip.iter().map(Ident::to_string).collect(),
            key_mentions: args.key.as_ref().map(|key| mentions(quote!(#key))),
            cache_mentions: args
                .cache
                .as_ref()
                .map_or_else(BTreeSet::new, |cache| mentions(quote!(#cache))),
            include_self: args.include_self.is_some(),
        }
    }

    /// The same, read from the attribute's raw tokens, which did not parse: a best effort, so
    /// that the stand-ins' signatures match what the callers were written against.
    fn of_raw(attr: &TokenStream) -> KeyInputs {
        let mut inputs = KeyInputs {
            skip: BTreeSet::new(),
            key_mentions: None,
            cache_mentions: BTreeSet::new(),
            include_self: false,
        };
        for option in split_options(attr) {
            let name = match option.first() {
                Some(TokenTree::Ident(name)) => name.to_string(),
                _ => continue,
            };
            let value: TokenStream = option.iter().skip(2).cloned().collect();
            match (name.as_str(), option.get(1)) {
                ("skip", Some(TokenTree::Group(group))) => {
                    inputs.skip = mentions(group.stream());
                }
                ("key", Some(TokenTree::Punct(p))) if p.as_char() == '=' => {
                    inputs.key_mentions = Some(mentions(value));
                }
                ("cache", Some(TokenTree::Punct(p))) if p.as_char() == '=' => {
                    inputs.cache_mentions = mentions(value);
                }
                ("include_self", _) => inputs.include_self = true,
                _ => {}
            }
        }
        inputs
    }

    /// Whether the parameter `name` is needed to find the entry.
    fn needs(&self, name: &str) -> bool {
        if self.cache_mentions.contains(name) {
            return true;
        }
        match &self.key_mentions {
            Some(mentioned) => mentioned.contains(name),
            None => !self.skip.contains(name),
        }
    }

    /// Whether `self` is needed to find the entry.
    fn needs_self(&self) -> bool {
        self.include_self || self.mentions_self()
    }

    fn mentions_self(&self) -> bool {
        self.cache_mentions.contains("self")
            || self
                .key_mentions
                .as_ref()
                .is_some_and(|mentioned| mentioned.contains("self"))
    }
}

/// The attribute's options, each as its tokens (split at top-level commas).
fn split_options(attr: &TokenStream) -> Vec<Vec<TokenTree>> {
    let mut options = vec![Vec::new()];
    for token in attr.clone() {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => options.push(Vec::new()),
            _ => options.last_mut().expect("one at least").push(token),
        }
    }
    options
}

/// Every identifier in `tokens`, at any depth (`self` included).
fn mentions(tokens: TokenStream) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for token in tokens {
        match token {
            TokenTree::Ident(ident) => {
                found.insert(ident.to_string());
            }
            TokenTree::Group(group) => found.extend(mentions(group.stream())),
            _ => {}
        }
    }
    found
}

/// The signatures of `{name}_invalidate`, `{name}_refresh` and `{name}_stats` (a batch
/// function's `_invalidate` returns how many entries it removed).
pub(super) fn companion_sigs(
    fn_sig: &Signature,
    batch: bool,
    inputs: &KeyInputs,
) -> (Signature, Signature, Signature) {
    let name = &fn_sig.ident;
    let mut invalidate = companion_sig(fn_sig, format_ident!("{name}_invalidate"));
    // Judged on the parameters as written (the companion names `_` for forwarding).
    invalidate.inputs = fn_sig
        .inputs
        .iter()
        .zip(invalidate.inputs)
        .filter(|(written, _)| match written {
            FnArg::Receiver(_) => inputs.needs_self(),
            FnArg::Typed(pat_type) => match &*pat_type.pat {
                Pat::Ident(p) => inputs.needs(&p.ident.to_string()),
                // `_`: never part of the key.
                _ => false,
            },
        })
        .map(|(_, input)| input)
        .collect::<Punctuated<_, _>>();
    // `async` as the function is: a blocking function's companions block too.
    invalidate.asyncness = fn_sig.asyncness;
    invalidate.output = match batch {
        false => syn::parse_quote!(-> ::core::result::Result<bool, ::redis_cached::CacheError>),
        true => syn::parse_quote!(-> ::core::result::Result<u64, ::redis_cached::CacheError>),
    };
    let refresh = companion_sig(fn_sig, format_ident!("{name}_refresh"));
    let mut stats = companion_sig(fn_sig, format_ident!("{name}_stats"));
    stats.inputs = Punctuated::new();
    stats.asyncness = None;
    stats.generics = syn::Generics::default();
    stats.output = syn::parse_quote!(-> ::redis_cached::FunctionStats);
    (invalidate, refresh, stats)
}

/// The signature of `{name}_with_outcome`: the function's parameters, its value and the call's
/// `CallOutcome`.
pub(super) fn with_outcome_sig(fn_sig: &Signature) -> Signature {
    let mut sig = companion_sig(fn_sig, format_ident!("{}_with_outcome", fn_sig.ident));
    let value = match &fn_sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    sig.output = syn::parse_quote!(-> (#value, ::redis_cached::CallOutcome));
    sig
}

/// The function's signature under another name (spanned on the function's, as `format_ident!`
/// gives it), each parameter bound to a plain name (`mut` and `ref` dropped; `_` named), so it
/// can be forwarded.
fn companion_sig(fn_sig: &Signature, name: Ident) -> Signature {
    let mut sig = fn_sig.clone();
    sig.ident = name;
    // A companion reads Redis: never `const` (a `const fn` is an error of its own).
    sig.constness = None;
    for (i, input) in sig.inputs.iter_mut().enumerate() {
        if let FnArg::Typed(pat_type) = input {
            match &mut *pat_type.pat {
                Pat::Ident(p) => {
                    p.by_ref = None;
                    p.mutability = None;
                }
                other => {
                    let unused = format_ident!("__redis_cache_unused_{i}");
                    *other = syn::parse_quote!(#unused);
                }
            }
        }
    }
    sig
}

/// The body of `{name}_stats()`: the counters of the function `spec` describes.
pub(super) fn stats_body(spec: &TokenStream, has_receiver: bool) -> TokenStream {
    let rt = quote!(::redis_cached::__private);
    let self_type = match has_receiver {
        true => quote!(::core::option::Option::Some(
            ::core::any::type_name::<Self>()
        )),
        false => quote!(::core::option::Option::None),
    };
    quote! {
        static __REDIS_CACHE_SPEC: #rt::SiteSpec = #spec;
        #rt::function_stats(&__REDIS_CACHE_SPEC, #self_type)
    }
}

/// What stands in for the companions when the attribute is in error: the same signatures, so
/// that their callers compile and the attribute's error is the only one. `_refresh` calls the
/// function (emitted unchanged next to the error), the others are never reached. Nothing when
/// the attribute's tokens say `companions = false` (it may not have parsed).
pub(crate) fn stand_in_companions(func: &CachedFn, attr: &TokenStream) -> TokenStream {
    if says_no_companions(attr.clone()) {
        return TokenStream::new();
    }
    let fn_sig = &func.sig;
    let cfgs = cfgs(&func.outer_attrs);
    let vis = &func.vis;
    let inputs = KeyInputs::of_raw(attr);
    let batch = says_batch(attr.clone());
    let (invalidate_sig, refresh_sig, stats_sig) = companion_sigs(fn_sig, batch, &inputs);
    let call = forward_call(fn_sig, &refresh_sig, fn_sig.receiver().is_some());
    let call = match fn_sig.asyncness {
        Some(_) => quote!(#call.await),
        None => call,
    };
    let unreachable = quote!(::core::unreachable!(
        "#[redis_cache] did not expand: see its compile error"
    ));
    // Not for a batch function, nor for an `impl Trait` return (an error of its own, and the
    // stand-in's body could not name the type).
    let impl_return = match &fn_sig.output {
        syn::ReturnType::Type(_, ty) => mentions_impl(quote!(#ty)),
        syn::ReturnType::Default => false,
    };
    let with_outcome = match batch || impl_return {
        true => TokenStream::new(),
        false => {
            let sig = with_outcome_sig(fn_sig);
            quote! {
                #(#cfgs)*
                #[allow(unused_variables, clippy::too_many_arguments, clippy::used_underscore_binding)]
                #vis #sig {
                    #unreachable
                }
            }
        }
    };
    quote! {
        #(#cfgs)*
        #[allow(unused_variables, clippy::too_many_arguments, clippy::used_underscore_binding)]
        #vis #invalidate_sig {
            #unreachable
        }

        #(#cfgs)*
        #[allow(clippy::too_many_arguments)]
        #vis #refresh_sig {
            #call
        }

        #(#cfgs)*
        #vis #stats_sig {
            #unreachable
        }

        #with_outcome
    }
}

/// Whether the attribute's raw tokens contain `batch = ...`.
fn says_batch(attr: TokenStream) -> bool {
    let tokens: Vec<_> = attr.into_iter().collect();
    tokens.windows(2).any(|w| {
        matches!(&w[0], TokenTree::Ident(i) if i == "batch")
            && matches!(&w[1], TokenTree::Punct(p) if p.as_char() == '=')
    })
}

/// Whether the attribute's raw tokens contain `companions = false`.
fn says_no_companions(attr: TokenStream) -> bool {
    let tokens: Vec<_> = attr.into_iter().collect();
    tokens.windows(3).any(|w| {
        matches!(&w[0], TokenTree::Ident(i) if i == "companions")
            && matches!(&w[1], TokenTree::Punct(p) if p.as_char() == '=')
            && matches!(&w[2], TokenTree::Ident(i) if i == "false")
    })
}

/// The function's `#[cfg]`s: companions follow them, so they exist exactly when it does.
pub(super) fn cfgs(attrs: &[syn::Attribute]) -> Vec<&syn::Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
        .collect()
}

/// The call of the original function with the companion's parameters.
pub(super) fn forward_call(
    fn_sig: &Signature,
    companion: &Signature,
    has_receiver: bool,
) -> TokenStream {
    let name = &fn_sig.ident;
    let args = companion.inputs.iter().filter_map(|input| match input {
        FnArg::Typed(pat_type) => match &*pat_type.pat {
            Pat::Ident(p) => Some(&p.ident),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    });
    // Explicit generics, so parameters that only appear in the return type are still known;
    // impossible (and unneeded) when a parameter is `impl Trait`.
    let impl_trait_arg = fn_sig.inputs.iter().any(|input| match input {
        FnArg::Typed(pat_type) => {
            let ty = &pat_type.ty;
            mentions_impl(quote!(#ty))
        }
        FnArg::Receiver(_) => false,
    });
    let generics: Vec<_> = fn_sig
        .generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            GenericParam::Const(c) => Some(&c.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    let turbofish = (!generics.is_empty() && !impl_trait_arg).then(|| quote!(::<#(#generics),*>));
    if has_receiver {
        quote!(Self::#name #turbofish(self, #(#args),*))
    } else {
        quote!(#name #turbofish(#(#args),*))
    }
}

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}
