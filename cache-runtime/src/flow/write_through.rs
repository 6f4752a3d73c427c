//! A write-through refresh (the `_refresh` companion): no lookup; the key's lock is taken over,
//! fencing off any computation that started before, and the function's value is stored.
//!
//! The companion runs the function itself inside [`write_through`], which marks that one call
//! (a task-local the flow takes as the call begins), so the function's body exists once.

use std::cell::Cell;
use std::future::Future;

use super::{Call, Computed};
use crate::policy::Policy;
use crate::stampede::single_flight::Leader;
use crate::stats::Outcome;

tokio::task_local! {
    /// Set by [`write_through`] around one call of a cached function.
    static WRITE_THROUGH: Cell<bool>;
}

/// Runs `call` (a call of a `#[redis_cache]` function) as a write-through refresh: it does not
/// read the cache, it runs the function and stores the result, fencing off any computation of
/// the same key that started earlier. Calls the function's body makes are ordinary calls.
#[doc(hidden)]
pub async fn write_through<F: Future>(call: F) -> F::Output {
    WRITE_THROUGH.scope(Cell::new(true), call).await
}

/// Whether this call was asked to refresh, without taking the request.
pub(crate) fn write_through_requested() -> bool {
    WRITE_THROUGH.try_with(Cell::get).unwrap_or(false)
}

/// For the flow: whether this call was asked to refresh. Taken, so it applies to one call.
pub(crate) fn take_write_through_request() -> bool {
    WRITE_THROUGH
        .try_with(|asked| asked.replace(false))
        .unwrap_or(false)
}

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// A write-through refresh: no lookup; take the key's lock over (fencing off any computation
    /// that started before), compute, and store.
    pub(super) async fn write_through(
        self,
        leader: Leader<'_>,
        body: impl Future<Output = Computed<R>>,
    ) -> (R, Outcome) {
        let site = self.site;
        self.conn.changed([self.key]);
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
}
