//! The `#[redis_cache]` attribute macro of **redis_cache**.
//!
//! Do not depend on this crate directly: depend on `cache-runtime`, which re-exports the attribute
//! and holds everything the generated code calls. The macro only parses, validates and expands:
//!
//! - `args`: the attribute's options (`ttl = 300, skip(db), ...`);
//! - `item`: the annotated function, its body kept as raw tokens;
//! - `signature`: what the annotated function looks like (async, parameters, return shape);
//! - `batch`: what a batch function (`batch = ids`) looks like: its keys and its map;
//! - `tags`: the `tags("product:{id}")` templates, checked against the parameters;
//! - `expand`: the code that routes the call through `::cache_runtime::__private` (`expand::batch`
//!   for a batch function).
//!
//! On any error the original function is emitted unchanged next to the `compile_error!`s, with
//! stand-ins for its companions, so the rest of the crate still type-checks (callers of
//! `{fn}_invalidate` included) and IDEs keep working.

use proc_macro::TokenStream;
use quote::ToTokens;

mod args;
mod batch;
mod errors;
mod expand;
mod item;
mod signature;
mod tags;

/// Memoize an `async fn` in Redis. See the `cache-runtime` crate for the full documentation.
#[proc_macro_attribute]
pub fn redis_cache(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let func: item::CachedFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(err) => {
            let err = syn::Error::new(
                err.span(),
                "#[redis_cache] applies to an `async fn` with a body (a free function or a method in an impl block)",
            );
            return with_original(item, err);
        }
    };
    let attr = proc_macro2::TokenStream::from(attr);
    let args = syn::parse::Parser::parse2(args::Args::parse_terminated, attr.clone());
    let result = args.and_then(|args| {
        let sig = signature::Analysis::new(&func, &args)?;
        Ok(expand::expand(&func, &args, &sig))
    });
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // The function as written, and its companions' signatures: callers of either
            // compile, so the attribute's error is the only one.
            let mut original = func.to_token_stream();
            original.extend(expand::stand_in_companions(&func, &attr));
            with_original(original, err)
        }
    }
}

/// Emits the user's item untouched plus the error, like tokio's macros: one error, not a cascade.
fn with_original(item: proc_macro2::TokenStream, err: syn::Error) -> TokenStream {
    let mut out = err.to_compile_error();
    out.extend(item);
    out.into()
}
