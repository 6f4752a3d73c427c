//! Refreshing an entry that is still served: early (XFetch chose this call, the entry is fresh)
//! or in the stale window. One refresh per key at a time across processes (whoever takes the
//! key's lock); in the call, or in a spawned task with `refresh = "background"`.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use super::body::{self, Background, RefreshAnswer, Settled};
use super::{Body, Call, Computed};
use crate::envelope::Meta;
use crate::policy::{CacheValue, Policy, Rules, ValueCodec};
use crate::stampede::lock::Attempt;
use crate::stats::{Count, Outcome};

/// After a refresh in the stale window fails, the stale value is served for this long before the
/// next caller tries again, so a failing database is not hammered once per call.
pub(super) const FAILED_REFRESH_BACKOFF: Duration = Duration::from_secs(1);

/// Why a leader recomputes an entry it could serve.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshReason {
    /// Fresh, but XFetch chose this call to refresh it ahead of expiry.
    Early,
    /// Past its TTL, inside the stale window.
    Stale,
}

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// Recomputes an entry that can still be served (`current`), if no one else is doing so:
    /// in a spawned task when the body can outlive the call (`refresh = "background"`), the
    /// caller served `current` at once; otherwise in this call.
    pub(super) async fn refresh(
        self,
        meta: Meta,
        current: P::Stored,
        body: impl Body<R, P::Value>,
        why: RefreshReason,
    ) -> (R, Outcome) {
        let served = match why {
            RefreshReason::Early => Outcome::Hit,
            RefreshReason::Stale => Outcome::Stale,
        };
        let job = body::RefreshJob {
            site: self.site,
            cache: self.cache,
            key: self.key,
            meta,
            early: why == RefreshReason::Early,
            rules: self.rules,
            codec: self.codec.codec(),
        };
        let soft_timeout = self.rules.soft_timeout_bound();
        let body = match body.detach(job, soft_timeout.is_some()) {
            // `soft_timeout`: wait for the refresh that long at most, then serve what we have
            // while it goes on.
            Ok(Some(settled)) => {
                let bound = soft_timeout.unwrap_or_default();
                match tokio::time::timeout(bound, settled).await {
                    Ok(Ok(answer)) => {
                        if let Some(newer) = answer.newer {
                            self.served(newer);
                        }
                        return (answer.value, answer.outcome);
                    }
                    Ok(Err(_)) => {}
                    Err(_) => self.site.count(Count::SoftTimeouts),
                }
                self.served(meta);
                return (P::from_stored(current), served);
            }
            Ok(None) => {
                self.served(meta);
                return (P::from_stored(current), served);
            }
            Err(body) => body,
        };
        match self.refreshed(meta, body.run(), why).await {
            Refreshed::Value(value, outcome) => (value, outcome),
            Refreshed::Newer(newer, value) => {
                self.served(newer);
                (P::from_stored(value), Outcome::Hit)
            }
            Refreshed::NotHere => {
                self.served(meta);
                (P::from_stored(current), served)
            }
        }
    }

    /// Takes the key's lock (or leaves the refresh to its holder), runs the function and stores
    /// its value; a failed function (`Err`) leaves the served entry in place.
    async fn refreshed(
        self,
        meta: Meta,
        body: impl Future<Output = Computed<R>>,
        why: RefreshReason,
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
        let limits = self.cache.limits().decode;
        if let Some(Ok((newer, value))) = entry.map(|bytes| self.codec.open(&bytes, limits))
            && newer.computed_at_ms > meta.computed_at_ms
        {
            lock.release().await;
            return Refreshed::Newer(newer, value);
        }
        let (value, ran) = self.execute(body, Some(&lock)).await;
        let sealed = self.seal(&value, &ran);
        let encoded = sealed.is_some();
        let sealed = self.storable(&value, sealed);
        if sealed.is_none() && (encoded || P::is_absent(&value)) {
            // Nothing to store: `None` (the row is gone) or a value `unless` refuses. The entry
            // served until now is removed with the lock (fenced like a store), so no caller is
            // served it any more and the next call computes, as after a miss.
            self.landed(self.spawn_remove(lock)).await;
            return Refreshed::Value(value, Outcome::Miss);
        }
        if sealed.is_some() {
            self.landed(self.spawn_store(sealed, lock)).await;
            return match why {
                // An early refresh served a fresh entry: a hit, that also recomputed it.
                RefreshReason::Early => {
                    site.count(Count::EarlyRefreshes);
                    Refreshed::Value(value, Outcome::Hit)
                }
                RefreshReason::Stale => Refreshed::Value(value, Outcome::Miss),
            };
        }
        // The function failed: keep serving what we have (fail-safe).
        tracing::debug!(
            key = self.key,
            "redis_cache: refresh failed; serving the entry still in the cache"
        );
        match why {
            RefreshReason::Early => lock.release().await,
            RefreshReason::Stale => lock.keep_for(FAILED_REFRESH_BACKOFF).await,
        }
        Refreshed::NotHere
    }
}

/// How a refresh ended, for the caller that ran it.
enum Refreshed<P: Policy<R>, R> {
    /// The function ran: its value, and how the call counts.
    Value(R, Outcome),
    /// Another caller had just refreshed it: its entry's header and value.
    Newer(Meta, P::Stored),
    /// Another caller refreshes it, or the function failed: the served entry stays.
    NotHere,
}

impl<M, F, T, R> Background<M, F, T, R> {
    /// The body of a function with `refresh = "background"` (or `soft_timeout`) returning `R`,
    /// stored as `P` says.
    pub fn new<P>(make: M) -> Self
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

/// Runs `job` in a spawned task ([`Cache::flush`](crate::Cache::flush) waits for it), unless
/// this process refreshes the key already. The body is made (the arguments moved, `self` cloned)
/// only if it runs. With `wait`, the task hands its value to the caller too.
fn spawn_refresh<P, R, M, F>(
    job: body::RefreshJob<'_, P::Value>,
    rules: Rules<'static, P::Value>,
    make: M,
    wait: bool,
) -> Option<Settled<R>>
where
    P: Policy<R> + 'static,
    M: FnOnce() -> F,
    F: Future<Output = Computed<R>> + Send + 'static,
    R: Send + 'static,
    P::Stored: CacheValue + Send + Sync + 'static,
{
    let claim = job.cache.refreshing().claim(job.key)?;
    let (settle, settled) = match wait {
        true => {
            let (settle, settled) = tokio::sync::oneshot::channel();
            (Some(settle), Some(settled))
        }
        false => (None, None),
    };
    let body = make();
    let (site, cache, key, meta) = (job.site, job.cache.clone(), job.key.to_owned(), job.meta);
    let codec = ValueCodec::new().with(job.codec);
    let why = if job.early {
        RefreshReason::Early
    } else {
        RefreshReason::Stale
    };
    job.cache.tasks().spawn(async move {
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
            codec,
            rules: &rules,
            keep: None,
            reporting: false,
            types: PhantomData,
        };
        // Its value goes to Redis; the callers were served the entry it replaces (or, with
        // `soft_timeout`, the one waiting gets it if it is still waiting).
        let refreshed = call.refreshed(meta, body, why).await;
        let answer = match refreshed {
            Refreshed::Value(value, outcome) => Some(RefreshAnswer {
                value,
                outcome,
                newer: None,
            }),
            Refreshed::Newer(newer, value) => Some(RefreshAnswer {
                value: P::from_stored(value),
                outcome: Outcome::Hit,
                newer: Some(newer),
            }),
            Refreshed::NotHere => None,
        };
        if let (Some(settle), Some(answer)) = (settle, answer) {
            let _ = settle.send(answer);
        }
    });
    settled
}
