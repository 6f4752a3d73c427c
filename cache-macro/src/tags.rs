//! `tags("product:{id}", "catalog")`: each template is checked against the function's
//! parameters at compile time and rendered with `format!` on each call.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;
use syn::{Ident, LitStr};

/// One tag template, ready for `format!`.
pub(crate) struct Template {
    /// The literal parts, with `{}` where a placeholder was.
    pub format: String,
    /// The placeholders' expressions (`id`, `self.tenant`, `query.page.0`), spanned on the
    /// template.
    pub parts: Vec<TokenStream>,
    pub span: Span,
}

/// Checks `lit` against the parameters (`params`, and `self` for a method).
pub(crate) fn parse(lit: &LitStr, params: &[Ident], has_receiver: bool) -> syn::Result<Template> {
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
                parts.push(placeholder_expr(
                    &placeholder,
                    &value,
                    params,
                    has_receiver,
                    span,
                )?);
                format.push_str("{}");
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') => {
                format.push(c);
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
        parts,
        span,
    })
}

/// `name` or `name.field.0`, as an expression spanned on the template.
fn placeholder_expr(
    placeholder: &str,
    tag: &str,
    params: &[Ident],
    has_receiver: bool,
    span: Span,
) -> syn::Result<TokenStream> {
    let mut segments = placeholder.split('.');
    let name = segments.next().unwrap_or_default().trim();
    let known = params.iter().any(|p| p == name) || (has_receiver && name == "self");
    if !known {
        let mut names: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
        if has_receiver {
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
    let mut expr = match name {
        "self" => quote_spanned!(span=> self),
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
    Ok(expr)
}
