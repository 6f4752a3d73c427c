//! `batch = ids`: what a batch function must look like (a collection of keys in, a map of the
//! values found out), read from its signature.

use quote::ToTokens;
use syn::{FnArg, GenericArgument, Ident, Pat, PatIdent, PathArguments, ReturnType, Type};

use crate::errors::Errors;

/// A batch function's shape.
pub(crate) struct BatchShape {
    /// The parameter holding the keys, as written (`ids`, `mut ids`).
    pub pat: PatIdent,
    /// The element type: one key.
    pub elem: Type,
    /// How the function takes the keys.
    pub holder: Holder,
    /// The value of one key.
    pub value: Type,
    /// `E` of a batch returning `Result<_, E>`.
    pub error: Option<Type>,
}

/// How a batch function takes its keys.
pub(crate) enum Holder {
    /// `Vec<K>`, `HashSet<K>`, `BTreeSet<K>`: rebuilt from the keys to compute.
    Owned(Type),
    /// `&[K]`: a slice of the keys to compute.
    Slice,
    /// `&Vec<K>`, `&HashSet<K>`, `&BTreeSet<K>`: rebuilt, and borrowed.
    Borrowed(Type),
}

impl BatchShape {
    /// Whether the function takes the keys by reference.
    pub fn by_ref(&self) -> bool {
        !matches!(self.holder, Holder::Owned(_))
    }

    pub fn name(&self) -> &Ident {
        &self.pat.ident
    }
}

/// Reads the shape of a batch function whose keys are in `param` (`batch = param`), reporting
/// what does not fit into `errors`.
pub(crate) fn shape(
    sig: &syn::Signature,
    param: &Ident,
    skip: &[Ident],
    errors: &mut Errors,
) -> Option<BatchShape> {
    let mut names = Vec::new();
    let mut found = None;
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input
            && let Pat::Ident(pat) = &*typed.pat
        {
            names.push(format!("`{}`", pat.ident));
            if pat.ident == *param {
                found = Some((pat.clone(), (*typed.ty).clone()));
            }
        }
    }
    let Some((pat, ty)) = found else {
        let list = match names.is_empty() {
            true => "the function has no named parameters".to_string(),
            false => format!("the parameters are {}", names.join(", ")),
        };
        errors.push(
            param.span(),
            format!("`batch = {param}` names no parameter of this function; {list}"),
        );
        return None;
    };
    if let Some(skipped) = skip.iter().find(|s| *s == param) {
        errors.push(
            skipped.span(),
            format!(
                "`{param}` holds the keys of the batch (`batch = {param}`): each element is part \
                 of its own item's key; remove it from `skip(...)`"
            ),
        );
    }
    let Some((elem, holder)) = collection(&ty) else {
        errors.push_spanned(
            &ty,
            format!(
                "`batch = {param}` needs a collection of keys, and `{param}` is `{}`: take \
                 `Vec<K>`, `&[K]`, `HashSet<K>` or `BTreeSet<K>`, with K the key type (e.g. \
                 `{param}: Vec<u64>`)",
                squeeze(&ty)
            ),
        );
        return None;
    };
    let value = match &sig.output {
        ReturnType::Type(_, ty) => map_value(ty),
        ReturnType::Default => None,
    };
    let Some((value, error)) = value else {
        let message = format!(
            "a batch function returns a map from each key it found to its value: `HashMap<{k}, V>` \
             or `BTreeMap<{k}, V>` ({k} being the elements of `{param}`), optionally in \
             `Result<_, E>`; a key absent from the map is \"not found\"",
            k = squeeze(&elem)
        );
        match &sig.output {
            ReturnType::Type(_, ty) => errors.push_spanned(ty, message),
            ReturnType::Default => errors.push(sig.ident.span(), message),
        }
        return None;
    };
    Some(BatchShape {
        pat,
        elem,
        holder,
        value,
        error,
    })
}

/// The element type of a collection of keys, and how it is held.
fn collection(ty: &Type) -> Option<(Type, Holder)> {
    match ty {
        Type::Paren(inner) => collection(&inner.elem),
        Type::Group(inner) => collection(&inner.elem),
        Type::Reference(reference) if reference.mutability.is_none() => match &*reference.elem {
            Type::Slice(slice) => Some(((*slice.elem).clone(), Holder::Slice)),
            owned => {
                let elem = owned_elem(owned)?;
                Some((elem, Holder::Borrowed(owned.clone())))
            }
        },
        owned => {
            let elem = owned_elem(owned)?;
            Some((elem, Holder::Owned(owned.clone())))
        }
    }
}

/// `K` of `Vec<K>`, `HashSet<K>` (any hasher) or `BTreeSet<K>`.
fn owned_elem(ty: &Type) -> Option<Type> {
    let (name, args) = last_segment(ty)?;
    matches!(name.as_str(), "Vec" | "HashSet" | "BTreeSet").then_some(())?;
    args.into_iter().next()
}

/// `V` of a `HashMap<K, V>` (any hasher) or `BTreeMap<K, V>`, and `E` when it is in a
/// `Result<_, E>`.
fn map_value(ty: &Type) -> Option<(Type, Option<Type>)> {
    let (name, mut args) = last_segment(ty)?;
    match name.as_str() {
        "Result" if args.len() == 2 => {
            let error = args.pop()?;
            let (value, _) = map_value(&args.pop()?)?;
            Some((value, Some(error)))
        }
        "HashMap" | "BTreeMap" => Some((args.into_iter().nth(1)?, None)),
        _ => None,
    }
}

/// The last segment's name and its type arguments.
fn last_segment(ty: &Type) -> Option<(String, Vec<Type>)> {
    match ty {
        Type::Paren(inner) => last_segment(&inner.elem),
        Type::Group(inner) => last_segment(&inner.elem),
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            let args = match &segment.arguments {
                PathArguments::AngleBracketed(args) => args
                    .args
                    .iter()
                    .filter_map(|arg| match arg {
                        GenericArgument::Type(ty) => Some(ty.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some((segment.ident.to_string(), args))
        }
        _ => None,
    }
}

/// A type as written, without the spaces tokens print with.
pub(crate) fn squeeze(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    text.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace(" :: ", "::")
}
