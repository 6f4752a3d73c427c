//! `tags("product:{id}", "catalog")`: each template is checked against the function's
//! parameters at compile time and rendered with `format!` on each call.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;
use syn::{Ident, LitStr};

/// One tag template, ready for `format!`.
pub(crate) struct Template {
    /// The literal parts, with `{}` where a placeholder was.
    pub format: String,
    /// The template as the key's fingerprint sees it: a placeholder naming a key parameter is
    /// written by its position among the key parameters (`product:{@0}`), so the fingerprint
    /// does not depend on parameter names, and a batch function (whose key parameter is the
    /// batch's element) writes what the single-item function with the same tags writes.
    pub normalized: String,
    /// The placeholders' expressions (`id`, `self.tenant`, `query.page.0`), spanned on the
    /// template.
    pub parts: Vec<TokenStream>,
    pub span: Span,
}

/// What a template's placeholders may name.
pub(crate) struct Params<'a> {
    /// Every named parameter.
    pub all: &'a [Ident],
    /// The key parameters, in order.
    pub keyed: &'a [Ident],
    /// `self` may be named.
    pub has_receiver: bool,
    /// `batch = ids`: `{ids}` means the item's key (the element being tagged).
    pub batch: Option<&'a Ident>,
}

/// The expression a placeholder naming the batch parameter stands for: the element of the item
/// being tagged, bound by the generated code.
pub(crate) const ITEM: &str = "__redis_cache_item";

/// Checks `lit` against the parameters.
pub(crate) fn parse(lit: &LitStr, params: &Params<'_>) -> syn::Result<Template> {
    let value = lit.value();
    let span = lit.span();
    let error = |message: String| syn::Error::new(span, message);
    if value.is_empty() {
        return Err(error(
            "an empty tag matches nothing: write what the entry depends on, e.g. `\"product:{id}\"`"
                .into(),
        ));
    }
    let mut format = String::new();
    let mut normalized = String::new();
    let mut parts = Vec::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                let mut placeholder = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => placeholder.push(c),
                        None => {
                            return Err(error(format!(
                                "unclosed `{{` in the tag {value:?}: a placeholder is `{{name}}` or \
                                 `{{name.field}}`"
                            )));
                        }
                    }
                }
                let (expr, position) = placeholder_expr(&placeholder, &value, params, span)?;
                parts.push(expr);
                format.push_str("{}");
                normalized.push('{');
                match position {
                    Some((index, fields)) => {
                        normalized.push_str(&format!("@{index}"));
                        normalized.push_str(fields);
                    }
                    None => normalized.push_str(placeholder.trim()),
                }
                normalized.push('}');
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') => {
                format.push(c);
                normalized.push(c);
            }
            c => {
                return Err(error(format!(
                    "a tag cannot contain {c:?}: it becomes part of a Redis key, where only ASCII \
                     letters, digits and `_ - . : /` are allowed; placeholders are `{{name}}` or \
                     `{{name.field}}`"
                )));
            }
        }
    }
    Ok(Template {
        format,
        normalized,
        parts,
        span,
    })
}

/// `name` or `name.field.0`, as an expression spanned on the template; and, for a key
/// parameter, its position among them and the fields after it (`.field.0`).
fn placeholder_expr<'p>(
    placeholder: &'p str,
    tag: &str,
    params: &Params<'_>,
    span: Span,
) -> syn::Result<(TokenStream, Option<(usize, &'p str)>)> {
    let trimmed = placeholder.trim();
    let mut segments = trimmed.split('.');
    let name = segments.next().unwrap_or_default().trim();
    let known = params.all.iter().any(|p| p == name) || (params.has_receiver && name == "self");
    if !known {
        let mut names: Vec<String> = params.all.iter().map(|p| format!("`{p}`")).collect();
        if params.has_receiver {
            names.push("`self`".into());
        }
        let list = match names.is_empty() {
            true => "the function has no named parameters".to_string(),
            false => format!("the parameters are {}", names.join(", ")),
        };
        return Err(syn::Error::new(
            span,
            format!("`{{{placeholder}}}` in the tag {tag:?} names no parameter; {list}"),
        ));
    }
    let position = params
        .keyed
        .iter()
        .position(|p| p == name)
        .map(|index| (index, &trimmed[name.len()..]));
    let mut expr = match name {
        "self" => quote_spanned!(span=> self),
        name if params.batch.is_some_and(|batch| batch == name) => {
            let item = Ident::new(ITEM, span);
            quote_spanned!(span=> (*#item))
        }
        name => {
            let ident = Ident::new(name, span);
            quote_spanned!(span=> #ident)
        }
    };
    for field in segments {
        let field = field.trim();
        if let Ok(index) = field.parse::<u32>() {
            let index = syn::Index { index, span };
            expr = quote_spanned!(span=> #expr.#index);
        } else if syn::parse_str::<Ident>(field).is_ok() {
            let field = Ident::new(field, span);
            expr = quote_spanned!(span=> #expr.#field);
        } else {
            return Err(syn::Error::new(
                span,
                format!(
                    "`{{{placeholder}}}` in the tag {tag:?} is not a parameter or a field of one: \
                     write `{{name}}` or `{{name.field}}`"
                ),
            ));
        }
    }
    Ok((expr, position))
}
