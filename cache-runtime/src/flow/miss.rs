//! The miss: no usable entry. The leader takes the key's lock (or waits for the process holding
//! it and serves what that one stores), computes, hands the value to its followers and stores
//! it before returning. With `lock = false` the lock is asked for alongside the computation.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::oneshot;

use super::store::{Sealed, store};
use super::{Call, Computed};
use crate::connection::CommandError;
use crate::envelope::{Meta, unix_ms};
use crate::freshness::{self, Freshness};
use crate::policy::Policy;
use crate::stampede::single_flight::{Handoff, Leader};
use crate::stampede::{self, Waited};
use crate::stats::Outcome;

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// No usable entry: take the key's lock, or wait for the process that holds it, then
    /// compute. Without the lock this call computes anyway but does not store (see
    /// `crate::stampede::lock`).
    pub(super) async fn compute(
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
            Ok(Waited::Entry((meta, value), bytes)) => {
                if let Some(keep) = self.keep {
                    keep.keep(self.key, &value, meta, bytes.len());
                }
                leader.publish_with(|| Handoff::Entry(Arc::new(bytes)));
                self.served(meta);
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
        let envelope = sealed
            .as_ref()
            .map(|envelope| (envelope.meta, envelope.bytes.len()));
        // Until the store lands the lock stays held, so a caller arriving meanwhile (in any
        // process) finds the entry with the lock, or waits for the release that comes with it.
        let stored = self.landed(self.spawn_store(sealed, lock)).await;
        if let (Some(true), Some(envelope)) = (stored, envelope) {
            self.keep_stored(&value, envelope);
        }
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
        let storing = self.cache.tasks().spawn(async move {
            let lock = match site.redis(locks.try_acquire_begun(&key)).await {
                Ok(attempt) => attempt.lock,
                Err(err) => {
                    site.command_failed("lock failed; computed without it and not stored", &err);
                    None
                }
            };
            // No lock: another process computes the key and will store it, or the key was just
            // invalidated (its mark fences off, for one lease, what may have read the old data).
            let Some(lock) = lock else { return };
            match lock.hold_while(value_ready).await {
                Ok(sealed) => drop(store(site, &cache, sealed, lock).await),
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

    /// Takes the key's lock or waits for its holder; an entry found comes with its header.
    async fn lock_or_wait(&self) -> Result<Waited<(Meta, P::Stored)>, CommandError> {
        let (spec, codec, limits) = (&self.site.spec, self.codec, self.cache.limits().decode);
        let notifier = self.cache.notifier();
        stampede::lock_or_wait(self.locks, notifier, self.site, self.key, |bytes| {
            let (meta, value) = codec.open(bytes, limits).ok()?;
            let now = unix_ms(SystemTime::now());
            // Anything servable ends the wait: the holder just stored it.
            (freshness::judge(&meta, now, spec, 1.0) != Freshness::Expired).then_some((meta, value))
        })
        .await
    }
}
