//! The cache-aside flow behind every annotated call.
//!
//! 1. Single-flight: the first caller of a key in this process leads; concurrent callers follow
//!    and share its outcome ([`crate::stampede::single_flight`]).
//! 2. The leader reads the entry. Fresh: served. Close to expiry: served, and the leader may
//!    refresh it early (XFetch). In its stale window: served to the followers at once, while the
//!    leader refreshes it; if that fails (`Err`), the stale value is served (fail-safe).
//! 3. No usable entry: the leader takes the key's lock or waits for the process holding it
//!    ([`crate::stampede::lock_or_wait`]), then computes, hands the value to its followers, and
//!    stores it (with the release of the lock, in one round trip).
//!
//! Fail open: whatever Redis does (down, slow, wrong type, garbage), the caller gets the
//! function's own value. A panic or cancellation inside the function leaves nothing behind: the
//! single-flight slot and the lock are released by their drop guards.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::Cache;
use crate::codec::ActiveCodec;
use crate::connection::{Connection, StoreError};
use crate::envelope::{self, Meta, unix_ms};
use crate::freshness::{self, Freshness};
use crate::key::CallKey;
use crate::policy::{CacheValue, Policy};
use crate::site::Site;
use crate::stampede::lock::{self, Lock};
use crate::stampede::single_flight::{Join, Leader, Outcome};
use crate::stampede::{self, Waited};
use crate::stats::Counters;

/// After a refresh in the stale window fails, the stale value is served for this long before the
/// next caller tries again, so a failing database is not hammered once per call.
const FAILED_REFRESH_BACKOFF: Duration = Duration::from_secs(1);

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
    let (Some(key), Some(id)) = (call.render(cache.prefix(), site), call.flight_id(site)) else {
        tracing::debug!(
            function = site.display(),
            "redis_cache: an argument could not be serialized; running uncached"
        );
        return bypass(counters, body).await;
    };
    let this = Call {
        site,
        cache,
        conn,
        key: &key,
    };
    let mut body = Some(body);
    loop {
        let follower = match cache.flights().join(id) {
            Join::Lead(leader) => {
                let body = body.take().expect("a call leads at most once");
                return this.lead::<P, R, F>(leader, body).await;
            }
            Join::Follow(follower) => follower,
        };
        match follower.outcome().await {
            Some(Outcome::Entry(bytes)) => {
                if let Ok((_, value)) = envelope::open::<ActiveCodec, P::Stored>(&bytes) {
                    Counters::bump(&counters.coalesced);
                    return P::from_stored(value);
                }
            }
            Some(Outcome::Absent) => {
                if let Some(value) = P::absent() {
                    Counters::bump(&counters.coalesced);
                    return value;
                }
            }
            Some(Outcome::RunYourself) => {}
            // The leader was cancelled or panicked: lead (or follow) anew.
            None => continue,
        }
        // The leader's value cannot be shared (an `Err`): this call runs the function itself.
        Counters::bump(&counters.misses);
        let body = body.take().expect("a call runs its body at most once");
        let computed = this.compute::<P, R, F>(body, None).await;
        this.store(computed.sealed, None).await;
        return computed.value;
    }
}

/// Runs the function without the cache.
async fn bypass<R>(counters: &Counters, body: impl Future<Output = R>) -> R {
    Counters::bump(&counters.fallbacks);
    let value = body.await;
    Counters::bump(&counters.executions);
    value
}

/// One call's context.
#[derive(Clone, Copy)]
struct Call<'a> {
    site: &'static Site,
    cache: &'a Cache,
    conn: &'a Connection,
    key: &'a str,
}

/// A freshly computed value, and its envelope if it is to be stored.
struct Computed<R> {
    value: R,
    /// The envelope and how long Redis keeps it.
    sealed: Option<(Arc<Vec<u8>>, Duration)>,
}

/// What a leader's followers get for `value` (sealed or not).
fn outcome_of<P: Policy<R>, R>(value: &R, sealed: Option<(Arc<Vec<u8>>, Duration)>) -> Outcome {
    match sealed {
        Some((bytes, _)) => Outcome::Entry(bytes),
        None if P::is_absent(value) => Outcome::Absent,
        None => Outcome::RunYourself,
    }
}

/// Why a leader recomputes an entry it could serve.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Fresh, but XFetch chose this call to refresh it ahead of expiry.
    Early,
    /// Past its TTL, inside the stale window.
    Stale,
}

impl Call<'_> {
    fn counters(&self) -> &'static Counters {
        &self.site.counters
    }

    async fn lead<P, R, F>(self, leader: Leader<'_>, body: F) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let counters = self.counters();
        let found = match self.conn.get(self.key).await {
            Ok(found) => found,
            Err(StoreError::WrongType) => {
                Counters::bump(&counters.invalid);
                None
            }
            Err(err) => {
                // `Unavailable`: no attempt was made, Redis failed recently and the reconnect
                // backoff is running. Anything else is a failed command.
                if !matches!(err, StoreError::Unavailable) {
                    Counters::bump(&counters.errors);
                    tracing::debug!(key = self.key, error = %err, "redis_cache: lookup failed; running uncached");
                }
                Counters::bump(&counters.fallbacks);
                let (value, took) = self.execute(body, None).await;
                // Nothing is stored: encode only if someone waits for this value.
                leader.publish_with(|| outcome_of::<P, R>(&value, self.seal::<P, R>(&value, took)));
                return value;
            }
        };

        if let Some(bytes) = found {
            match envelope::open::<ActiveCodec, P::Stored>(&bytes) {
                Ok((meta, value)) => {
                    let now = unix_ms(SystemTime::now());
                    match freshness::judge(&meta, now, &self.site.spec, freshness::draw_open()) {
                        Freshness::Fresh => {
                            Counters::bump(&counters.hits);
                            leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                            return P::from_stored(value);
                        }
                        Freshness::RefreshEarly => {
                            // The followers are served at once; only this call refreshes.
                            leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                            return self
                                .refresh::<P, R, F>(meta, value, body, Refresh::Early)
                                .await;
                        }
                        Freshness::Stale => {
                            leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                            return self
                                .refresh::<P, R, F>(meta, value, body, Refresh::Stale)
                                .await;
                        }
                        Freshness::Expired => {}
                    }
                }
                Err(invalid) => {
                    Counters::bump(&counters.invalid);
                    tracing::debug!(key = self.key, %invalid, "redis_cache: unreadable entry; recomputing");
                }
            }
        }

        // No usable entry. Unless the function opted out, take the key's lock or wait for the
        // process that holds it.
        let mut lock = None;
        let mut reachable = true;
        if self.site.spec.lock {
            match self.lock_or_wait::<P::Stored>().await {
                Ok(Waited::Lock(held)) => lock = Some(held),
                Ok(Waited::Entry(value, bytes)) => {
                    Counters::bump(&counters.hits);
                    leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                    return P::from_stored(value);
                }
                Ok(Waited::GaveUp) => {}
                Err(err) => {
                    // Redis stopped answering during this call: do not spend a second deadline
                    // on the store. Any other error (a server without scripting, say) still
                    // lets a plain SET store the value.
                    reachable = !matches!(err, StoreError::Timeout | StoreError::Unavailable);
                    if !matches!(err, StoreError::Unavailable) {
                        Counters::bump(&counters.errors);
                    }
                    tracing::debug!(key = self.key, error = %err, "redis_cache: lock failed; computing without it");
                }
            }
        }
        Counters::bump(&counters.misses);
        let (value, took) = self.execute(body, lock.as_ref()).await;
        if !reachable {
            leader.publish_with(|| outcome_of::<P, R>(&value, self.seal::<P, R>(&value, took)));
            return value;
        }
        let sealed = self.seal::<P, R>(&value, took);
        // Followers first: they need not wait for the store's round trip.
        leader.publish(outcome_of::<P, R>(&value, sealed.clone()));
        self.store(sealed, lock).await;
        value
    }

    async fn lock_or_wait<T: CacheValue>(&self) -> Result<Waited<T>, StoreError> {
        let Some(notifier) = self.cache.notifier() else {
            return Ok(Waited::GaveUp);
        };
        let spec = &self.site.spec;
        stampede::lock_or_wait(
            self.cache,
            self.conn,
            notifier,
            self.key,
            self.cache.locks(),
            self.counters(),
            |bytes| {
                let (meta, value) = envelope::open::<ActiveCodec, T>(bytes).ok()?;
                let now = unix_ms(SystemTime::now());
                // Anything servable ends the wait: the holder just stored it.
                (freshness::judge(&meta, now, spec, 1.0) != Freshness::Expired).then_some(value)
            },
        )
        .await
    }

    /// Recomputes an entry that can still be served (`current`), if no one else is doing so.
    async fn refresh<P, R, F>(&self, meta: Meta, current: P::Stored, body: F, why: Refresh) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let counters = self.counters();
        let served = match why {
            Refresh::Early => &counters.hits,
            Refresh::Stale => &counters.stale,
        };
        // One refresh per key at a time, across processes: whoever takes the lock.
        let lock_key = lock::lock_key(self.key);
        let attempt = lock::try_acquire(
            self.cache,
            self.conn,
            self.key,
            &lock_key,
            self.cache.locks().lease,
        )
        .await;
        let Ok(lock::Attempt {
            lock: Some(lock),
            entry,
        }) = attempt
        else {
            Counters::bump(served);
            return P::from_stored(current);
        };
        // Someone refreshed between our read and our lock (and released it): serve theirs.
        if let Some(Ok((newer, value))) =
            entry.map(|bytes| envelope::open::<ActiveCodec, P::Stored>(&bytes))
            && newer.computed_at_ms > meta.computed_at_ms
        {
            lock.release().await;
            Counters::bump(&counters.hits);
            return P::from_stored(value);
        }
        let computed = self.compute::<P, R, F>(body, Some(&lock)).await;
        if computed.sealed.is_some() || P::is_absent(&computed.value) {
            Counters::bump(match why {
                Refresh::Early => &counters.early_refreshes,
                Refresh::Stale => &counters.misses,
            });
            if why == Refresh::Early {
                Counters::bump(&counters.hits);
            }
            self.store(computed.sealed, Some(lock)).await;
            return computed.value;
        }
        // The function failed: keep serving what we have (fail-safe).
        Counters::bump(served);
        tracing::debug!(
            key = self.key,
            "redis_cache: refresh failed; serving the entry still in the cache"
        );
        match why {
            Refresh::Early => lock.release().await,
            Refresh::Stale => lock.keep_for(FAILED_REFRESH_BACKOFF).await,
        }
        P::from_stored(current)
    }

    /// Runs the function (renewing `lock` meanwhile) and seals its value if it is to be stored.
    async fn compute<P, R, F>(&self, body: F, lock: Option<&Lock>) -> Computed<R>
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let (value, took) = self.execute(body, lock).await;
        let sealed = self.seal::<P, R>(&value, took);
        Computed { value, sealed }
    }

    /// Runs the function; returns its value and how long it took.
    async fn execute<R, F>(&self, body: F, lock: Option<&Lock>) -> (R, Duration)
    where
        F: Future<Output = R>,
    {
        let started = Instant::now();
        let value = match lock {
            Some(lock) => lock.hold_while(body).await,
            None => body.await,
        };
        Counters::bump(&self.counters().executions);
        (value, started.elapsed())
    }

    /// The envelope of `value` and how long Redis should keep it, if the policy stores it.
    fn seal<P, R>(&self, value: &R, took: Duration) -> Option<(Arc<Vec<u8>>, Duration)>
    where
        P: Policy<R>,
        P::Stored: CacheValue,
    {
        let spec = &self.site.spec;
        let (stored, ttl_secs) = P::to_store(value, spec)?;
        let (fresh, keep) = freshness::lifetimes(ttl_secs, spec, fastrand::f64());
        let meta = Meta::new(SystemTime::now(), fresh, took);
        match envelope::seal::<ActiveCodec, _>(stored, meta, self.cache.limits().compress_above) {
            Ok(bytes) => Some((Arc::new(bytes), keep)),
            Err(err) => {
                Counters::bump(&self.counters().errors);
                tracing::debug!(key = self.key, error = %err, "redis_cache: value could not be encoded");
                None
            }
        }
    }

    /// Stores an envelope (releasing `lock` in the same round trip), or just releases `lock`.
    async fn store(&self, sealed: Option<(Arc<Vec<u8>>, Duration)>, lock: Option<Lock>) {
        let counters = self.counters();
        let max_bytes = self.cache.limits().max_bytes;
        let (sealed, lock) = match sealed {
            Some((bytes, _)) if bytes.len() > max_bytes => {
                Counters::bump(&counters.oversize);
                self.site.warn_oversize(bytes.len(), max_bytes);
                (None, lock)
            }
            sealed => (sealed, lock),
        };
        let result = match (sealed, lock) {
            (Some((bytes, keep)), Some(lock)) => lock.store(&bytes, keep).await,
            (Some((bytes, keep)), None) => self.conn.set(self.key, &bytes, keep).await,
            (None, Some(lock)) => return lock.release().await,
            (None, None) => return,
        };
        match result {
            Ok(()) => {
                Counters::bump(&counters.writes);
                self.conn.write_succeeded();
            }
            Err(err) => {
                Counters::bump(&counters.errors);
                tracing::debug!(key = self.key, error = %err, "redis_cache: store failed");
            }
        }
    }
}
