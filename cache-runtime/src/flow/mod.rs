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
//!    With `refresh = "background"` ([`body::Background`]) the refresh runs in a spawned task
//!    and the leader is served the current value too.
//! 4. A write-through refresh ([`crate::invalidation::write_through`]) skips the lookup, takes the lock
//!    over, computes and stores.
//!
//! Fail open: whatever Redis does (down, slow, wrong type, garbage), the caller gets the
//! function's own value. A panic or cancellation inside the function leaves nothing behind: the
//! single-flight slot and the lock are released by their drop guards.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod body;

pub use body::{Background, Body, Computed, Inline};

use crate::cache::Cache;
use crate::connection::{CommandError, Connection};
use crate::envelope::{Meta, unix_ms};
use crate::freshness::{self, Freshness};
use crate::key::CallKey;
use crate::local::{Keep, KeepLocal};
use crate::policy::{CacheValue, LocalValue, Policy, Rules, ValueCodec};
use crate::site::Site;
use crate::stampede::lock::{Attempt, Lock, Locks};
use crate::stampede::single_flight::{self, Handoff, Join, Leader};
use crate::stampede::{self, Waited};
use crate::stats::{Count, Outcome};

/// The longest TTL an expression or closure can give: ten years.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// After a refresh in the stale window fails, the stale value is served for this long before the
/// next caller tries again, so a failing database is not hammered once per call.
const FAILED_REFRESH_BACKOFF: Duration = Duration::from_secs(1);

/// Runs one call of an annotated function through the cache.
///
/// Every path below returns how it answered, and this is the one place that counts it: each call
/// that returns is exactly one of the [`Outcome`]s.
#[doc(hidden)]
pub async fn cached<P, R, B>(
    site: &'static Site,
    cache: &Cache,
    call: CallKey,
    codec: ValueCodec<P::Stored>,
    rules: Rules<'_, P::Value>,
    body: B,
) -> R
where
    P: Policy<R>,
    B: Body<R, P::Value>,
{
    site.register(call.self_type());
    let (value, outcome) = answer::<P, R>(site, cache, call, codec, &rules, body, None).await;
    site.answered(outcome);
    value
}

/// [`cached`] for a function with `local = N`: a decoded copy in this process answers first,
/// and values read from Redis are copied for the next calls.
#[doc(hidden)]
pub async fn cached_local<P, R, B>(
    site: &'static Site,
    cache: &Cache,
    call: CallKey,
    codec: ValueCodec<P::Stored>,
    rules: Rules<'_, P::Value>,
    body: B,
) -> R
where
    P: Policy<R>,
    P::Stored: LocalValue,
    B: Body<R, P::Value>,
{
    site.register(call.self_type());
    let in_tokio = tokio::task::try_id().is_some() || tokio::runtime::Handle::try_current().is_ok();
    let store = match (cache.local(), cache.shared_connection(), call.args()) {
        (Some(tier), Some(conn), Some(args)) if in_tokio => tier
            .store::<P::Stored>(site, conn)
            .map(|store| (tier, store, args)),
        _ => None,
    };
    let Some((tier, store, args)) = store else {
        let (value, outcome) = answer::<P, R>(site, cache, call, codec, &rules, body, None).await;
        site.answered(outcome);
        return value;
    };
    if crate::invalidation::write_through_requested() {
        // The write-through replaces the entry: this process's copy goes now.
        store.get().invalidate(args);
    } else if let Some(value) = store.get().get(args, unix_ms(SystemTime::now())) {
        site.answered(Outcome::LocalHit);
        return P::from_stored(value);
    }
    let keep = Keep {
        tier,
        site,
        store: &store,
        watch: store.get().watch(args),
        local_ttl: freshness::local_ttl(&site.spec),
    };
    let (value, outcome) =
        answer::<P, R>(site, cache, call, codec, &rules, body, Some(&keep)).await;
    site.answered(outcome);
    value
}

async fn answer<P, R>(
    site: &'static Site,
    cache: &Cache,
    call: CallKey,
    codec: ValueCodec<P::Stored>,
    rules: &Rules<'_, P::Value>,
    body: impl Body<R, P::Value>,
    keep: Option<&(dyn KeepLocal<P::Stored> + Sync)>,
) -> (R, Outcome)
where
    P: Policy<R>,
{
    // Asked for by a `_refresh` companion around this call; taken here, so calls made by the
    // function's body are ordinary calls.
    let write_through = crate::invalidation::take_write_through_request();
    if call.is_bypassed() {
        let (value, _) = Box::pin(bypass(site, body.run())).await;
        return (value, Outcome::Bypassed);
    }
    let (Some(conn), Some(locks)) = (cache.connection(), cache.locks()) else {
        return bypass(site, body.run()).await;
    };
    // The Redis client needs a Tokio reactor; anywhere else the function simply runs. Inside a
    // Tokio task (nearly every call) that is known without touching the runtime's handle.
    if tokio::task::try_id().is_none() && tokio::runtime::Handle::try_current().is_err() {
        return bypass(site, body.run()).await;
    }
    let key = call.render(cache.prefix(), &site.spec, site.fingerprint());
    let id = single_flight::flight_id(site.namespace(), &call);
    let (Some(key), Some(id)) = (key, id) else {
        tracing::debug!(
            function = site.display(),
            "redis_cache: an argument could not be serialized; running uncached"
        );
        return bypass(site, body.run()).await;
    };
    let this = Call::<P, R> {
        site,
        cache,
        conn,
        locks,
        key: &key,
        codec,
        rules,
        keep,
        types: PhantomData,
    };
    if write_through {
        let leader = cache.flights().lead_anew(id);
        return Box::pin(this.write_through(leader, body.run())).await;
    }
    let mut body = Some(body);
    loop {
        let follower = match cache.flights().join(id) {
            Join::Lead(leader) => {
                let body = body.take().expect("a call leads at most once");
                return this.lead(leader, body).await;
            }
            Join::Follow(follower) => follower,
        };
        match follower.handoff().await {
            Some(Handoff::Entry(bytes)) => {
                if let Ok((_, value)) = codec.open(&bytes) {
                    return (P::from_stored(value), Outcome::Coalesced);
                }
            }
            Some(Handoff::Absent) => {
                if let Some(value) = P::absent() {
                    return (value, Outcome::Coalesced);
                }
            }
            Some(Handoff::RunYourself) => {}
            // The leader was cancelled or panicked: lead (or follow) anew.
            None => continue,
        }
        // The leader's value cannot be shared (an `Err`): this call runs the function itself,
        // and leaves storing to whoever holds the key's lock next.
        let body = body.take().expect("a call runs its body at most once");
        let (value, _) = Box::pin(this.execute(body.run(), None)).await;
        return (value, Outcome::Miss);
    }
}

/// Runs the function without the cache.
async fn bypass<R>(site: &Site, body: impl Future<Output = Computed<R>>) -> (R, Outcome) {
    let started = Instant::now();
    let value = body.await.value;
    site.executed(started.elapsed());
    (value, Outcome::Fallback)
}

/// One call's context, for a function returning `R` stored as `P` says.
struct Call<'a, P: Policy<R>, R> {
    site: &'static Site,
    cache: &'a Cache,
    conn: &'a Connection,
    locks: &'a Locks,
    key: &'a str,
    /// How values are sealed into envelopes and opened from them.
    codec: ValueCodec<P::Stored>,
    /// The attribute's `ttl = EXPR` / `ttl = |v| ...` / `unless = |v| ...`.
    rules: &'a Rules<'a, P::Value>,
    /// Where values read from Redis are copied, for a function with `local = N`.
    keep: Option<&'a (dyn KeepLocal<P::Stored> + Sync)>,
    types: PhantomData<fn() -> (P, R)>,
}

impl<P: Policy<R>, R> Clone for Call<'_, P, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Policy<R>, R> Copy for Call<'_, P, R> {}

/// Why a leader recomputes an entry it could serve.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Fresh, but XFetch chose this call to refresh it ahead of expiry.
    Early,
    /// Past its TTL, inside the stale window.
    Stale,
}

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// The lookup, and what follows it. Only the hit is handled in place: everything else
    /// (fallback, refresh, lock and computation) runs in a boxed future, so the future every
    /// call carries is small and a hit does not copy kilobytes of state it never uses.
    async fn lead(self, leader: Leader<'_>, body: impl Body<R, P::Value>) -> (R, Outcome) {
        let site = self.site;
        let found = match site.redis(self.conn.get(self.key)).await {
            Ok(found) => found,
            Err(CommandError::WrongType) => {
                site.count(Count::Invalid);
                None
            }
            Err(err) => return Box::pin(self.fall_back(leader, body.run(), err)).await,
        };

        if let Some(bytes) = found {
            match self.codec.open(&bytes) {
                Ok((meta, value)) => {
                    let now = unix_ms(SystemTime::now());
                    let why = match freshness::judge(&meta, now, &site.spec, freshness::draw_open())
                    {
                        Freshness::Fresh => {
                            if let Some(keep) = self.keep {
                                keep.keep(self.key, &value, meta.fresh_until_ms, bytes.len());
                            }
                            leader.publish_with(|| Handoff::Entry(Arc::new(bytes)));
                            return (P::from_stored(value), Outcome::Hit);
                        }
                        Freshness::RefreshEarly => Some(Refresh::Early),
                        Freshness::Stale => Some(Refresh::Stale),
                        Freshness::Expired => None,
                    };
                    if let Some(why) = why {
                        // The followers are served at once; only this call refreshes.
                        leader.publish_with(|| Handoff::Entry(Arc::new(bytes)));
                        return Box::pin(self.refresh(meta, value, body, why)).await;
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
        Box::pin(self.compute(leader, body.run())).await
    }

    /// The lookup failed: run the function without the cache.
    async fn fall_back(
        self,
        leader: Leader<'_>,
        body: impl Future<Output = Computed<R>>,
        err: CommandError,
    ) -> (R, Outcome) {
        self.site
            .command_failed("lookup failed; the call ran uncached", &err);
        let (value, ran) = self.execute(body, None).await;
        if let Some(keep) = self.keep {
            // Redis is unreachable: the local tier memoizes alone, for `local_ttl` at most.
            let sealed = self.seal(&value, &ran);
            if let (Some(Envelope { bytes, .. }), Some((stored, ttl))) =
                (&sealed, self.lifetime(&value))
                && self.keeps(&value)
            {
                let fresh_until = unix_ms(SystemTime::now() + ttl);
                keep.keep(self.key, stored, fresh_until, bytes.len());
            }
            leader.publish(self.handoff(&value, &sealed));
            return (value, Outcome::Fallback);
        }
        // Nothing is stored: encode only if someone waits for this value.
        leader.publish_with(|| self.handoff(&value, &self.seal(&value, &ran)));
        (value, Outcome::Fallback)
    }

    /// No usable entry: take the key's lock, or wait for the process that holds it, then
    /// compute. Without the lock this call computes anyway but does not store (see
    /// `crate::stampede::lock`).
    async fn compute(
        self,
        leader: Leader<'_>,
        body: impl Future<Output = Computed<R>>,
    ) -> (R, Outcome) {
        let site = self.site;
        if !site.spec.wait_for_lock {
            return self.compute_unlocked(leader, body).await;
        }
        let lock = match self.lock_or_wait().await {
            Ok(Waited::Lock(held)) => Some(held),
            Ok(Waited::Entry((fresh_until_ms, value), bytes)) => {
                if let Some(keep) = self.keep {
                    keep.keep(self.key, &value, fresh_until_ms, bytes.len());
                }
                leader.publish_with(|| Handoff::Entry(Arc::new(bytes)));
                return (P::from_stored(value), Outcome::Hit);
            }
            Ok(Waited::GaveUp) => None,
            Err(err) => {
                site.command_failed("lock failed; computed without it and not stored", &err);
                None
            }
        };
        let (value, ran) = self.execute(body, lock.as_ref()).await;
        let Some(lock) = lock else {
            leader.publish_with(|| self.handoff(&value, &self.seal(&value, &ran)));
            return (value, Outcome::Miss);
        };
        let sealed = self.share(leader, &value, &ran);
        // Until the store lands the lock stays held, so a caller arriving meanwhile (in any
        // process) finds the entry with the lock, or waits for the release that comes with it.
        self.landed(self.spawn_store(sealed, lock)).await;
        (value, Outcome::Miss)
    }

    /// `lock = false`: the caller computes at once and never waits for another process. The
    /// key's lock is asked for in a spawned task as the function starts, and renewed there while
    /// it runs; if this call got it, the value is stored with it (fenced like any other store)
    /// before the call returns (unless stores run in the background), and if another process
    /// holds it, that process stores.
    async fn compute_unlocked(
        self,
        leader: Leader<'_>,
        body: impl Future<Output = Computed<R>>,
    ) -> (R, Outcome) {
        let site = self.site;
        let (hand_over, value_ready) = oneshot::channel::<Sealed>();
        let key = self.key.to_owned();
        let (cache, locks) = (self.cache.clone(), self.locks.clone());
        let storing = self.cache.background().spawn(async move {
            let lock = match site.redis(locks.try_acquire(&key)).await {
                Ok(attempt) => attempt.lock,
                Err(err) => {
                    site.command_failed("lock failed; computed without it and not stored", &err);
                    None
                }
            };
            // No lock: another process computes the key and will store it.
            let Some(lock) = lock else { return };
            match lock.hold_while(value_ready).await {
                Ok(sealed) => store(site, &cache, sealed, lock).await,
                // The caller was cancelled or panicked: nothing to store.
                Err(_) => lock.release().await,
            }
        });
        let (value, ran) = self.execute(body, None).await;
        let sealed = self.share(leader, &value, &ran);
        // The spawned task stores it, once it knows whether it holds the lock.
        let _ = hand_over.send(sealed);
        self.landed(storing).await;
        (value, Outcome::Miss)
    }

    /// A write-through refresh: no lookup; take the key's lock over (fencing off any computation
    /// that started before), compute, and store.
    async fn write_through(
        self,
        leader: Leader<'_>,
        body: impl Future<Output = Computed<R>>,
    ) -> (R, Outcome) {
        let site = self.site;
        let lock = match site.redis(self.locks.take_over(self.key)).await {
            Ok(lock) => Some(lock),
            Err(err) => {
                site.command_failed(
                    "refresh could not take the lock; computed and not stored",
                    &err,
                );
                None
            }
        };
        let (value, ran) = self.execute(body, lock.as_ref()).await;
        let sealed = self.share(leader, &value, &ran);
        let Some(lock) = lock else {
            return (value, Outcome::Fallback);
        };
        // A write-through is asked for explicitly: its caller always waits for the store.
        let _ = self.spawn_store(sealed, lock).await;
        (value, Outcome::Miss)
    }

    /// Takes the key's lock or waits for its holder; an entry found comes with its freshness.
    async fn lock_or_wait(&self) -> Result<Waited<(u64, P::Stored)>, CommandError> {
        let (spec, codec) = (&self.site.spec, self.codec);
        stampede::lock_or_wait(self.locks, self.site, self.key, |bytes| {
            let (meta, value) = codec.open(bytes).ok()?;
            let now = unix_ms(SystemTime::now());
            // Anything servable ends the wait: the holder just stored it.
            (freshness::judge(&meta, now, spec, 1.0) != Freshness::Expired)
                .then_some((meta.fresh_until_ms, value))
        })
        .await
    }

    /// Recomputes an entry that can still be served (`current`), if no one else is doing so:
    /// in a spawned task when the body can outlive the call (`refresh = "background"`), the
    /// caller served `current` at once; otherwise in this call.
    async fn refresh(
        self,
        meta: Meta,
        current: P::Stored,
        body: impl Body<R, P::Value>,
        why: Refresh,
    ) -> (R, Outcome) {
        let served = match why {
            Refresh::Early => Outcome::Hit,
            Refresh::Stale => Outcome::Stale,
        };
        let job = body::Refresh {
            site: self.site,
            cache: self.cache,
            key: self.key,
            meta,
            early: why == Refresh::Early,
            rules: self.rules,
        };
        let body = match body.detach(job) {
            Ok(()) => return (P::from_stored(current), served),
            Err(body) => body,
        };
        match self.refreshed(meta, body.run(), why).await {
            Refreshed::Value(value, outcome) => (value, outcome),
            Refreshed::Newer(value) => (P::from_stored(value), Outcome::Hit),
            Refreshed::NotHere => (P::from_stored(current), served),
        }
    }

    /// Takes the key's lock (or leaves the refresh to its holder), runs the function and stores
    /// its value; a failed function (`Err`) leaves the served entry in place.
    async fn refreshed(
        self,
        meta: Meta,
        body: impl Future<Output = Computed<R>>,
        why: Refresh,
    ) -> Refreshed<P, R> {
        let site = self.site;
        // One refresh per key at a time, across processes: whoever takes the lock.
        let attempt = site.redis(self.locks.try_acquire(self.key)).await;
        let Ok(Attempt {
            lock: Some(lock),
            entry,
        }) = attempt
        else {
            return Refreshed::NotHere;
        };
        // Someone refreshed between our read and our lock (and released it): serve theirs.
        if let Some(Ok((newer, value))) = entry.map(|bytes| self.codec.open(&bytes))
            && newer.computed_at_ms > meta.computed_at_ms
        {
            lock.release().await;
            return Refreshed::Newer(value);
        }
        let (value, ran) = self.execute(body, Some(&lock)).await;
        let sealed = self.seal(&value, &ran);
        let encoded = sealed.is_some();
        let sealed = self.storable(&value, sealed);
        if encoded && sealed.is_none() {
            // `unless` said no: the new value is returned, nothing is stored.
            lock.release().await;
            return Refreshed::Value(value, Outcome::Miss);
        }
        if sealed.is_some() || P::is_absent(&value) {
            self.landed(self.spawn_store(sealed, lock)).await;
            return match why {
                // An early refresh served a fresh entry: a hit, that also recomputed it.
                Refresh::Early => {
                    site.count(Count::EarlyRefreshes);
                    Refreshed::Value(value, Outcome::Hit)
                }
                Refresh::Stale => Refreshed::Value(value, Outcome::Miss),
            };
        }
        // The function failed: keep serving what we have (fail-safe).
        tracing::debug!(
            key = self.key,
            "redis_cache: refresh failed; serving the entry still in the cache"
        );
        match why {
            Refresh::Early => lock.release().await,
            Refresh::Stale => lock.keep_for(FAILED_REFRESH_BACKOFF).await,
        }
        Refreshed::NotHere
    }

    /// Runs the function (renewing `lock` meanwhile); returns its value, how long it took and
    /// the tags it rendered.
    async fn execute(
        &self,
        body: impl Future<Output = Computed<R>>,
        lock: Option<&Lock>,
    ) -> (R, Ran) {
        let started = Instant::now();
        let computed = match lock {
            Some(lock) => lock.hold_while(body).await,
            None => body.await,
        };
        let took = started.elapsed();
        self.site.executed(took);
        let ran = Ran {
            started,
            took,
            tags: computed.tags,
        };
        (computed.value, ran)
    }

    /// The envelope of `value` and how long Redis should keep it, if the policy stores it.
    fn seal(&self, value: &R, ran: &Ran) -> Sealed {
        let spec = &self.site.spec;
        let (stored, ttl) = self.lifetime(value)?;
        // Only a `ttl` or `none_ttl` expression or closure can be that short.
        if ttl < Duration::from_secs(1) {
            self.site.warn_short_ttl(ttl);
            return None;
        }
        let (fresh, keep) = freshness::lifetimes(ttl.as_secs(), spec, fastrand::f64());
        let meta = Meta::new(SystemTime::now(), fresh, ran.took);
        match self
            .codec
            .seal(stored, meta, self.cache.limits().compress_above)
        {
            Ok(bytes) => Some(Envelope {
                bytes: Arc::new(bytes),
                keep,
                tags: self.rules.tags_for(&ran.tags, P::value(value)),
                started: ran.started,
            }),
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

    /// What of `value` the policy stores, and for how long: the attribute's `ttl` (or
    /// `none_ttl`), or what its expression or closure says for this call.
    fn lifetime<'v>(&self, value: &'v R) -> Option<(&'v P::Stored, Duration)> {
        let (stored, ttl_secs) = P::to_store(value, &self.site.spec)?;
        let rule = match P::value(value) {
            Some(value) => self.rules.ttl_for(value),
            None => self.rules.none_ttl_for(),
        };
        // An expression or closure may say anything: `u64::MAX` seconds is kept as long as a TTL
        // can be (and does not overflow the arithmetic that follows).
        let ttl = rule.map_or(Duration::from_secs(ttl_secs), |ttl| ttl.min(MAX_TTL));
        Some((stored, ttl))
    }

    /// Whether `unless` lets `value` be stored (a `None` or an `Err` it does not judge).
    fn keeps(&self, value: &R) -> bool {
        P::value(value).is_none_or(|value| self.rules.keeps(value))
    }

    /// Seals `value`, hands it to the followers, and returns what may be stored.
    fn share(&self, leader: Leader<'_>, value: &R, ran: &Ran) -> Sealed {
        let sealed = self.seal(value, ran);
        leader.publish(self.handoff(value, &sealed));
        self.storable(value, sealed)
    }

    /// `sealed`, unless the attribute's `unless` says `value` is not to be stored (its
    /// followers still get it, from `sealed`).
    fn storable(&self, value: &R, sealed: Sealed) -> Sealed {
        match self.keeps(value) {
            true => sealed,
            false => None,
        }
    }

    /// What a leader's followers get for `value`, given its envelope (if any).
    fn handoff(&self, value: &R, sealed: &Sealed) -> Handoff {
        match sealed {
            Some(envelope) => Handoff::Entry(envelope.bytes.clone()),
            None if P::is_absent(value) => Handoff::Absent,
            None => Handoff::RunYourself,
        }
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
}

/// How the function ran: when it began, how long it took, and the tags it rendered from its
/// arguments (`tags("product:{id}")`, rendered only when the body runs, so a hit renders none).
struct Ran {
    started: Instant,
    took: Duration,
    tags: Vec<String>,
}

/// How a refresh ended, for the caller that ran it.
enum Refreshed<P: Policy<R>, R> {
    /// The function ran: its value, and how the call counts.
    Value(R, Outcome),
    /// Another caller had just refreshed it: its value.
    Newer(P::Stored),
    /// Another caller refreshes it, or the function failed: the served entry stays.
    NotHere,
}

impl<M, F, T> Background<M, F, T> {
    /// The body of a function with `refresh = "background"` returning `R`, stored as `P` says.
    pub fn new<P, R>(make: M) -> Self
    where
        P: Policy<R, Value = T> + 'static,
        P::Stored: CacheValue + Send + Sync + 'static,
        M: FnOnce() -> F,
        F: Future<Output = Computed<R>> + Send + 'static,
        R: Send + 'static,
        T: 'static,
    {
        Background {
            make,
            spawn: spawn_refresh::<P, R, M, F>,
            future: PhantomData,
        }
    }
}

/// Runs `job` in a spawned task ([`Cache::flush`] waits for it), unless this process refreshes
/// the key already. The body is made (the arguments moved, `self` cloned) only if it runs.
fn spawn_refresh<P, R, M, F>(
    job: body::Refresh<'_, P::Value>,
    rules: Rules<'static, P::Value>,
    make: M,
) where
    P: Policy<R> + 'static,
    M: FnOnce() -> F,
    F: Future<Output = Computed<R>> + Send + 'static,
    R: Send + 'static,
    P::Stored: CacheValue + Send + Sync + 'static,
{
    let Some(locks) = job.cache.locks() else {
        return;
    };
    let Some(claim) = locks.claim_refresh(job.key) else {
        return;
    };
    let body = make();
    let (site, cache, key, meta) = (job.site, job.cache.clone(), job.key.to_owned(), job.meta);
    let why = if job.early {
        Refresh::Early
    } else {
        Refresh::Stale
    };
    job.cache.background().spawn(async move {
        let _claim = claim;
        let (Some(conn), Some(locks)) = (cache.connection(), cache.locks()) else {
            return;
        };
        let call = Call::<P, R> {
            site,
            cache: &cache,
            conn,
            locks,
            key: &key,
            codec: ValueCodec::new(),
            rules: &rules,
            keep: None,
            types: PhantomData,
        };
        // Its value goes to Redis; the callers were served the entry it replaces.
        let _ = call.refreshed(meta, body, why).await;
    });
}

/// An encoded value and how long Redis should keep it; `None` when the policy stores nothing.
type Sealed = Option<Envelope>;

struct Envelope {
    bytes: Arc<Vec<u8>>,
    /// Redis's `PX`: the TTL and the stale window.
    keep: Duration,
    /// The entry's tags (`tags(...)`, `tags = |v| ...`), added before it is stored.
    tags: Vec<String>,
    /// When the function began: a tag invalidated after it fences the store off.
    started: Instant,
}

/// Stores an envelope and releases `lock` in one round trip (if the lock is still held), or just
/// releases `lock`.
async fn store(site: &'static Site, cache: &Cache, sealed: Sealed, mut lock: Lock) {
    let max_bytes = cache.limits().max_bytes;
    let envelope = match sealed {
        Some(envelope) if envelope.bytes.len() > max_bytes => {
            site.count(Count::Oversize);
            site.warn_oversize(envelope.bytes.len(), max_bytes);
            return lock.release().await;
        }
        Some(envelope) => envelope,
        None => return lock.release().await,
    };
    if let (false, Some(conn)) = (envelope.tags.is_empty(), cache.connection()) {
        let added = crate::tags::add(
            conn,
            cache.prefix(),
            &envelope.tags,
            lock.key(),
            envelope.keep,
            envelope.started,
        );
        // The lock is renewed meanwhile: many tags on a slow link must not let it lapse.
        match lock.hold_while(site.redis(added)).await {
            Ok(true) => {}
            Ok(false) => {
                site.count(Count::Fenced);
                tracing::debug!(
                    key = lock.key(),
                    "redis_cache: a tag of this entry was invalidated while it was computed; \
                     not stored"
                );
                return lock.release().await;
            }
            Err(err) => {
                site.command_failed(
                    "tagging failed; the value was returned but not cached",
                    &err,
                );
                return lock.release().await;
            }
        }
    }
    let (bytes, keep) = (envelope.bytes, envelope.keep);
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
        Err(err) => {
            site.command_failed("store failed; the value was returned but not cached", &err)
        }
    }
}
