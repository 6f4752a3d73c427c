//! The `#[redis_cache]` attribute macro of **redis_cache**.
//!
//! Do not depend on this crate directly: depend on `redis-cached`, which re-exports the attribute
//! and holds everything the generated code calls. The macro only parses, validates and expands:
//!
//! - `args`: the attribute's options (`ttl = 300, skip(db), ...`);
//! - `item`: the annotated function, its body kept as raw tokens;
//! - `signature`: what the annotated function looks like (async, parameters, return shape);
//! - `batch`: what a batch function (`batch = ids`) looks like: its keys and its map;
//! - `tags`: the `tags("product:{id}")` templates, checked against the parameters;
//! - `expand`: the code that routes the call through `::redis_cached::__private` (`expand::batch`
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

/// Memoizes an `async fn` (or a blocking `fn`) in Redis: the arguments (all but those in `skip`) are hashed into a
/// key; a hit returns the stored value without running the body, a miss runs it and stores its
/// value for `ttl` seconds. `Err` and `None` are not stored. When Redis is down, slow or holds
/// garbage, the body runs: callers never see a cache error.
///
/// ```ignore
/// use redis_cached::redis_cache;
///
/// #[redis_cache(ttl = 300, skip(db))]
/// async fn product(db: &Db, id: u64) -> Result<Product, DbError> {
///     db.load(id).await
/// }
/// // Generated next to it: product_invalidate(id), product_refresh(db, id), product_stats(),
/// // product_with_outcome(db, id).
/// ```
///
/// | option | meaning |
/// |---|---|
/// | `ttl = 300` | **required**: seconds an entry lives; or `"5m"` (`"90s"`, `"2h"`, `"1d"`, `"1h30m"`); or an expression (`u64` seconds or `Duration`, per call); or a closure over the value, `ttl = \|v: &T\| ...` |
/// | `skip(db, client)` | parameters left out of the key; every other one must be `Serialize` |
/// | `key = EXPR` | hash this `Serialize` expression instead of the arguments, `key = user.id` |
/// | `condition = EXPR` | a `bool`: `false` runs the function without the cache |
/// | `unless = \|v: &T\| ...` | `true`: return the value without storing it |
/// | `none_ttl = 30` | for `Option<T>`: store `None` too, for that long |
/// | `stale = 60` | serve an expired entry that long while one caller refreshes it |
/// | `refresh = "background"` | early and stale refreshes in a spawned task |
/// | `soft_timeout = "200ms"` | with `stale`: wait for a refresh that long, then serve the stale value |
/// | `early_refresh = false` | no probabilistic refresh before expiry |
/// | `jitter = 0.1` | shorten each TTL by a random fraction up to this |
/// | `lock = false` | never wait for another process computing the key |
/// | `local = 10_000` | keep up to N decoded values in the process (`Clone`), kept coherent by Redis |
/// | `local_ttl = 30` | serve a local copy at most that long without Redis's confirmation |
/// | `tags("product:{id}")` | tag the entry for `Cache::invalidate_tag`; `tags = \|v: &T\| iter` from the value |
/// | `batch = ids` | `ids: Vec<K>` (or a slice or set) in, `HashMap<K, V>` out: cached keys in one round trip, the function called with the others |
/// | `codec = "json"` | store this function's values in that codec (`bincode`, `postcard`, `json`, `msgpack`; its cargo feature must be on) instead of its cache's |
/// | `version = 2` | bump when the stored type changes shape: new keys |
/// | `name = "shop::product"` | the key's function segment, kept across renames |
/// | `cache = expr` | this `Cache` instead of the default (from `REDIS_URL`) |
/// | `include_self` | hash `self` into the key too |
/// | `companions = false` | no `{fn}_invalidate` / `{fn}_refresh` / `{fn}_stats` / `{fn}_with_outcome` (trait impls) |
///
/// An `async fn`'s I/O needs a Tokio runtime: called outside one, the function runs uncached
/// (said once on stderr). A blocking `fn` (all options but `refresh = "background"` and
/// `soft_timeout`; its companions block too) works from any thread, its I/O on the cache's own
/// I/O thread. The `redis-cached` crate documents each option in full.
#[proc_macro_attribute]
pub fn redis_cache(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let func: item::CachedFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(err) => {
            let err = syn::Error::new(
                err.span(),
                "#[redis_cache] applies to a function with a body, `async` or not (a free function or a method in an impl block)",
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
