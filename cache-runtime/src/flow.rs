//! The cache-aside flow behind every annotated call: look up, decode, or run and store.
//!
//! Fail open: whatever Redis does (down, slow, wrong type, garbage), the caller gets the
//! function's own value. A hit costs one `GET` and one decode; a miss adds the function and one
//! `SET`. A panic or cancellation inside the function leaves nothing behind: the only state is
//! this future's locals.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::Cache;
use crate::codec::ActiveCodec;
use crate::connection::StoreError;
use crate::envelope::{self, Meta};
use crate::key::CallKey;
use crate::policy::{CacheValue, Policy};
use crate::site::Site;
use crate::stats::Counters;

/// Runs one call of an annotated function through the cache.
#[doc(hidden)]
pub async fn cached<P, R, F>(site: &'static Site, cache: &Cache, call: CallKey, body: F) -> R
where
    P: Policy<R>,
    P::Stored: CacheValue,
    F: Future<Output = R>,
{
    site.register(call.self_type());
    let counters = &site.counters;
    let Some(conn) = cache.connection() else {
        return bypass(counters, body).await;
    };
    // The Redis client needs a Tokio reactor; anywhere else the function simply runs.
    if tokio::runtime::Handle::try_current().is_err() {
        return bypass(counters, body).await;
    }
    let Some(key) = call.render(cache.prefix(), site) else {
        tracing::debug!(
            function = site.display(),
            "redis_cache: an argument could not be serialized; running uncached"
        );
        return bypass(counters, body).await;
    };

    match conn.get(&key).await {
        Ok(Some(bytes)) => match envelope::open::<ActiveCodec, P::Stored>(&bytes) {
            Ok((meta, value)) if meta.is_fresh(SystemTime::now()) => {
                Counters::bump(&counters.hits);
                return P::from_stored(value);
            }
            Ok(_) => {}
            Err(invalid) => {
                Counters::bump(&counters.invalid);
                tracing::debug!(%key, %invalid, "redis_cache: unreadable entry; recomputing");
            }
        },
        Ok(None) => {}
        Err(StoreError::WrongType) => Counters::bump(&counters.invalid),
        // No attempt was made: Redis failed recently and the reconnect backoff is running.
        Err(StoreError::Unavailable) => return bypass(counters, body).await,
        Err(err) => {
            Counters::bump(&counters.errors);
            tracing::debug!(%key, error = %err, "redis_cache: lookup failed; running uncached");
            return bypass(counters, body).await;
        }
    }

    Counters::bump(&counters.misses);
    let started = Instant::now();
    let value = body.await;
    Counters::bump(&counters.executions);
    if let Some((stored, ttl_secs)) = P::to_store(&value, &site.spec) {
        let ttl = Duration::from_secs(ttl_secs);
        let meta = Meta::new(SystemTime::now(), ttl, started.elapsed());
        match envelope::seal::<ActiveCodec, _>(stored, meta) {
            Ok(bytes) => match conn.set(&key, &bytes, ttl).await {
                Ok(()) => Counters::bump(&counters.writes),
                Err(err) => {
                    Counters::bump(&counters.errors);
                    tracing::debug!(%key, error = %err, "redis_cache: store failed");
                }
            },
            Err(err) => {
                Counters::bump(&counters.errors);
                tracing::debug!(%key, error = %err, "redis_cache: value could not be encoded");
            }
        }
    }
    value
}

/// Runs the function without the cache.
async fn bypass<R>(counters: &Counters, body: impl Future<Output = R>) -> R {
    Counters::bump(&counters.fallbacks);
    let value = body.await;
    Counters::bump(&counters.executions);
    value
}
