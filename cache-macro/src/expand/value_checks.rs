//! The check of the value type, made where the generated code builds what the runtime needs for
//! it (its codec, and with `local = N` the table of its local copies): through a function of its
//! own whose bound is a trait of its own, so that a type that does not qualify is one error,
//! spanned on the return type, naming the user's type, what it lacks and the fix, and never a
//! bound or a file of the runtime crate.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;

/// A statement binding `__redis_cache_codec` (the runtime's `codec` of `stored`, made by `make`:
/// `ValueCodec` / `value_codec`, or a batch's `ItemCodec`) and, when `local`, also
/// `__redis_cache_copies` (its `LocalCopies`); and the arguments that pass them on.
pub(super) fn checked(
    span: Span,
    stored: &TokenStream,
    (codec, make): (TokenStream, TokenStream),
    local: bool,
) -> (TokenStream, TokenStream) {
    let rt = quote_spanned!(span=> ::redis_cached::__private);
    if !local {
        let binding = quote_spanned! {span=>
            let __redis_cache_codec = {
                #[diagnostic::on_unimplemented(
                    message = "`{Self}` cannot be cached: a cached value must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
                    label = "the value stored in Redis",
                    note = "derive `serde::Serialize` and `serde::Deserialize` for it; borrowed types such as `&str` cannot be decoded from Redis, return an owned type such as `String`"
                )]
                trait __RedisCacheValue: #rt::CacheValue {}
                #[diagnostic::do_not_recommend]
                impl<T: #rt::CacheValue> __RedisCacheValue for T {}
                fn __redis_cache_codec<T: __RedisCacheValue>() -> #rt::#codec<T> {
                    #rt::#make::<T>()
                }
                __redis_cache_codec::<#stored>()
            };
        };
        return (binding, quote_spanned!(span=> __redis_cache_codec));
    }
    // One trait for everything a value kept locally needs: a type lacking any of it is one error
    // (and one without `Clone` gets no suggestion to return a reference, which is not
    // `DeserializeOwned`).
    let binding = quote_spanned! {span=>
        let (__redis_cache_codec, __redis_cache_copies) = {
            #[diagnostic::on_unimplemented(
                message = "`{Self}` cannot be cached with `local = N`: the value must implement `Clone`, `serde::Serialize` and `serde::de::DeserializeOwned` (and be `Send + Sync + 'static`)",
                label = "the value stored in Redis, and cloned out of the local tier",
                note = "derive `Clone`, `serde::Serialize` and `serde::Deserialize` for it, or remove `local = ...` to read every hit from Redis"
            )]
            trait __RedisCacheLocalValue:
                #rt::CacheValue
                + ::core::clone::Clone
                + ::core::marker::Send
                + ::core::marker::Sync
                + 'static
            {
            }
            #[diagnostic::do_not_recommend]
            impl<T> __RedisCacheLocalValue for T where
                T: #rt::CacheValue
                    + ::core::clone::Clone
                    + ::core::marker::Send
                    + ::core::marker::Sync
                    + 'static
            {
            }
            fn __redis_cache_local<T: __RedisCacheLocalValue>()
                -> (#rt::#codec<T>, #rt::LocalCopies<T>)
            {
                (#rt::#make::<T>(), #rt::LocalCopies::new())
            }
            __redis_cache_local::<#stored>()
        };
    };
    (
        binding,
        quote_spanned!(span=> __redis_cache_codec, __redis_cache_copies),
    )
}

/// What one check says when its bound is not met.
pub(super) struct Diagnostic<'a> {
    pub message: &'a str,
    pub label: &'a str,
    pub note: &'a str,
    /// The value checked is `self` (its type named `Self`): the error also says which part of the
    /// bound `Self` lacks, with rustc's own suggestion for it (deriving `Clone`). Otherwise the
    /// message alone speaks.
    pub of_self: bool,
}

/// `{ ... }` calling `call` (an expression over `value`, a `&T`, and the `params` before it)
/// through a function whose bound `T: bound` is a trait of its own carrying `diagnostic`: a `T`
/// without it is one error at `span`, in the user's code. Evaluates to what `call` returns, of
/// type `ret` (which may name `T`); `args` are passed for `params`, then `value`.
pub(super) fn through_bound(
    span: Span,
    diagnostic: &Diagnostic<'_>,
    bound: TokenStream,
    (params, args): (TokenStream, TokenStream),
    (ret, call): (Option<TokenStream>, TokenStream),
    value: TokenStream,
) -> TokenStream {
    let Diagnostic {
        message,
        label,
        note,
        of_self,
    } = diagnostic;
    let recommend = (!of_self).then(|| quote_spanned!(span=> #[diagnostic::do_not_recommend]));
    // Named: rustc would otherwise suggest passing `&&self`.
    let turbofish = of_self.then(|| quote_spanned!(span=> ::<Self>));
    let ret = ret.map(|ret| quote_spanned!(span=> -> #ret));
    quote_spanned! {span=>
        {
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            trait __RedisCacheBound: #bound {}
            #recommend
            impl<T: #bound + ?::core::marker::Sized> __RedisCacheBound for T {}
            fn __redis_cache_checked<T: __RedisCacheBound + ?::core::marker::Sized>(
                #params
                value: &T,
            ) #ret {
                #call
            }
            __redis_cache_checked #turbofish (#args #value)
        }
    }
}

/// `value` (a reference to an argument, or `&self`) checked to move into a background refresh:
/// `Send + 'static`.
/// `option` names the attribute's option that asks for it.
pub(super) fn background_arg(span: Span, value: TokenStream, option: &str) -> TokenStream {
    let message = format!(
        "`{{Self}}` cannot be moved into a background refresh: with {option} every parameter must be `Send + 'static`"
    );
    let note = format!(
        "take an owned, thread-safe value or handle (`Arc<T>`, a connection pool), or remove {option}"
    );
    let check = through_bound(
        span,
        &Diagnostic {
            message: &message,
            label: "the spawned refresh owns this argument",
            note: &note,
            of_self: false,
        },
        quote_spanned!(span=> ::core::marker::Send + 'static),
        (TokenStream::new(), TokenStream::new()),
        (None, quote_spanned!(span=> { let _ = value; })),
        value,
    );
    quote_spanned!(span=> #check;)
}

/// The clone of `self` a background refresh of a method taking `&self` runs on, checked:
/// `Self: Clone + Send + Sync + 'static`. `option` names the attribute's option that asks for it.
pub(super) fn clone_self(span: Span, option: &str) -> TokenStream {
    let message = format!(
        "`{{Self}}` cannot be cloned into a background refresh: with {option} a method's `Self` must be `Clone + Send + Sync + 'static`"
    );
    let note = format!(
        "derive `Clone` for a handle whose fields are cheap to clone (`Arc<T>`, a connection pool), or remove {option}"
    );
    through_bound(
        span,
        &Diagnostic {
            message: &message,
            label: "the spawned refresh runs on a clone of `self`",
            note: &note,
            of_self: true,
        },
        quote_spanned!(span=> ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static),
        (TokenStream::new(), TokenStream::new()),
        (
            Some(quote_spanned!(span=> T)),
            quote_spanned!(span=> ::core::clone::Clone::clone(value)),
        ),
        quote_spanned!(span=> self),
    )
}

/// `ttl = EXPR`'s value, checked to be seconds (`u64`) or a `Duration`, as a `Duration`.
pub(super) fn ttl(span: Span, expr: TokenStream) -> TokenStream {
    let rt = quote_spanned!(span=> ::redis_cached::__private);
    quote_spanned! {span=>
        {
            #[diagnostic::on_unimplemented(
                message = "`ttl = ...` must evaluate to seconds (`u64`) or a `std::time::Duration`, not `{Self}`",
                label = "the TTL of this call",
                note = "for a TTL taken from the value, write a closure: `ttl = |v: &T| Duration::from_secs(...)`"
            )]
            trait __RedisCacheTtl: #rt::IntoTtl {}
            #[diagnostic::do_not_recommend]
            impl<T: #rt::IntoTtl> __RedisCacheTtl for T {}
            fn __redis_cache_ttl<T: __RedisCacheTtl>(ttl: T) -> ::core::time::Duration {
                #rt::IntoTtl::into_ttl(ttl)
            }
            __redis_cache_ttl(#expr)
        }
    }
}
