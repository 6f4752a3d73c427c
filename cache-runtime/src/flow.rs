//! The cache-aside flow behind every annotated call.
//!
//! 1. Single-flight: the first caller of a key in this process leads; concurrent callers follow
//!    and share its outcome ([`crate::stampede::single_flight`]).
//! 2. The leader reads the entry. Fresh: served. Close to expiry: served, and the leader may
//!    refresh it early (XFetch). In its stale window: served to the followers at once, while the
//!    leader refreshes it; if that fails (`Err`), the stale value is served (fail-safe).
//! 3. No usable entry: the leader takes the key's lock or waits for the process holding it
//!    ([`crate::stampede::lock_or_wait`]), then computes, hands the value to its followers,
//!    stores it (with the release of the lock, in one round trip) and returns it. The store runs
//!    in a spawned task that the caller awaits, so a cancelled caller's store still lands; with
//!    [`CacheBuilder::background_stores`](crate::CacheBuilder::background_stores) the caller
//!    does not wait for it. With `lock = false` the lock is asked for in a spawned task as the
//!    function starts, so the caller never waits for another process. Only a lock holder stores,
//!    and only while it still holds the lock: that is the fence that keeps an invalidation from
//!    being undone by a computation that started before it ([`crate::stampede::lock`]).
//! 4. A write-through refresh ([`crate::invalidation::refresh`]) skips the lookup, takes the lock
//!    over, computes and stores.
//!
//! Fail open: whatever Redis does (down, slow, wrong type, garbage), the caller gets the
//! function's own value. A panic or cancellation inside the function leaves nothing behind: the
//! single-flight slot and the lock are released by their drop guards.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
use crate::stats::Count;

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
    // Asked for by a `_refresh` companion around this call; taken here, so calls made by the
    // function's body are ordinary calls.
    let write_through = crate::invalidation::take_refresh_request();
    let Some(conn) = cache.connection() else {
        return bypass(site, body).await;
    };
    // The Redis client needs a Tokio reactor; anywhere else the function simply runs. Inside a
    // Tokio task (nearly every call) that is known without touching the runtime's handle.
    if tokio::task::try_id().is_none() && tokio::runtime::Handle::try_current().is_err() {
        return bypass(site, body).await;
    }
    let key = call.render(cache.prefix(), &site.spec, site.fingerprint());
    let (Some(key), Some(id)) = (key, call.flight_id(site)) else {
        tracing::debug!(
            function = site.display(),
            "redis_cache: an argument could not be serialized; running uncached"
        );
        return bypass(site, body).await;
    };
    let this = Call {
        site,
        cache,
        conn,
        key: &key,
    };
    if write_through {
        let leader = cache.flights().lead_anew(id);
        return Box::pin(this.write_through::<P, R, F>(leader, body)).await;
    }
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
                    site.count(Count::Coalesced);
                    return P::from_stored(value);
                }
            }
            Some(Outcome::Absent) => {
                if let Some(value) = P::absent() {
                    site.count(Count::Coalesced);
                    return value;
                }
            }
            Some(Outcome::RunYourself) => {}
            // The leader was cancelled or panicked: lead (or follow) anew.
            None => continue,
        }
        // The leader's value cannot be shared (an `Err`): this call runs the function itself,
        // and leaves storing to whoever holds the key's lock next.
        site.count(Count::Misses);
        let body = body.take().expect("a call runs its body at most once");
        return Box::pin(this.execute(body, None)).await.0;
    }
}

/// Runs the function without the cache.
async fn bypass<R>(site: &Site, body: impl Future<Output = R>) -> R {
    site.count(Count::Fallbacks);
    let started = Instant::now();
    let value = body.await;
    site.took_function(started.elapsed());
    site.count(Count::Executions);
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

/// What a leader's followers get for `value` (sealed or not).
fn outcome_of<P: Policy<R>, R>(value: &R, sealed: Sealed) -> Outcome {
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
    /// The lookup, and what follows it. Only the hit is handled in place: everything else
    /// (fallback, refresh, lock and computation) runs in a boxed future, so the future every
    /// call carries is small and a hit does not copy kilobytes of state it never uses.
    async fn lead<P, R, F>(self, leader: Leader<'_>, body: F) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let site = self.site;
        let found = match site.redis(self.conn.get(self.key)).await {
            Ok(found) => found,
            Err(StoreError::WrongType) => {
                site.count(Count::Invalid);
                None
            }
            Err(err) => return Box::pin(self.fall_back::<P, R, F>(leader, body, err)).await,
        };

        if let Some(bytes) = found {
            match envelope::open::<ActiveCodec, P::Stored>(&bytes) {
                Ok((meta, value)) => {
                    let now = unix_ms(SystemTime::now());
                    let why = match freshness::judge(&meta, now, &site.spec, freshness::draw_open())
                    {
                        Freshness::Fresh => {
                            site.count(Count::Hits);
                            leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                            return P::from_stored(value);
                        }
                        Freshness::RefreshEarly => Some(Refresh::Early),
                        Freshness::Stale => Some(Refresh::Stale),
                        Freshness::Expired => None,
                    };
                    if let Some(why) = why {
                        // The followers are served at once; only this call refreshes.
                        leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                        return Box::pin(self.refresh::<P, R, F>(meta, value, body, why)).await;
                    }
                }
                Err(invalid) => {
                    site.problem(
                        Count::Invalid,
                        "unreadable entry; recomputed and overwritten",
                        &invalid,
                    );
                }
            }
        }
        Box::pin(self.compute::<P, R, F>(leader, body)).await
    }

    /// The lookup failed: run the function without the cache.
    async fn fall_back<P, R, F>(self, leader: Leader<'_>, body: F, err: StoreError) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let site = self.site;
        // `Unavailable`: no attempt was made, the circuit breaker is open. Anything else is a
        // failed command.
        if !matches!(err, StoreError::Unavailable) {
            site.problem(Count::Errors, "lookup failed; the call ran uncached", &err);
        }
        site.count(Count::Fallbacks);
        let (value, took) = self.execute(body, None).await;
        // Nothing is stored: encode only if someone waits for this value.
        leader.publish_with(|| outcome_of::<P, R>(&value, self.seal::<P, R>(&value, took)));
        value
    }

    /// No usable entry: take the key's lock, or wait for the process that holds it, then
    /// compute. Without the lock this call computes anyway but does not store (see
    /// `crate::stampede::lock`).
    async fn compute<P, R, F>(self, leader: Leader<'_>, body: F) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let site = self.site;
        if !site.spec.lock {
            return self.compute_unlocked::<P, R, F>(leader, body).await;
        }
        let lock = match self.lock_or_wait::<P::Stored>().await {
            Ok(Waited::Lock(held)) => Some(held),
            Ok(Waited::Entry(value, bytes)) => {
                site.count(Count::Hits);
                leader.publish_with(|| Outcome::Entry(Arc::new(bytes)));
                return P::from_stored(value);
            }
            Ok(Waited::GaveUp) => None,
            Err(err) => {
                if !matches!(err, StoreError::Unavailable) {
                    site.problem(
                        Count::Errors,
                        "lock failed; computed without it and not stored",
                        &err,
                    );
                }
                None
            }
        };
        site.count(Count::Misses);
        let (value, took) = self.execute(body, lock.as_ref()).await;
        let Some(lock) = lock else {
            leader.publish_with(|| outcome_of::<P, R>(&value, self.seal::<P, R>(&value, took)));
            return value;
        };
        let sealed = self.seal::<P, R>(&value, took);
        leader.publish(outcome_of::<P, R>(&value, sealed.clone()));
        // Until the store lands the lock stays held, so a caller arriving meanwhile (in any
        // process) finds the entry with the lock, or waits for the release that comes with it.
        self.landed(self.spawn_store(sealed, lock)).await;
        value
    }

    /// Stores in a spawned task, so that the store lands even if this caller is cancelled.
    fn spawn_store(&self, sealed: Sealed, lock: Lock) -> JoinHandle<()> {
        let (site, cache) = (self.site, self.cache.clone());
        self.cache
            .background()
            .spawn(async move { store(site, &cache, sealed, lock).await })
    }

    /// Waits for a spawned store, unless the cache stores in the background. Dropping the
    /// handle (this caller cancelled) leaves the store running.
    async fn landed(&self, storing: JoinHandle<()>) {
        if !self.cache.background_stores() {
            // A panic in the store task is not the caller's: it has its value.
            let _ = storing.await;
        }
    }

    /// `lock = false`: the caller computes at once and never waits for another process. The
    /// key's lock is asked for in a spawned task as the function starts, and renewed there while
    /// it runs; if this call got it, the value is stored with it (fenced like any other store)
    /// before the call returns (unless stores run in the background), and if another process
    /// holds it, that process stores.
    async fn compute_unlocked<P, R, F>(self, leader: Leader<'_>, body: F) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let site = self.site;
        let (hand_over, value_ready) = oneshot::channel::<Sealed>();
        let key = self.key.to_owned();
        let cache = self.cache.clone();
        let storing = self.cache.background().spawn(async move {
            let Some(conn) = cache.connection() else {
                return;
            };
            let lock_key = lock::lock_key(&key);
            let lease = cache.locks().lease;
            let attempt = site
                .redis(lock::try_acquire(&cache, conn, &key, &lock_key, lease))
                .await;
            let lock = match attempt {
                Ok(lock::Attempt {
                    lock: Some(lock), ..
                }) => lock,
                // Another process computes the key and will store it.
                Ok(_) => return,
                Err(err) => {
                    if !matches!(err, StoreError::Unavailable) {
                        site.problem(
                            Count::Errors,
                            "lock failed; computed without it and not stored",
                            &err,
                        );
                    }
                    return;
                }
            };
            match lock.hold_while(value_ready).await {
                Ok(sealed) => store(site, &cache, sealed, lock).await,
                // The caller was cancelled or panicked: nothing to store.
                Err(_) => lock.release().await,
            }
        });
        site.count(Count::Misses);
        let (value, took) = self.execute(body, None).await;
        let sealed = self.seal::<P, R>(&value, took);
        leader.publish(outcome_of::<P, R>(&value, sealed.clone()));
        // The spawned task stores it, once it knows whether it holds the lock.
        let _ = hand_over.send(sealed);
        self.landed(storing).await;
        value
    }

    /// A write-through refresh: no lookup; take the key's lock over (fencing off any computation
    /// that started before), compute, and store.
    async fn write_through<P, R, F>(self, leader: Leader<'_>, body: F) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let site = self.site;
        let lease = self.cache.locks().lease;
        let lock = match site
            .redis(lock::take_over(self.cache, self.conn, self.key, lease))
            .await
        {
            Ok(lock) => Some(lock),
            Err(err) => {
                if !matches!(err, StoreError::Unavailable) {
                    site.problem(
                        Count::Errors,
                        "refresh could not take the lock; computed and not stored",
                        &err,
                    );
                }
                None
            }
        };
        site.count(if lock.is_some() {
            Count::Misses
        } else {
            Count::Fallbacks
        });
        let (value, took) = self.execute(body, lock.as_ref()).await;
        let sealed = self.seal::<P, R>(&value, took);
        leader.publish(outcome_of::<P, R>(&value, sealed.clone()));
        if let Some(lock) = lock {
            // A write-through is asked for explicitly: its caller always waits for the store.
            let _ = self.spawn_store(sealed, lock).await;
        }
        value
    }

    /// Takes the key's lock or waits for its holder.
    async fn lock_or_wait<T: CacheValue>(&self) -> Result<Waited<T>, StoreError> {
        let Some(notifier) = self.cache.notifier() else {
            return Ok(Waited::GaveUp);
        };
        let spec = &self.site.spec;
        let settings = self.cache.locks();
        stampede::lock_or_wait(
            self.cache,
            self.conn,
            notifier,
            self.key,
            settings,
            self.site,
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
    async fn refresh<P, R, F>(self, meta: Meta, current: P::Stored, body: F, why: Refresh) -> R
    where
        P: Policy<R>,
        P::Stored: CacheValue,
        F: Future<Output = R>,
    {
        let site = self.site;
        let served = match why {
            Refresh::Early => Count::Hits,
            Refresh::Stale => Count::Stale,
        };
        // One refresh per key at a time, across processes: whoever takes the lock.
        let lock_key = lock::lock_key(self.key);
        let attempt = site
            .redis(lock::try_acquire(
                self.cache,
                self.conn,
                self.key,
                &lock_key,
                self.cache.locks().lease,
            ))
            .await;
        let Ok(lock::Attempt {
            lock: Some(lock),
            entry,
        }) = attempt
        else {
            site.count(served);
            return P::from_stored(current);
        };
        // Someone refreshed between our read and our lock (and released it): serve theirs.
        if let Some(Ok((newer, value))) =
            entry.map(|bytes| envelope::open::<ActiveCodec, P::Stored>(&bytes))
            && newer.computed_at_ms > meta.computed_at_ms
        {
            lock.release().await;
            site.count(Count::Hits);
            return P::from_stored(value);
        }
        let (value, took) = self.execute(body, Some(&lock)).await;
        let sealed = self.seal::<P, R>(&value, took);
        if sealed.is_some() || P::is_absent(&value) {
            site.count(match why {
                Refresh::Early => Count::EarlyRefreshes,
                Refresh::Stale => Count::Misses,
            });
            if why == Refresh::Early {
                site.count(Count::Hits);
            }
            self.landed(self.spawn_store(sealed, lock)).await;
            return value;
        }
        // The function failed: keep serving what we have (fail-safe).
        site.count(served);
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

    /// Runs the function (renewing `lock` meanwhile); returns its value and how long it took.
    async fn execute<R, F>(&self, body: F, lock: Option<&Lock>) -> (R, Duration)
    where
        F: Future<Output = R>,
    {
        let started = Instant::now();
        let value = match lock {
            Some(lock) => lock.hold_while(body).await,
            None => body.await,
        };
        let took = started.elapsed();
        self.site.took_function(took);
        self.site.count(Count::Executions);
        (value, took)
    }

    /// The envelope of `value` and how long Redis should keep it, if the policy stores it.
    fn seal<P, R>(&self, value: &R, took: Duration) -> Sealed
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
                self.site.problem(
                    Count::Errors,
                    "value could not be encoded; not stored",
                    &err,
                );
                None
            }
        }
    }
}

/// An encoded value and how long Redis should keep it; `None` when the policy stores nothing.
type Sealed = Option<(Arc<Vec<u8>>, Duration)>;

/// Stores an envelope and releases `lock` in one round trip (if the lock is still held), or just
/// releases `lock`.
async fn store(site: &'static Site, cache: &Cache, sealed: Sealed, mut lock: Lock) {
    let max_bytes = cache.limits().max_bytes;
    let (bytes, keep) = match sealed {
        Some((bytes, _)) if bytes.len() > max_bytes => {
            site.count(Count::Oversize);
            site.warn_oversize(bytes.len(), max_bytes);
            return lock.release().await;
        }
        Some(sealed) => sealed,
        None => return lock.release().await,
    };
    match site.redis(lock.store(&bytes, keep)).await {
        Ok(true) => {
            site.count(Count::Writes);
            if let Some(conn) = cache.connection() {
                conn.write_succeeded();
            }
        }
        Ok(false) => {
            site.count(Count::Fenced);
            tracing::debug!(
                key = lock.key(),
                "redis_cache: the key was invalidated or refreshed while this value was computed; \
                 not stored"
            );
        }
        Err(err) => site.problem(
            Count::Errors,
            "store failed; the value was returned but not cached",
            &err,
        ),
    }
}
