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
//! process has not called (the list of known ones is in the message), 503 when Redis cannot be
//! reached or caching is disabled.
//!
//! **The router has no authentication of its own.** Clearing a cache sends its whole load to the
//! database, so mount it behind the application's own authentication and authorization, on an
//! internal port or path:
//!
//! ```no_run
//! # async fn run(cache: cache_runtime::Cache, app: axum::Router) {
//! let admin = cache_runtime::admin::router(cache);
//! // For example: `.nest("/internal", admin.route_layer(your_auth_layer))`.
//! let app: axum::Router = app.nest("/internal", admin);
//! # }
//! ```

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Cache, CacheError, FunctionStats};

/// The admin endpoints for `cache`, to merge or nest into the application's router (behind its
/// authentication: see the [module docs](self)).
pub fn router<S: Clone + Send + Sync + 'static>(cache: Cache) -> Router<S> {
    Router::new()
        .route("/cache/stats", get(stats))
        .route("/cache/invalidate", post(invalidate))
        .route("/cache/clear", post(clear))
        .with_state(cache)
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

async fn stats(State(cache): State<Cache>) -> Response {
    let snapshot = crate::snapshot();
    let functions: Vec<WithRatio<'_>> = snapshot.functions.iter().map(WithRatio::from).collect();
    let redis = match cache.health().await {
        Ok(health) => json!({
            "version": health.redis_version,
            "used_memory": health.used_memory,
            "maxmemory": health.maxmemory,
            "maxmemory_policy": health.maxmemory_policy,
            "evicted_keys": health.evicted_keys,
            "expired_keys": health.expired_keys,
            "warnings": health.warnings(),
        }),
        Err(err) => json!({ "error": err.to_string() }),
    };
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

async fn invalidate(State(cache): State<Cache>, body: Bytes) -> Response {
    let target: InvalidateRequest = match serde_json::from_slice(&body) {
        Ok(target) => target,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid body: {err}; {USAGE}"),
            );
        }
    };
    let removed = match (target.function, target.prefix, target.tag) {
        (Some(function), None, None) => {
            let known: Vec<String> = crate::stats().into_iter().map(|s| s.function).collect();
            if !known.contains(&function) {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no cached function named {function:?} has been called in this process; \
                         known: {known:?}"
                    ),
                );
            }
            cache.clear_function(&function).await
        }
        (None, Some(prefix), None) => cache.clear_prefix(&prefix).await,
        (None, None, Some(tag)) => cache.invalidate_tag(&tag).await,
        _ => return error(StatusCode::BAD_REQUEST, USAGE.to_string()),
    };
    removed_or_error(removed)
}

const USAGE: &str =
    r#"send {"function": "module::fn"}, {"prefix": "module::"} or {"tag": "product:42"}"#;

async fn clear(State(cache): State<Cache>, body: Bytes) -> Response {
    let empty = body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            .is_ok_and(|m| m.is_empty());
    if !empty {
        return error(
            StatusCode::BAD_REQUEST,
            "/cache/clear removes every key of the cache and takes no body (or `{}`); to remove \
             one function or prefix, use /cache/invalidate"
                .to_string(),
        );
    }
    removed_or_error(cache.clear().await)
}

fn removed_or_error(removed: Result<u64, CacheError>) -> Response {
    match removed {
        Ok(removed) => Json(json!({ "removed": removed })).into_response(),
        Err(err @ CacheError::InvalidName(_)) => error(StatusCode::BAD_REQUEST, err.to_string()),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
