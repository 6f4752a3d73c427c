//! A ready guard for the admin router: `Authorization: Bearer <token>`, compared in constant
//! time.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The secret a request must present as `Authorization: Bearer <token>` to reach the admin
/// router ([`router_with_token`](super::router_with_token), or [`require_bearer`] on a router of
/// your own).
///
/// Made from configuration (an environment variable, a secret store), never from a literal in
/// the code: [`BearerToken::new`] refuses an empty token. Its `Debug` form does not show it.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8]>);

impl BearerToken {
    /// The token, checked: not empty, and only the characters a header value carries as they
    /// are (visible ASCII, no spaces), so that a request can present it at all.
    ///
    /// Use a long random string (32 bytes from a CSPRNG, in hex or base64): the comparison does
    /// not reveal the token's bytes through its timing, only its length.
    pub fn new(token: impl Into<String>) -> Result<Self, InvalidToken> {
        let token = token.into();
        if token.is_empty() {
            return Err(InvalidToken::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidToken::Characters);
        }
        Ok(BearerToken(token.into_bytes().into()))
    }

    /// Whether `presented` (the whole `Authorization` header value) carries this token. The
    /// scheme is case-insensitive (RFC 7235); the token is compared in constant time.
    fn admits(&self, presented: &HeaderValue) -> bool {
        let presented = presented.as_bytes();
        let Some((scheme, token)) = presented.split_at_checked(7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ") && bool::from(token.ct_eq(&self.0))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// Why [`BearerToken::new`] refused a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Empty: every request presenting `Bearer ` would be let in.
    Empty,
    /// A space, a control or a non-ASCII character, which a header value cannot carry as is.
    Characters,
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidToken::Empty => {
                "the admin token is empty: set it from configuration (for example a secret in \
                 an environment variable), or leave the admin router unmounted"
            }
            InvalidToken::Characters => {
                "the admin token has a space, control or non-ASCII character: use visible ASCII \
                 only (hex or base64 of random bytes)"
            }
        })
    }
}

impl std::error::Error for InvalidToken {}

/// Middleware letting through only requests with `Authorization: Bearer <token>`; others get
/// `401` with `WWW-Authenticate: Bearer` and a JSON error, without reaching the router.
///
/// ```no_run
/// # fn run(cache: redis_cached::Cache) -> Result<(), Box<dyn std::error::Error>> {
/// use axum::middleware::from_fn_with_state;
/// use redis_cached::admin::{self, BearerToken};
///
/// let token = BearerToken::new(std::env::var("ADMIN_TOKEN")?)?;
/// let admin: axum::Router = admin::router(cache)
///     .route_layer(from_fn_with_state(token, admin::require_bearer));
/// # Ok(()) }
/// ```
pub async fn require_bearer(
    State(token): State<BearerToken>,
    request: Request,
    next: Next,
) -> Response {
    let admitted = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|presented| token.admits(presented));
    if !admitted {
        let mut refused = super::error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <the admin token>",
        );
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refused;
    }
    next.run(request).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_is_admitted() {
        let token = BearerToken::new("s3cret-token").unwrap();
        let admits = |v: &str| token.admits(&HeaderValue::from_str(v).unwrap());
        assert!(admits("Bearer s3cret-token"));
        assert!(admits("bearer s3cret-token"));
        for refused in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer  s3cret-token",
            "Basic s3cret-token",
            "s3cret-token",
        ] {
            assert!(!admits(refused), "{refused:?}");
        }
        assert_eq!(format!("{token:?}"), "BearerToken(***)");
    }

    #[test]
    fn an_empty_or_unsendable_token_is_refused() {
        assert_eq!(BearerToken::new("").unwrap_err(), InvalidToken::Empty);
        for bad in ["a b", "tab\t", "é", "new\nline"] {
            assert_eq!(
                BearerToken::new(bad).unwrap_err(),
                InvalidToken::Characters,
                "{bad:?}"
            );
        }
    }
}
