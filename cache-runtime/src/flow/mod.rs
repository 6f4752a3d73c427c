//! The cache-aside flow behind every annotated call, one file per step:
//!
//! 1. Single-flight (here): the first caller of a key in this process leads; concurrent callers
//!    follow and share its outcome ([`crate::stampede::single_flight`]).
//! 2. The lookup ([`lookup`]): the leader reads the entry. Fresh: served. Close to expiry: served,
//!    and the leader may refresh it early (XFetch). In its stale window: served to the followers
//!    at once, while the leader refreshes it ([`refresh`]); if that fails (`Err`), the stale
//!    value is served (fail-safe). With `refresh = "background"` ([`body::Background`]) the
//!    refresh runs in a spawned task and the leader is served the current value too.
//! 3. The miss ([`miss`]): no usable entry. The leader takes the key's lock or waits for the
//!    process holding it ([`crate::stampede::lock_or_wait`]), then computes, hands the value to
//!    its followers, stores it and returns it. With `lock = false` the lock is asked for in a
//!    spawned task as the function starts, so the caller never waits for another process.
//! 4. The store ([`store`]): the value is sealed into an envelope, its tags are added, and it is
//!    stored with the release of the lock, in one script that stores only while the lock is
//!    still held: the fence that keeps an invalidation from being undone by a computation that
//!    started before it ([`crate::stampede::lock`]). The store runs in a spawned task that the
//!    caller awaits, so a cancelled caller's store still lands; with
//!    [`CacheBuilder::background_stores`](crate::CacheBuilder::background_stores) the caller
//!    does not wait for it.
//! 5. A write-through refresh ([`write_through`], the `_refresh` companion) skips the lookup,
//!    takes the lock over, computes and stores.
//! 6. A batch ([`batch`], `batch = ids`): the same steps for many keys at once, one round trip
//!    per step, and one call of the function for the keys still missing.
//!
//! A function with `local = N` enters through [`local`]: a decoded copy in this process answers
//! first, before any of the above (and before any future of the flow is made).
//!
//! Fail open: whatever Redis does (down, slow, wrong type, garbage), the caller gets the
//! function's own value. A panic or cancellation inside the function leaves nothing behind: the
//! single-flight slot and the lock are released by their drop guards.

use std::future::Future;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

mod batch;
mod body;
mod local;
mod lookup;
mod miss;
mod outcome;
mod refresh;
mod store;
mod write_through;

pub use batch::{
    BatchBackground, BatchBody, BatchComputed, BatchKey, BatchMap, BatchReturn, FromBatchKeys,
    ItemCodec, KeyedBy, batch_keys, batch_param, cached_batch, cached_batch_local, item_codec,
    item_codec_with_absent,
};
pub use body::{Background, Body, Computed, Inline};
pub use local::{LocalCall, cached_local};
pub use outcome::{CallOutcome, with_outcome};
pub use write_through::write_through;
pub(crate) use write_through::{take_write_through_request, write_through_requested};

use crate::cache::Cache;
use crate::connection::Connection;
use crate::key::CallKey;
use crate::local::KeepLocal;
use crate::policy::{Policy, Rules, ValueCodec};
use crate::site::Site;
use crate::stampede::lock::{Lock, Locks};
use crate::stampede::single_flight::{self, Handoff, Join};
use crate::stats::Outcome;

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
    let reporting = outcome::take_request();
    let (value, outcome) =
        answer::<P, R>(site, cache, call, codec, &rules, body, None, reporting).await;
    site.answered(outcome);
    if reporting {
        outcome::finish(outcome);
    }
    value
}

/// Whether this code runs where the Redis client can: inside a Tokio runtime. Inside a Tokio
/// task (nearly every call) that is known without touching the runtime's handle.
pub(crate) fn in_tokio() -> bool {
    tokio::task::try_id().is_some() || tokio::runtime::Handle::try_current().is_ok()
}

/// Single-flight: leads the call (lookup, then whatever it finds), or follows the call of the
/// same key already in flight in this process and shares its outcome. `reporting`: the call
/// notes the entry it serves for `{fn}_with_outcome`.
#[allow(clippy::too_many_arguments)] // one call site per entry point, each argument named there
async fn answer<P, R>(
    site: &'static Site,
    cache: &Cache,
    call: CallKey,
    codec: ValueCodec<P::Stored>,
    rules: &Rules<'_, P::Value>,
    body: impl Body<R, P::Value>,
    keep: Option<&(dyn KeepLocal<P::Stored> + Sync)>,
    reporting: bool,
) -> (R, Outcome)
where
    P: Policy<R>,
{
    // Asked for by a `_refresh` companion around this call; taken here, so calls made by the
    // function's body are ordinary calls.
    let write_through = take_write_through_request();
    if call.is_bypassed() {
        let (value, _) = Box::pin(bypass(site, body.run())).await;
        return (value, Outcome::Bypassed);
    }
    // A function whose values do not read back stores nothing: nothing to look up either.
    let codec = codec.with(cache.codec_for(&site.spec));
    let (Some(conn), Some(locks), false) = (
        cache.connection(),
        cache.locks(),
        site.stopped(codec.codec()),
    ) else {
        return Box::pin(bypass(site, body.run())).await;
    };
    // The Redis client needs a Tokio reactor; anywhere else the function simply runs.
    if !in_tokio() {
        crate::notice::no_runtime(site.display());
        return Box::pin(bypass(site, body.run())).await;
    }
    let key = call.render(cache.prefix(), &site.spec, site.fingerprint(codec.codec()));
    let id = single_flight::flight_id(site.namespace(), &call);
    let (Some(key), Some(id)) = (key, id) else {
        tracing::debug!(
            function = site.display(),
            "redis_cache: an argument could not be serialized; running uncached"
        );
        return Box::pin(bypass(site, body.run())).await;
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
        reporting,
        types: PhantomData,
    };
    if write_through {
        let leader = cache.flights().lead_anew(id, false);
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
                if let Ok((meta, value)) = codec.open(&bytes, cache.limits().decode) {
                    this.served(meta);
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

/// Runs the function without the cache. Boxed where it is called, like every path but the hit:
/// the call's future then holds the body's closure, never the body's own future (whose size is
/// the user's).
async fn bypass<R>(site: &Site, body: impl Future<Output = Computed<R>>) -> (R, Outcome) {
    let started = Instant::now();
    let value = body.await.value;
    site.executed(started.elapsed());
    (value, Outcome::Fallback)
}

/// One call's context, for a function returning `R` stored as `P` says. Each step of the flow
/// adds its methods in its own file.
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
    /// The call reports its outcome (`{fn}_with_outcome`).
    reporting: bool,
    types: PhantomData<fn() -> (P, R)>,
}

impl<P: Policy<R>, R> Clone for Call<'_, P, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Policy<R>, R> Copy for Call<'_, P, R> {}

impl<P: Policy<R>, R> Call<'_, P, R> {
    /// The call serves the entry `meta` heads (noted for `{fn}_with_outcome`).
    fn served(&self, meta: crate::envelope::Meta) {
        if self.reporting {
            outcome::served(meta);
        }
    }
}

impl<P: Policy<R>, R> Call<'_, P, R> {
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
}

/// How the function ran: when it began, how long it took, and the tags it rendered from its
/// arguments (`tags("product:{id}")`, rendered only when the body runs, so a hit renders none).
struct Ran {
    started: Instant,
    took: Duration,
    tags: Vec<String>,
}
