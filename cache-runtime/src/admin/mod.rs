//! The `admin` feature: an axum [`Router`] to operate a cache over HTTP.
//!
//! | endpoint | body | answer |
//! |---|---|---|
//! | `GET /cache/stats` | | counters and latencies per function and in total, hit ratios, the circuit breaker, and Redis memory, evictions and eviction policy (from `INFO`) |
//! | `POST /cache/invalidate` | `{"function": "app::product"}`, `{"prefix": "app::catalog::"}` or `{"tag": "product:42"}` | `{"removed": N}`: every entry of that function, every key under `{cache prefix}:{prefix}`, or every entry tagged so ([`Cache::invalidate_tag`]) |
//! | `POST /cache/clear` | none, or `{}` | `{"removed": N}`: every key of this cache (under its prefix) |
//!
//! Errors are JSON too, `{"error": "..."}`: 400 for a malformed body or a name with characters
//! keys cannot have (so no pattern can reach beyond the cache's prefix), 404 for a function this
//! process has not called, 429 while another clear or invalidation runs (one at a time per
//! router, [`CONCURRENT_REMOVALS`]), 503 when Redis cannot be reached, refuses the command or
//! caching is disabled. An error names what failed, never Redis's own text (which can carry
//! user names and key names): that goes to the log, at `warn`.
//!
//! `GET /cache/stats` reads Redis's `INFO` at most once per [`INFO_INTERVAL`], however often it
//! is polled; the counters are this process's, read each time.
//!
//! **[`router`] has no authentication of its own.** Clearing a cache sends its whole load to the
//! database, so mount it behind the application's authentication, on an internal port or path.
//! [`router_with_token`] is the router behind a ready guard, [`require_bearer`]:
//! `Authorization: Bearer <token>`, compared in constant time, with the token from
//! configuration ([`BearerToken::new`] refuses an empty one):
//!
//! ```no_run
//! # async fn run(cache: redis_cached::Cache, app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use redis_cached::admin::{self, BearerToken};
//!
//! let token = BearerToken::new(std::env::var("ADMIN_TOKEN")?)?;
//! let app: axum::Router = app.nest("/internal", admin::router_with_token(cache, token));
//! # Ok(()) }
//! ```

mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

pub use token::{BearerToken, InvalidToken, require_bearer};

use crate::{Cache, CacheError, FunctionStats};

/// How long `GET /cache/stats` reuses the last `INFO` it read from Redis.
pub const INFO_INTERVAL: Duration = Duration::from_secs(5);

/// Clears and invalidations (each walks keys with `SCAN` and deletes them) one router runs at
/// a time; another one asked meanwhile gets 429.
pub const CONCURRENT_REMOVALS: usize = 1;

/// The admin endpoints for `cache`, to merge or nest into the application's router, **without
/// authentication**: put it behind the application's own, or use [`router_with_token`] (see the
/// [module docs](self)).
pub fn router<S: Clone + Send + Sync + 'static>(cache: Cache) -> Router<S> {
    let admin = Admin {
        cache,
        removals: Arc::new(Semaphore::new(CONCURRENT_REMOVALS)),
        info: Arc::new(Mutex::new(None)),
    };
    Router::new()
        .route("/cache/stats", get(stats))
        .route("/cache/invalidate", post(invalidate))
        .route("/cache/clear", post(clear))
        .with_state(admin)
}

/// [`router`] behind [`require_bearer`]: only requests with `Authorization: Bearer <token>`
/// reach it.
pub fn router_with_token<S: Clone + Send + Sync + 'static>(
    cache: Cache,
    token: BearerToken,
) -> Router<S> {
    router(cache).route_layer(from_fn_with_state(token, require_bearer))
}

/// The router's state.
#[derive(Clone)]
struct Admin {
    cache: Cache,
    /// Permits for clears and invalidations.
    removals: Arc<Semaphore>,
    /// The last `INFO` summary and when it was read; the lock makes one request read it while
    /// the others wait for it.
    info: Arc<Mutex<Option<(Instant, serde_json::Value)>>>,
}

impl Admin {
    /// Redis's memory and evictions, from an `INFO` at most [`INFO_INTERVAL`] old.
    async fn redis_info(&self) -> serde_json::Value {
        let mut last = self.info.lock().await;
        if let Some((read, info)) = &*last
            && read.elapsed() < INFO_INTERVAL
        {
            return info.clone();
        }
        let info = match self.cache.health().await {
            Ok(health) => json!({
                "version": health.redis_version,
                "used_memory": health.used_memory,
                "maxmemory": health.maxmemory,
                "maxmemory_policy": health.maxmemory_policy,
                "evicted_keys": health.evicted_keys,
                "expired_keys": health.expired_keys,
                "warnings": health.warnings(),
            }),
            Err(err) => {
                tracing::warn!(cache = %self.cache.prefix(), error = %err, "admin: cannot read Redis INFO");
                json!({ "error": "cannot read Redis INFO (the reason is in the service's log)" })
            }
        };
        *last = Some((Instant::now(), info.clone()));
        info
    }
}

/// One function's figures with its hit ratio.
#[derive(Serialize)]
struct WithRatio<'a> {
    #[serde(flatten)]
    stats: &'a FunctionStats,
    hit_ratio: f64,
}

impl<'a> From<&'a FunctionStats> for WithRatio<'a> {
    fn from(stats: &'a FunctionStats) -> Self {
        WithRatio {
            stats,
            hit_ratio: stats.hit_ratio(),
        }
    }
}

async fn stats(State(admin): State<Admin>) -> Response {
    let snapshot = crate::snapshot();
    let functions: Vec<WithRatio<'_>> = snapshot.functions.iter().map(WithRatio::from).collect();
    let redis = admin.redis_info().await;
    let cache = &admin.cache;
    Json(json!({
        "cache": { "prefix": cache.prefix(), "enabled": cache.is_enabled() },
        "breaker": cache.breaker(),
        "breakers": cache.breakers(),
        "tag_invalidations": snapshot.tag_invalidations,
        "redis": redis,
        "total": WithRatio::from(&snapshot.total),
        "functions": functions,
    }))
    .into_response()
}

/// What `POST /cache/invalidate` removes: exactly one of the three.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    function: Option<String>,
    prefix: Option<String>,
    tag: Option<String>,
}

async fn invalidate(State(admin): State<Admin>, body: Bytes) -> Response {
    let target: InvalidateRequest = match serde_json::from_slice(&body) {
        Ok(target) => target,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid body: {err}; {USAGE}"),
            );
        }
    };
    let Some(_permit) = admin.removal() else {
        return busy();
    };
    let cache = &admin.cache;
    let removed = match (target.function, target.prefix, target.tag) {
        (Some(function), None, None) => {
            if !crate::stats().iter().any(|s| s.function == function) {
                // Not the list of known ones: `GET /cache/stats` shows them, to whoever may.
                return error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no cached function named {function:?} has been called in this process"
                    ),
                );
            }
            cache.clear_function(&function).await
        }
        (None, Some(prefix), None) => cache.clear_prefix(&prefix).await,
        (None, None, Some(tag)) => cache.invalidate_tag(&tag).await,
        _ => return error(StatusCode::BAD_REQUEST, USAGE),
    };
    removed_or_error(cache, removed)
}

impl Admin {
    /// A permit to clear or invalidate, if fewer than [`CONCURRENT_REMOVALS`] run.
    fn removal(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.removals.try_acquire().ok()
    }
}

fn busy() -> Response {
    let mut busy = error(
        StatusCode::TOO_MANY_REQUESTS,
        "another clear or invalidation is running: retry when it is done",
    );
    busy.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    busy
}

const USAGE: &str =
    r#"send {"function": "module::fn"}, {"prefix": "module::"} or {"tag": "product:42"}"#;

async fn clear(State(admin): State<Admin>, body: Bytes) -> Response {
    let empty = body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            .is_ok_and(|m| m.is_empty());
    if !empty {
        return error(
            StatusCode::BAD_REQUEST,
            "/cache/clear removes every key of the cache and takes no body (or `{}`); to remove \
             one function or prefix, use /cache/invalidate",
        );
    }
    let Some(_permit) = admin.removal() else {
        return busy();
    };
    removed_or_error(&admin.cache, admin.cache.clear().await)
}

/// The count removed, or an error that says what failed without Redis's own words (logged).
fn removed_or_error(cache: &Cache, removed: Result<u64, CacheError>) -> Response {
    let err = match removed {
        Ok(removed) => return Json(json!({ "removed": removed })).into_response(),
        // The request's own input, said back.
        Err(err @ CacheError::InvalidName(_)) => {
            return error(StatusCode::BAD_REQUEST, &err.to_string());
        }
        Err(err) => err,
    };
    tracing::warn!(cache = %cache.prefix(), error = %err, "admin: removal failed");
    let what = match err {
        CacheError::Disabled => "caching is disabled",
        CacheError::Redis(_) => {
            "Redis refused the command (the reason is in the service's log); nothing or part \
             was removed"
        }
        _ => {
            "Redis is unreachable or did not answer in time; nothing or part was removed, the \
             rest expires with its TTL"
        }
    };
    error(StatusCode::SERVICE_UNAVAILABLE, what)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
