//! The code that replaces the annotated function's body.
//!
//! The signature is kept token for token; the body moves, unchanged, into an `async move` block
//! that the runtime polls only on a miss. Everything generated reaches the runtime through
//! `::cache_runtime::__private`, so the runtime's internals can change without breaking users.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, ReturnType};

use crate::args::Args;
use crate::signature::{Analysis, Policy};

pub(crate) fn expand(func: &ItemFn, args: &Args, sig: &Analysis) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig: fn_sig,
        block,
    } = func;
    let rt = quote!(::cache_runtime::__private);

    let function = fn_sig.ident.to_string();
    let name = match &args.name {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let ttl = args.ttl;
    let none_ttl = args.none_ttl.map_or(0, |(secs, _)| secs);
    let version = args.version;
    let stale = args.stale;
    let early_refresh = args.early_refresh;
    let lock = args.lock;
    let jitter = match args.jitter {
        Some(j) => quote!(::core::option::Option::Some(#j)),
        None => quote!(::core::option::Option::None),
    };
    let (ret, value_type) = match &fn_sig.output {
        ReturnType::Default => (quote!(()), "()".to_string()),
        ReturnType::Type(_, ty) => (quote!(#ty), normalized(&quote!(#ty))),
    };
    let policy = match sig.policy {
        Policy::Plain => quote!(Plain),
        Policy::OkOnly => quote!(OkOnly),
        Policy::SomeOnly => quote!(SomeOnly),
        Policy::SomeOrNone => quote!(SomeOrNone),
    };
    let self_type = sig
        .has_receiver
        .then(|| quote!(__key.method_of(::core::any::type_name::<Self>());));
    let type_params = sig
        .type_params
        .iter()
        .map(|t| quote!(__key.type_param(::core::any::type_name::<#t>());));
    let const_params = sig.const_params.iter().map(|c| quote!(__key.arg(&#c);));
    let include_self = args
        .include_self
        .map(|span| quote_spanned!(span=> __key.arg(self);));
    // Spanned on the parameter, so "not Serialize" points at it.
    let key_params = sig
        .key_params
        .iter()
        .map(|p| quote_spanned!(p.span()=> __key.arg(&#p);));
    // Spanned on the user's expression, so a wrong type points there.
    let cache = match &args.cache {
        Some(expr) => quote_spanned!(expr.span()=> let __redis_cache: &#rt::Cache = &(#expr);),
        None => quote!(let __redis_cache: &#rt::Cache = #rt::default_cache();),
    };

    quote! {
        #(#attrs)*
        #vis #fn_sig {
            static __REDIS_CACHE_SITE: #rt::Site = #rt::Site::new(#rt::SiteSpec {
                module: ::core::module_path!(),
                function: #function,
                name: #name,
                ttl_secs: #ttl,
                none_ttl_secs: #none_ttl,
                version: #version,
                value_type: #value_type,
                stale_secs: #stale,
                early_refresh: #early_refresh,
                jitter: #jitter,
                lock: #lock,
            });
            let __redis_cache_key = {
                let mut __key = #rt::KeyBuilder::new();
                #self_type
                #(#type_params)*
                #(#const_params)*
                #include_self
                #(#key_params)*
                __key.finish()
            };
            #cache
            #rt::cached::<#rt::#policy, #ret, _>(
                &__REDIS_CACHE_SITE,
                __redis_cache,
                __redis_cache_key,
                async move {
                    let __redis_cache_value: #ret = #block;
                    __redis_cache_value
                },
            )
            .await
        }
    }
}

/// The return type as written, without whitespace: it goes into the key's fingerprint, so it must
/// not depend on how a proc-macro2 version spaces tokens.
fn normalized(tokens: &TokenStream) -> String {
    tokens.to_string().split_whitespace().collect()
}
