//! What the annotated function looks like: which parameters form the key, whether it has a
//! receiver, and how its return value is cached. Every rule that rejects a signature lives here.

use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, Pat, ReturnType, Type};

use crate::args::Args;
use crate::errors::Errors;
use crate::item::CachedFn;

/// How the return value decides what is stored.
pub(crate) enum Policy {
    /// Any value is stored.
    Plain,
    /// `Result<T, E>` (any path ending in `Result`, so `io::Result<T>` too): only `Ok` is stored.
    OkOnly,
    /// `Option<T>`: only `Some` is stored.
    SomeOnly,
    /// `Option<T>` with `none_ttl`: `None` is stored too, with its own TTL.
    SomeOrNone,
}

pub(crate) struct Analysis {
    /// Parameters hashed into the key, in declaration order.
    pub key_params: Vec<Ident>,
    /// The function takes `&self`.
    pub has_receiver: bool,
    /// The receiver is a reference (`&self`): a background refresh takes a clone of `self`.
    pub borrows_self: bool,
    /// Type and const parameters of the function itself (impl generics reach the key via `Self`).
    pub type_params: Vec<Ident>,
    pub const_params: Vec<Ident>,
    pub policy: Policy,
    /// `tags(...)`, checked against the parameters.
    pub tags: Vec<crate::tags::Template>,
    /// `batch = ids`: the function's keys and values.
    pub batch: Option<crate::batch::BatchShape>,
    /// A plain `fn`: its calls block on the cache's flow (`__private::blocking`), and so do its
    /// companions.
    pub blocking: bool,
}

impl Analysis {
    pub fn new(func: &CachedFn, args: &Args) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let sig = &func.sig;
        let blocking = sig.asyncness.is_none();
        if let Some(constness) = sig.constness {
            errors.push(
                constness.span,
                "#[redis_cache] cannot cache a `const fn`: a cached call reads Redis at run time, \
                 which a constant evaluation cannot; remove `const`",
            );
        }
        // A blocking function has no refresh to detach: its errors alone, not the ownership
        // rules of a detached body too.
        let detached = match (blocking, args.detached()) {
            (true, Some((span, option))) => {
                errors.push(
                    span,
                    format!(
                        "{option} is not available on a blocking `fn`: it would run the function \
                         in a task on the cache's I/O thread, which a blocking body would stall; \
                         remove it (the caller then waits for the refresh), or make the function \
                         `async fn`"
                    ),
                );
                None
            }
            (_, detached) => detached,
        };

        let mut has_receiver = false;
        let mut borrows_self = false;
        let mut key_params = Vec::new();
        let mut param_names = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(recv) => {
                    has_receiver = true;
                    // `&self`, and `self: &Self` written out.
                    let typed_ref_self = matches!(
                        &*recv.ty,
                        Type::Reference(r) if r.mutability.is_none()
                            && matches!(&*r.elem, Type::Path(p) if p.path.is_ident("Self"))
                    );
                    borrows_self = recv.reference.is_some() || typed_ref_self;
                    if let (Some((_, option)), false, Type::Reference(r)) =
                        (detached, borrows_self, &*recv.ty)
                    {
                        errors.push_spanned(
                            r,
                            format!(
                                "{option} refreshes in a spawned task that outlives the call, so \
                                 it cannot borrow `self` through another reference: take `&self` \
                                 (the task gets a clone of `self`) or `self` by value \
                                 (`self: Arc<Self>`)"
                            ),
                        );
                    }
                    if recv.mutability.is_some() && recv.reference.is_some() {
                        errors.push_spanned(
                            recv,
                            "#[redis_cache] cannot cache a method taking `&mut self`: on a hit the \
                             body does not run, so its changes to `self` would be skipped; take `&self`",
                        );
                    }
                }
                FnArg::Typed(pat_type) => {
                    if let Type::Reference(r) = &*pat_type.ty
                        && r.mutability.is_some()
                    {
                        errors.push_spanned(
                            r,
                            "#[redis_cache] cannot cache a function with a `&mut` parameter: on a \
                             hit the body does not run, so the change it makes through the reference \
                             would be skipped; pass a shared reference or a value",
                        );
                    }
                    let is_batch = matches!(
                        (&*pat_type.pat, &args.batch),
                        (Pat::Ident(p), Some(batch)) if p.ident == *batch
                    );
                    // A batch's keys reach a background refresh as a `Vec` of their own.
                    if let Some((_, option)) = detached
                        && !is_batch
                        && let Some(borrowed) = borrowed_part(&pat_type.ty)
                    {
                        let name = match &*pat_type.pat {
                            Pat::Ident(p) => format!("`{}`", p.ident),
                            _ => "this parameter".to_string(),
                        };
                        errors.push_spanned(
                            &pat_type.ty,
                            format!(
                                "{option} refreshes in a spawned task that outlives the call, so \
                                 it cannot borrow {name} ({borrowed}): take \
                                 an owned value (`String` for `&str`, `Vec<T>` for `&[T]`) or a \
                                 cheap-to-clone handle (`Arc<T>`, a connection pool, axum's \
                                 `State`)"
                            ),
                        );
                    }
                    match &*pat_type.pat {
                        Pat::Ident(p) => {
                            param_names.push(p.ident.clone());
                            if !args.skip.contains(&p.ident) {
                                key_params.push(p.ident.clone());
                                if args.key.is_none()
                                    && !is_batch
                                    && let Some(unordered) = unordered(&pat_type.ty)
                                {
                                    errors.push_spanned(
                                        &pat_type.ty,
                                        unordered_message(&p.ident, unordered),
                                    );
                                }
                            }
                        }
                        // `_` is dropped unused, so the result cannot depend on it.
                        Pat::Wild(_) => {}
                        other => errors.push(
                            other.span(),
                            "#[redis_cache] needs a name for each parameter to hash it into the key; \
                             bind it to a name (`point: Point`) and destructure inside the body",
                        ),
                    }
                }
            }
        }
        for skipped in &args.skip {
            if !param_names.iter().any(|p| p == skipped) {
                let list = if param_names.is_empty() {
                    "the function has no named parameters".to_string()
                } else {
                    let names: Vec<String> = param_names.iter().map(|p| format!("`{p}`")).collect();
                    format!("the parameters are {}", names.join(", "))
                };
                errors.push(
                    skipped.span(),
                    format!("`skip({skipped})` names no parameter of this function; {list}"),
                );
            }
        }
        if let Some(span) = args.include_self
            && !has_receiver
        {
            errors.push(
                span,
                "`include_self` needs a method taking `&self`; remove it",
            );
        }

        let mut type_params = Vec::new();
        let mut const_params = Vec::new();
        for param in &sig.generics.params {
            match param {
                GenericParam::Type(t) => type_params.push(t.ident.clone()),
                GenericParam::Const(c) => const_params.push(c.ident.clone()),
                GenericParam::Lifetime(_) => {}
            }
        }

        let policy = match &sig.output {
            ReturnType::Default => Policy::Plain,
            ReturnType::Type(_, ty) => match &**ty {
                Type::ImplTrait(imp) => {
                    errors.push_spanned(
                        imp,
                        "#[redis_cache] cannot cache an `impl Trait` return: a hit is decoded from \
                         bytes, which needs the concrete type; name the type (for example \
                         `Vec<Item>` instead of `impl Iterator<Item = Item>`)",
                    );
                    Policy::Plain
                }
                Type::Reference(r) => {
                    errors.push_spanned(
                        r,
                        "#[redis_cache] cannot cache a borrowed return value: a hit is decoded into \
                         a value the caller owns; return an owned type (`String` instead of `&str`, \
                         `Vec<T>` instead of `&[T]`)",
                    );
                    Policy::Plain
                }
                ty => match last_segment(ty).as_deref() {
                    Some("Result") => Policy::OkOnly,
                    Some("Option") if args.none_ttl.is_some() => Policy::SomeOrNone,
                    Some("Option") => Policy::SomeOnly,
                    _ => Policy::Plain,
                },
            },
        };
        let batch = match &args.batch {
            Some(param) => crate::batch::shape(sig, param, &args.skip, &mut errors),
            None => None,
        };
        // A batch function's `none_ttl` is its "not found" marker, whatever the map's values.
        let stores_none = matches!(policy, Policy::SomeOrNone) || args.batch.is_some();
        if let (Some((_, span)), false) = (args.none_ttl, stores_none) {
            errors.push(
                span,
                "`none_ttl` only applies to functions returning `Option<T>`; remove it",
            );
        }

        let mut tags = Vec::new();
        let tag_params = crate::tags::Params {
            all: &param_names,
            keyed: &key_params,
            has_receiver,
            batch: args.batch.as_ref(),
        };
        for lit in &args.tags {
            match crate::tags::parse(lit, &tag_params) {
                Ok(template) => tags.push(template),
                Err(err) => errors.add(err),
            }
        }

        errors.finish(Analysis {
            blocking,
            batch,
            tags,
            key_params,
            has_receiver,
            borrows_self,
            type_params,
            const_params,
            policy,
        })
    }
}

/// What in `ty` borrows from the caller, if anything: a reference, or a named lifetime other
/// than `'static`. (A reference nested without a name, as in `Vec<&str>`, is left to the
/// compiler: `dyn Fn(&str)` is no borrow.)
fn borrowed_part(ty: &Type) -> Option<&'static str> {
    if let Type::Reference(r) = ty {
        // `&'static str` and the like live as long as the task.
        if r.lifetime.as_ref().is_some_and(|l| l.ident == "static") {
            return borrowed_part(&r.elem);
        }
        return Some("a reference");
    }
    fn has_lifetime(tokens: proc_macro2::TokenStream) -> bool {
        let mut tokens = tokens.into_iter().peekable();
        while let Some(token) = tokens.next() {
            match token {
                proc_macro2::TokenTree::Punct(p) if p.as_char() == '\'' => {
                    if let Some(proc_macro2::TokenTree::Ident(name)) = tokens.peek()
                        && name != "static"
                    {
                        return true;
                    }
                }
                proc_macro2::TokenTree::Group(g) if has_lifetime(g.stream()) => return true,
                _ => {}
            }
        }
        false
    }
    has_lifetime(quote::quote!(#ty)).then_some("a borrowed lifetime")
}

/// `HashMap` or `HashSet` if `ty` is one (or a reference to one): their serialization follows
/// their iteration order, which differs between processes.
fn unordered(ty: &Type) -> Option<&'static str> {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        ty => ty,
    };
    match last_segment(ty).as_deref() {
        Some("HashMap") => Some("HashMap"),
        Some("HashSet") => Some("HashSet"),
        _ => None,
    }
}

fn unordered_message(param: &Ident, kind: &str) -> String {
    let ordered = match kind {
        "HashMap" => "BTreeMap",
        _ => "BTreeSet",
    };
    format!(
        "`{param}` is a `{kind}`, which serializes in its iteration order: that order differs \
         between processes (a random seed per map), so equal values would make different keys \
         and never share an entry; take a `{ordered}` (or a sorted `Vec`), leave it out of the \
         key with `skip({param})`, or key on something canonical with `key = ...`"
    )
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Paren(p) => last_segment(&p.elem),
        Type::Group(g) => last_segment(&g.elem),
        _ => None,
    }
}
