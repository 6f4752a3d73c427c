//! The code that replaces the annotated function's body, and its two companions.
//!
//! The signature is kept token for token; the body moves, unchanged, into an `async move` block
//! that the runtime polls only on a miss. Everything generated reaches the runtime through
//! `::redis_cached::__private`, so the runtime's internals can change without breaking users.
//!
//! Next to the function (unless `companions = false`), with the same parameters:
//! - `{name}_invalidate(..)`: removes the entry of those arguments. It derives the key with the
//!   same generated code as the function, from the same options, so the two cannot drift;
//! - `{name}_refresh(..)`: calls the function as a write-through refresh (it recomputes and
//!   stores instead of reading), so the body exists once.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, Pat, ReturnType, Signature};

mod batch;
mod companions;
mod value_checks;

pub(crate) use companions::stand_in_companions;
use companions::{KeyInputs, cfgs, companion_sigs, forward_call, with_outcome_sig};

use crate::args::{Args, SoftTimeout, TtlRule};
use crate::item::CachedFn;
use crate::signature::{Analysis, Policy};

pub(crate) fn expand(func: &CachedFn, args: &Args, sig: &Analysis) -> TokenStream {
    let CachedFn { sig: fn_sig, .. } = func;
    let block = func.block();
    let rt = quote!(::redis_cached::__private);
    if let Some(batch) = &sig.batch {
        return batch::expand(func, args, sig, batch);
    }
    let spec = site_spec(fn_sig, args, sig);
    let key = call_key(args, sig, true);
    // `condition = EXPR`: evaluated first; `false` skips the key and the cache (spanned on the
    // expression, so a non-`bool` points at it).
    let self_type = match sig.has_receiver {
        true => quote!(::core::option::Option::Some(
            ::core::any::type_name::<Self>()
        )),
        false => quote!(::core::option::Option::None),
    };
    let guarded_key = match &args.condition {
        Some(condition) => {
            let check =
                quote_spanned!(condition.span()=> let __redis_cache_condition: bool = #condition;);
            quote! {
                {
                    #check
                    if __redis_cache_condition { #key } else { #rt::CallKey::bypassed(#self_type) }
                }
            }
        }
        None => key.clone(),
    };
    let cache = cache_handle(args);
    let ret = match &fn_sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let policy = match sig.policy {
        Policy::Plain => quote!(Plain),
        Policy::OkOnly => quote!(OkOnly),
        Policy::SomeOnly => quote!(SomeOnly),
        Policy::SomeOrNone => quote!(SomeOrNone),
    };

    let detached = args.detached();
    let stored = quote!(<#rt::#policy as #rt::Policy<#ret>>::Value);
    let (rule_bindings, rules) = rules(args, &stored);
    // With `local`, the value must also be `Clone` (the tier hands out copies).
    // Spanned on the return type: a value that cannot be stored (not `Serialize`, not
    // `Deserialize`, not `Clone` with `local`) is reported there.
    let ret_span = match &fn_sig.output {
        ReturnType::Default => fn_sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let rt_at_ret = quote_spanned!(ret_span=> ::redis_cached::__private);
    let entry = match &args.local {
        Some(_) => {
            quote_spanned!(ret_span=> #rt_at_ret::cached_local::<#rt_at_ret::#policy, #ret, _>)
        }
        None => quote_spanned!(ret_span=> #rt_at_ret::cached::<#rt_at_ret::#policy, #ret, _>),
    };
    let tags = listed_tags(sig);
    let run = run_block(sig, &block);
    let (checks, body) = match detached {
        None => (
            TokenStream::new(),
            quote! {
                #rt::Inline(move || async move {
                    #tags
                    let __redis_cache_value: #ret = #run;
                    #rt::Computed { value: __redis_cache_value, tags: __redis_cache_tags }
                })
            },
        ),
        Some((_, option)) => background_body(fn_sig, sig, (&ret, &policy), (tags, block), option),
    };
    // The value type is checked once, here, on the return type: the call itself has no bound
    // that could report it a second time.
    let stored_type =
        quote_spanned!(ret_span=> <#rt_at_ret::#policy as #rt_at_ret::Policy<#ret>>::Stored);
    let (value_check, checked) = value_checks::checked(
        ret_span,
        &stored_type,
        (quote!(ValueCodec), quote!(value_codec)),
        args.local.is_some(),
    );
    let call = quote_spanned! {ret_span=>
        #entry(
            &__REDIS_CACHE_SITE,
            __redis_cache,
            __redis_cache_key,
            #checked,
            #rules,
            #body,
        )
        .await
    };
    let statements = quote! {
        static __REDIS_CACHE_SITE: #rt::Site = #rt::Site::new(#spec);
        #checks
        let __redis_cache_key = #guarded_key;
        #cache
        #rule_bindings
        #value_check
        #call
    };
    assemble(func, args, sig, statements, || {
        let shown = fn_sig.ident.to_string();
        let companion_key = call_key(args, sig, false);
        Companions {
            batch: false,
            spec: spec.clone(),
            invalidate_doc: format!(
                " Removes the cached entry of `{shown}` for these arguments, so that the next \
                 call computes it again (generated by `#[redis_cache]`).\n\n A computation of \
                 the entry already running is not stored. `Ok(true)`: an entry was removed; \
                 `Ok(false)`: there was none. An error means the entry may still be there \
                 (Redis unreachable)."
            ),
            invalidate_body: quote! {
                static __REDIS_CACHE_SPEC: #rt::SiteSpec = #spec;
                let __redis_cache_key = #companion_key;
                #cache
                #rt::invalidate(&__REDIS_CACHE_SPEC, __redis_cache, __redis_cache_key).await
            },
            refresh_doc: format!(
                " Runs `{shown}` and stores its result for these arguments without reading the \
                 cache: a write-through refresh, to call after changing the data it reads \
                 (generated by `#[redis_cache]`).\n\n A computation of the entry already \
                 running (which may have read the old data) is not stored."
            ),
        }
    })
}

/// What sets one function's companions apart: their docs, and how `_invalidate` finds its
/// entries.
pub(super) struct Companions {
    pub(super) batch: bool,
    /// The function's `SiteSpec`, for `_stats`.
    pub(super) spec: TokenStream,
    pub(super) invalidate_doc: String,
    pub(super) invalidate_body: TokenStream,
    pub(super) refresh_doc: String,
}

/// The function with `statements` as its body, then (unless `companions = false`) its
/// `_invalidate` and `_refresh` companions, made with `companions`.
pub(super) fn assemble(
    func: &CachedFn,
    args: &Args,
    sig: &Analysis,
    statements: TokenStream,
    companions: impl FnOnce() -> Companions,
) -> TokenStream {
    let rt = quote!(::redis_cached::__private);
    let CachedFn {
        outer_attrs: attrs,
        vis,
        sig: fn_sig,
        ..
    } = func;
    // The body's braces keep the user's: what rustc reports about the body as a whole (a value
    // that cannot be stored, a future that is not `Send`) points at the function, not the
    // attribute.
    let inner_attrs = &func.inner_attrs;
    // A blocking function polls the same flow to completion on its thread.
    let statements = match sig.blocking {
        false => quote!(#(#inner_attrs)* #statements),
        true => quote!(#(#inner_attrs)* #rt::blocking(async move { #statements })),
    };
    let mut body_block = proc_macro2::Group::new(Delimiter::Brace, statements);
    body_block.set_span(func.block().span());
    let function = quote! {
        #(#attrs)*
        #vis #fn_sig #body_block
    };
    if !args.companions {
        return function;
    }
    let Companions {
        batch,
        spec,
        invalidate_doc,
        invalidate_body,
        refresh_doc,
    } = companions();
    let cfgs = cfgs(attrs);
    let (invalidate_sig, refresh_sig, stats_sig) =
        companion_sigs(fn_sig, batch, &KeyInputs::of(args));
    let sig_has_receiver = sig.has_receiver;
    let blocking = sig.blocking;
    let call = forward_call(fn_sig, &refresh_sig, sig.has_receiver);
    let (invalidate_body, refresh_body) = match blocking {
        false => (invalidate_body, quote!(#rt::write_through(#call).await)),
        true => (
            quote!(#rt::blocking(async move { #invalidate_body })),
            quote!(#rt::blocking(#rt::write_through(async move { #call }))),
        ),
    };
    let stats_body = companions::stats_body(&spec, sig.has_receiver);
    let stats_doc = format!(
        " The counters of `{}` in this process: hits, misses, fallbacks and the rest, zero \
         until its first call (generated by `#[redis_cache]`; the same as \
         `redis_cached::stats_for` with its name).",
        fn_sig.ident
    );
    let with_outcome = match batch {
        // A batch call has an outcome per key: its `_stats` count them.
        true => TokenStream::new(),
        false => {
            let sig = with_outcome_sig(fn_sig);
            let call = forward_call(fn_sig, &sig, sig_has_receiver);
            let with_outcome_body = match blocking {
                false => quote!(#rt::with_outcome(#call).await),
                true => quote!(#rt::blocking(#rt::with_outcome(async move { #call }))),
            };
            let doc = format!(
                " Calls `{}` and returns its value with how the call was answered: hit, miss, \
                 stale, local hit... and, for an entry served, its age and time left (generated \
                 by `#[redis_cache]`).",
                fn_sig.ident
            );
            quote! {
                #(#cfgs)*
                #[doc = #doc]
                #[allow(clippy::too_many_arguments)]
                #vis #sig {
                    #with_outcome_body
                }
            }
        }
    };
    quote! {
        #function

        #with_outcome

        #(#cfgs)*
        #[doc = #invalidate_doc]
        #[allow(unused_variables, clippy::too_many_arguments, clippy::used_underscore_binding)]
        #vis #invalidate_sig {
            #invalidate_body
        }

        #(#cfgs)*
        #[doc = #refresh_doc]
        #[allow(clippy::too_many_arguments)]
        #vis #refresh_sig {
            #refresh_body
        }

        #(#cfgs)*
        #[doc = #stats_doc]
        #[must_use]
        #vis #stats_sig {
            #stats_body
        }
    }
}

/// The expression that runs the function's body, inside the flow's body future: awaited for an
/// `async fn`; for a blocking `fn`, a closure the runtime calls outside the cache's context (so
/// `.await` in it is an error, and what it spawns goes to the caller's runtime, if any).
pub(super) fn run_block(sig: &Analysis, block: &proc_macro2::Group) -> TokenStream {
    match sig.blocking {
        false => quote!(async move #block.await),
        true => quote!(::redis_cached::__private::blocking_body(move || #block)),
    }
}

/// `ttl = EXPR`, `ttl = |v| ...`, `unless = |v| ...`, `tags = |v| ...`, `none_ttl = EXPR`: the
/// bindings made before the body takes the arguments (each spanned on the user's expression,
/// so a type error points at it), and the `Rules` built from them. `stored` is the type the
/// closures see.
fn rules(args: &Args, stored: &TokenStream) -> (TokenStream, TokenStream) {
    let rt = quote!(::redis_cached::__private);
    // The rules go with a refresh into a spawned task: closures that capture nothing.
    let background = args.detached().is_some();
    let mut rule_bindings = TokenStream::new();
    let mut rules = quote!(#rt::Rules::new());
    match &args.ttl_rule {
        Some(TtlRule::Expr(expr)) => {
            let ttl = value_checks::ttl(expr.span(), quote!(#expr));
            rules.extend(quote_spanned!(expr.span()=> .ttl(#ttl)));
        }
        // With a background refresh the closure outlives the call: a plain `fn` (no captures).
        Some(TtlRule::Closure(closure)) if background => {
            rule_bindings.extend(quote_spanned! {closure.span()=>
                let __redis_cache_ttl_of: fn(&#stored) -> ::core::time::Duration = #closure;
            });
            rules.extend(quote!(.ttl_of_fn(__redis_cache_ttl_of)));
        }
        Some(TtlRule::Closure(closure)) => {
            rule_bindings.extend(quote_spanned! {closure.span()=>
                #[allow(clippy::type_complexity)]
                let __redis_cache_ttl_of: &(dyn ::core::ops::Fn(&#stored) -> ::core::time::Duration
                    + ::core::marker::Sync) = &#closure;
            });
            rules.extend(quote!(.ttl_of(__redis_cache_ttl_of)));
        }
        None => {}
    }
    // `tags = |v: &T| iterator`: the closure's body is inlined, so an iterator borrowing `v`
    // (`v.iter().map(...)`) is collected while `v` is still borrowed.
    if let Some(closure) = &args.tags_of {
        let tags_of = match closure {
            Expr::Closure(c) if c.inputs.len() == 1 => {
                let (input, body) = (&c.inputs[0], &c.body);
                // In a closure of its own, so `return` in it returns the tags.
                quote_spanned! {closure.span()=>
                    |__redis_cache_value: &#stored| {
                        let #input = __redis_cache_value;
                        #rt::collect_tags((move || #body)())
                    }
                }
            }
            other => quote_spanned!(other.span()=> #other),
        };
        if background {
            rule_bindings.extend(quote_spanned! {closure.span()=>
                #[allow(clippy::type_complexity, clippy::redundant_closure_call)]
                let __redis_cache_tags_of: fn(&#stored) -> ::std::vec::Vec<::std::string::String> =
                    #tags_of;
            });
            rules.extend(quote!(.tags_of_fn(__redis_cache_tags_of)));
        } else {
            rule_bindings.extend(quote_spanned! {closure.span()=>
                #[allow(clippy::type_complexity, clippy::redundant_closure_call)]
                let __redis_cache_tags_of: &(dyn ::core::ops::Fn(&#stored)
                    -> ::std::vec::Vec<::std::string::String> + ::core::marker::Sync) = &#tags_of;
            });
            rules.extend(quote!(.tags_of(__redis_cache_tags_of)));
        }
    }
    if let Some(expr) = &args.none_ttl_expr {
        rules.extend(quote_spanned!(expr.span()=> .none_ttl(#expr)));
    }
    match &args.soft_timeout {
        Some(SoftTimeout::Millis(ms, span)) => {
            rules.extend(
                quote_spanned!(*span=> .soft_timeout(::core::time::Duration::from_millis(#ms))),
            );
        }
        Some(SoftTimeout::Expr(expr)) => {
            // Typed where it is written: anything but a `Duration` is an error on the expression.
            rule_bindings.extend(quote_spanned! {expr.span()=>
                let __redis_cache_soft_timeout: ::core::time::Duration = #expr;
            });
            rules.extend(quote!(.soft_timeout(__redis_cache_soft_timeout)));
        }
        None => {}
    }
    if let Some(closure) = args.unless.as_ref().filter(|_| background) {
        rule_bindings.extend(quote_spanned! {closure.span()=>
            let __redis_cache_unless: fn(&#stored) -> bool = #closure;
        });
        rules.extend(quote!(.unless_fn(__redis_cache_unless)));
    } else if let Some(closure) = &args.unless {
        rule_bindings.extend(quote_spanned! {closure.span()=>
            #[allow(clippy::type_complexity)]
            let __redis_cache_unless: &(dyn ::core::ops::Fn(&#stored) -> bool
                + ::core::marker::Sync) = &#closure;
        });
        rules.extend(quote!(.unless(__redis_cache_unless)));
    }

    (rule_bindings, rules)
}

/// `refresh = "background"` or `soft_timeout` (`option`, as the errors name it): spanned checks
/// that each argument (and `Self`) can go into a spawned task, and the body as a closure that
/// makes a `Send + 'static` future when the body runs. A method taking `&self` runs it on a clone
/// of `self`: the body's `self` is renamed to a reference to that clone.
fn background_body(
    fn_sig: &Signature,
    sig: &Analysis,
    (ret, policy): (&TokenStream, &TokenStream),
    (tags, block): (TokenStream, proc_macro2::Group),
    option: &str,
) -> (TokenStream, TokenStream) {
    let rt = quote!(::redis_cached::__private);
    let mut checks = TokenStream::new();
    for input in &fn_sig.inputs {
        match input {
            // Checked where `self` is cloned, below.
            FnArg::Receiver(_) if sig.borrows_self => {}
            FnArg::Receiver(recv) => {
                checks.extend(value_checks::background_arg(
                    recv.span(),
                    quote_spanned!(recv.span()=> &self),
                    option,
                ));
            }
            FnArg::Typed(pat_type) => {
                if let Pat::Ident(p) = &*pat_type.pat {
                    let name = &p.ident;
                    let span = pat_type.ty.span();
                    checks.extend(value_checks::background_arg(
                        span,
                        quote_spanned!(span=> &#name),
                        option,
                    ));
                }
            }
        }
    }
    let receiver = fn_sig.receiver().filter(|_| sig.borrows_self);
    let make = if let Some(receiver) = receiver {
        let block = rename_self(block);
        let tags = rename_self(proc_macro2::Group::new(Delimiter::None, tags)).stream();
        // Spanned on `&self`, so a `Self` that is not `Clone + Send + Sync` points there.
        let clone = value_checks::clone_self(receiver.span(), option);
        quote! {
            move || {
                let __redis_cache_this: Self = #clone;
                async move {
                    let __redis_cache_self: &Self = &__redis_cache_this;
                    #tags
                    let __redis_cache_value: #ret = async move #block.await;
                    #rt::Computed { value: __redis_cache_value, tags: __redis_cache_tags }
                }
            }
        }
    } else {
        quote! {
            move || async move {
                #tags
                let __redis_cache_value: #ret = async move #block.await;
                #rt::Computed { value: __redis_cache_value, tags: __redis_cache_tags }
            }
        }
    };
    (
        checks,
        quote!(#rt::Background::<_, _, _, #ret>::new::<#rt::#policy>(#make)),
    )
}

/// `let __redis_cache_tags = vec![...]`: the `tags("...")` templates, rendered from the
/// arguments when the body runs (first, before the body can move them), so a hit renders none.
fn listed_tags(sig: &Analysis) -> TokenStream {
    let rendered = sig.tags.iter().map(|tag| {
        let format = &tag.format;
        let parts = tag.parts.iter().map(|part| tag_part(tag.span, part));
        quote_spanned!(tag.span=> ::std::format!(#format #(, #parts)*))
    });
    quote! {
        let __redis_cache_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#rendered),*];
    }
}

/// A placeholder of a `tags("...")` template, checked to be `Display`: one error, at the tag.
pub(super) fn tag_part(span: proc_macro2::Span, part: &TokenStream) -> TokenStream {
    value_checks::through_bound(
        span,
        &value_checks::Diagnostic {
            message: "`{Self}` cannot be rendered into a tag: a `{{placeholder}}` in `tags(...)` must implement `std::fmt::Display`",
            label: "a placeholder of this tag",
            note: "name a field that is `Display` (`{{user.id}}`), or compute tags from the value with `tags = |v: &T| ...`",
            of_self: false,
        },
        quote_spanned!(span=> ::core::fmt::Display),
        (TokenStream::new(), TokenStream::new()),
        (
            Some(quote!(::std::string::String)),
            quote!(::std::string::ToString::to_string(value)),
        ),
        quote_spanned!(span=> &(#part)),
    )
}

/// `block` with each `self` (the receiver, not a `self::` path) replaced by
/// `__redis_cache_self`, spanned where it was written. Items nested in the body (`impl` and
/// `trait` blocks) keep theirs: their `self` is their own.
fn rename_self(block: proc_macro2::Group) -> proc_macro2::Group {
    fn rename(tokens: TokenStream) -> TokenStream {
        let mut out = TokenStream::new();
        let mut tokens = tokens.into_iter().peekable();
        let mut nested_item = false;
        while let Some(token) = tokens.next() {
            let renamed = match token {
                TokenTree::Ident(ident) if ident == "self" => {
                    let path =
                        matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                    match path {
                        true => TokenTree::Ident(ident),
                        false => TokenTree::Ident(Ident::new("__redis_cache_self", ident.span())),
                    }
                }
                TokenTree::Ident(ident) => {
                    nested_item |= ident == "impl" || ident == "trait";
                    TokenTree::Ident(ident)
                }
                TokenTree::Group(group) if group.delimiter() == Delimiter::Brace && nested_item => {
                    nested_item = false;
                    TokenTree::Group(group)
                }
                TokenTree::Group(group) => {
                    let mut renamed =
                        proc_macro2::Group::new(group.delimiter(), rename(group.stream()));
                    renamed.set_span(group.span());
                    TokenTree::Group(renamed)
                }
                other => other,
            };
            out.extend([renamed]);
        }
        out
    }
    let mut renamed = proc_macro2::Group::new(block.delimiter(), rename(block.stream()));
    renamed.set_span(block.span());
    renamed
}

/// The function's options, as the runtime's `SiteSpec`.
fn site_spec(fn_sig: &Signature, args: &Args, sig: &Analysis) -> TokenStream {
    let rt = quote!(::redis_cached::__private);
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
    let local = args.local.map_or(0, |(n, _)| n);
    let local_ttl = args.local_ttl.map_or(0, |(secs, _)| secs);
    let jitter = match args.jitter {
        Some(j) => quote!(::core::option::Option::Some(#j)),
        None => quote!(::core::option::Option::None),
    };
    let value_type = match (&sig.batch, &fn_sig.output) {
        // What one item is stored as, named as the single-item function that shares the items'
        // entries names its return type: `Result<V, E>` for a batch returning a `Result` of a
        // map, `Option<V>` otherwise.
        (Some(batch), _) => {
            let value = normalized(&batch.value.to_token_stream());
            match &batch.error {
                Some(error) => format!("Result<{value},{}>", normalized(&quote!(#error))),
                None => format!("Option<{value}>"),
            }
        }
        (None, ReturnType::Default) => "()".to_string(),
        (None, ReturnType::Type(_, ty)) => normalized(&quote!(#ty)),
    };
    // The tags as written (part of the fingerprint): templates, then the closure's tokens.
    let mut tags: Vec<String> = sig.tags.iter().map(|t| t.normalized.clone()).collect();
    if let Some(closure) = &args.tags_of {
        tags.push(normalized(&quote!(#closure)));
    }
    let tags_text = tags.join("|");
    let stores_none = args.none_ttl.is_some();
    let batch = sig.batch.is_some();
    let codec = match &args.codec {
        Some(variant) => quote!(::core::option::Option::Some(#rt::Codec::#variant)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        #rt::SiteSpec {
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
            wait_for_lock: #lock,
            local_entries: #local,
            local_ttl_secs: #local_ttl,
            tags: #tags_text,
            stores_none: #stores_none,
            batch: #batch,
            codec: #codec,
        }
    }
}

/// A block evaluating to the call's `CallKey`: the hash of its key arguments.
///
/// `checked`: the function itself checks that each key argument is `Serialize`, with an error
/// that names the parameter. The companions derive the same key without the checks, so a
/// mistake is one error, not one per function generated from it.
fn call_key(args: &Args, sig: &Analysis, checked: bool) -> TokenStream {
    let rt = quote!(::redis_cached::__private);
    let self_type = sig
        .has_receiver
        .then(|| quote!(__key.method_of(::core::any::type_name::<Self>());));
    let type_params = sig
        .type_params
        .iter()
        .map(|t| quote!(__key.type_param(::core::any::type_name::<#t>());));
    let const_params = sig.const_params.iter().map(|c| quote!(__key.arg(&#c);));
    let unchecked = |span: proc_macro2::Span, value: TokenStream| {
        quote_spanned! {span=>
            {
                #[allow(unused_imports)]
                use #rt::{AddSerialized as _, AddUnkeyable as _};
                #[allow(clippy::needless_borrow)]
                let () = (&&#rt::KeyPart(&#value)).add_to(&mut __key);
            }
        }
    };
    // Checked through a bound of the generated code's own: an error names the user's type only.
    let serialized = |span, diagnostic: &value_checks::Diagnostic<'_>, value| {
        let add = value_checks::through_bound(
            span,
            diagnostic,
            quote_spanned!(span=> #rt::KeyArg),
            (
                quote!(key: &mut #rt::KeyBuilder,),
                quote_spanned!(span=> &mut __key,),
            ),
            (None, quote!(key.arg(value))),
            value,
        );
        quote_spanned!(span=> #add;)
    };
    let include_self = args.include_self.map(|span| match checked {
        true => serialized(
            span,
            &value_checks::Diagnostic {
                message: "`{Self}` cannot be part of the cache key: it does not implement `serde::Serialize`",
                label: "`include_self` hashes `self` into the cache key",
                note: "derive `serde::Serialize` for it, or remove `include_self` (the key is then the other arguments), or key on some of its fields with `key = (self.tenant, id)`",
                of_self: false,
            },
            quote_spanned!(span=> self),
        ),
        false => unchecked(span, quote!(*self)),
    });
    // Spanned on the parameter (or the `key` expression), so "not Serialize" points at it.
    let key_params: Vec<TokenStream> = match &args.key {
        Some(expr) if checked => vec![serialized(
            expr.span(),
            &value_checks::Diagnostic {
                message: "`{Self}` cannot be the cache key: the `key = ...` expression must implement `serde::Serialize`",
                label: "this value is hashed into the cache key",
                note: "key on something `Serialize` (an id, a tuple of fields, a string), or derive `serde::Serialize` for it",
                of_self: false,
            },
            quote_spanned!(expr.span()=> &(#expr)),
        )],
        Some(expr) => vec![unchecked(expr.span(), quote!((#expr)))],
        None if checked => sig
            .key_params
            .iter()
            .map(|p| checked_param(p, sig.batch.as_ref()))
            .collect(),
        None => sig
            .key_params
            .iter()
            .map(|p| match &sig.batch {
                Some(batch) if batch.name() == p => {
                    let item = format_ident!("{}", crate::tags::ITEM, span = p.span());
                    unchecked(p.span(), quote!(*#item))
                }
                _ => unchecked(p.span(), quote!(#p)),
            })
            .collect(),
    };
    quote! {
        {
            let mut __key = #rt::KeyBuilder::new();
            #self_type
            #(#type_params)*
            #(#const_params)*
            #include_self
            #(#key_params)*
            __key.finish()
        }
    }
}

/// Adds parameter `p` to `__key`, through a trait of its own whose error names `p`: a type that
/// is not `Serialize` is one error on the parameter, saying which `skip(...)` would leave it out.
/// The batch parameter adds its element being keyed (`__redis_cache_item`, a reference).
fn checked_param(p: &Ident, batch: Option<&crate::batch::BatchShape>) -> TokenStream {
    let rt = quote!(::redis_cached::__private);
    let is_batch = batch.is_some_and(|batch| batch.name() == p);
    let (label, note, value) = match is_batch {
        false => (
            format!("`{p}` is hashed into the cache key"),
            format!(
                "derive `serde::Serialize` for its type, or leave `{p}` out of the key: \
                 `#[redis_cache(..., skip({p}))]`"
            ),
            quote_spanned!(p.span()=> &#p),
        ),
        true => {
            let item = format_ident!("{}", crate::tags::ITEM, span = p.span());
            (
                format!("each element of `{p}` is hashed into its item's key"),
                "derive `serde::Serialize` for the key type: each key of a batch is stored \
                 under a key of its own"
                    .to_string(),
                quote_spanned!(p.span()=> #item),
            )
        }
    };
    quote_spanned! {p.span()=>
        {
            #[diagnostic::on_unimplemented(
                message = "`{Self}` cannot be part of the cache key: it does not implement `serde::Serialize`",
                label = #label,
                note = #note
            )]
            trait __RedisCacheKeyArg: #rt::KeyArg {}
            #[diagnostic::do_not_recommend]
            impl<T: #rt::KeyArg + ?::core::marker::Sized> __RedisCacheKeyArg for T {}
            fn __redis_cache_arg<T: __RedisCacheKeyArg + ?::core::marker::Sized>(
                key: &mut #rt::KeyBuilder,
                value: &T,
            ) {
                key.arg(value);
            }
            __redis_cache_arg(&mut __key, #value);
        }
    }
}

/// `let __redis_cache: &Cache = ...;`, spanned on the user's expression so a wrong type points
/// there.
fn cache_handle(args: &Args) -> TokenStream {
    let rt = quote!(::redis_cached::__private);
    match &args.cache {
        Some(expr) => quote_spanned!(expr.span()=> let __redis_cache: &#rt::Cache = &(#expr);),
        None => quote!(let __redis_cache: &#rt::Cache = #rt::default_cache();),
    }
}

/// The return type as written, without whitespace: it goes into the key's fingerprint, so it must
/// not depend on how a proc-macro2 version spaces tokens.
fn normalized(tokens: &TokenStream) -> String {
    tokens.to_string().split_whitespace().collect()
}
