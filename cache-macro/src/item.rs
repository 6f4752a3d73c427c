//! The annotated item, read leniently: its attributes, visibility and signature as syntax, its
//! body as raw tokens.
//!
//! The body is not the macro's business: it moves unchanged into the generated code, so a syntax
//! error in it is reported by rustc, once, where it is, instead of making the whole function
//! unreadable to the macro. Inner attributes (`#![allow(...)]` at the top of the body) are kept
//! apart, because they must stay at the top of a function body.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{ToTokens, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Signature, Visibility, braced, token};

pub(crate) struct CachedFn {
    /// `#[...]` before the function.
    pub outer_attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    /// `#![...]` at the top of the body.
    pub inner_attrs: Vec<Attribute>,
    /// The rest of the body, inside its braces.
    body: TokenStream,
    brace: token::Brace,
}

impl Parse for CachedFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let outer_attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        let brace = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body = content.parse()?;
        Ok(CachedFn {
            outer_attrs,
            vis,
            sig,
            inner_attrs,
            body,
            brace,
        })
    }
}

impl CachedFn {
    /// The body without its inner attributes, in its own braces (and their span), as a block
    /// expression.
    pub fn block(&self) -> Group {
        let mut block = Group::new(Delimiter::Brace, self.body.clone());
        block.set_span(self.brace.span.join());
        block
    }
}

/// The item as the user wrote it, for the output next to an error.
impl ToTokens for CachedFn {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let CachedFn {
            outer_attrs,
            vis,
            sig,
            inner_attrs,
            body,
            ..
        } = self;
        let mut block = Group::new(Delimiter::Brace, quote!(#(#inner_attrs)* #body));
        block.set_span(self.brace.span.join());
        tokens.extend(quote!(#(#outer_attrs)* #vis #sig #block));
    }
}
