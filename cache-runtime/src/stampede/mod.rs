//! Stampede protection: one computation per key, in a process and across processes.
//!
//! - [`single_flight`]: concurrent calls of one key in one process share one leader.
//! - [`lock`]: on a miss, the leaders of all processes race for a per-key Redis lock; one
//!   computes, the others wait for its value ([`lock_or_wait`]).
//! - [`notify`]: the waiters are woken by pub/sub when the lock is released, not by polling.
//!
//! Early refresh and the stale window, which avoid misses altogether, are judged in
//! [`crate::freshness`] and use the same lock so that one refresh per key runs at a time;
//! [`refreshing`] keeps a process from starting a second background refresh of a key.

pub(crate) mod lock;
pub(crate) mod notify;
pub(crate) mod refreshing;
pub(crate) mod single_flight;

use std::time::Duration;

use crate::connection::CommandError;
use crate::site::Site;
use crate::stats::Count;
use lock::{Lock, Locks};
use notify::{Notifier, Subscription};

/// A waiter with a pub/sub subscription still looks this often, in case a message was lost.
const POLL_SUBSCRIBED: Duration = Duration::from_millis(200);
/// A waiter without one (pub/sub unavailable) looks this often.
const POLL_UNSUBSCRIBED: Duration = Duration::from_millis(50);

/// How [`lock_or_wait`] ended.
pub(crate) enum Waited<T> {
    /// This caller holds the lock: compute and store.
    Lock(Lock),
    /// Another process stored a usable entry (its decoded value and bytes).
    Entry(T, Vec<u8>),
    /// The wait bound passed: compute without the lock (fail open).
    GaveUp,
}

/// Takes `key`'s lock, or waits for the process holding it to store a usable entry.
///
/// `usable` decodes an entry and says whether it may be served. The wait is bounded by the
/// cache's [`lock_wait`](crate::CacheBuilder::lock_wait); a holder that dies stops renewing its lease, which lapses, and the next
/// attempt here takes the lock. With a zero `lock_wait` there is one attempt and no waiting: a
/// busy lock gives [`Waited::GaveUp`] at once, and the holder stores. (`lock = false` does not
/// come here: the flow takes the lock alongside the function, see `compute_unlocked`.)
pub(crate) async fn lock_or_wait<T>(
    locks: &Locks,
    notifier: &Notifier,
    site: &Site,
    key: &str,
    usable: impl Fn(&[u8]) -> Option<T>,
) -> Result<Waited<T>, CommandError> {
    let deadline = tokio::time::Instant::now() + locks.settings().wait;
    lock_or_wait_until(locks, notifier, site, key, deadline, usable).await
}

/// [`lock_or_wait`] with the wait bounded by `deadline` instead (a batch's keys share one: the
/// whole call waits at most `lock_wait`, not `lock_wait` per key).
pub(crate) async fn lock_or_wait_until<T>(
    locks: &Locks,
    notifier: &Notifier,
    site: &Site,
    key: &str,
    deadline: tokio::time::Instant,
    usable: impl Fn(&[u8]) -> Option<T>,
) -> Result<Waited<T>, CommandError> {
    let lock_key = lock::lock_key(key);
    let wait = locks.settings().wait;
    let mut subscription: Option<Subscription> = None;
    let mut waiting = false;
    loop {
        // Registered before looking, so a release published after the look wakes us.
        let notify = subscription.as_ref().map(|s| s.notify().clone());
        let mut notified = notify.as_ref().map(|n| Box::pin(n.notified()));
        if let Some(n) = notified.as_mut() {
            n.as_mut().enable();
        }
        let attempt = site.redis(locks.try_acquire(key)).await?;
        if let Some(value) = attempt.entry.as_deref().and_then(&usable) {
            if let Some(lock) = attempt.lock {
                // Stored by someone between our lookup and this attempt: nothing to compute.
                lock.release().await;
            }
            let bytes = attempt.entry.unwrap_or_default();
            return Ok(Waited::Entry(value, bytes));
        }
        if let Some(lock) = attempt.lock {
            return Ok(Waited::Lock(lock));
        }
        if wait.is_zero() {
            return Ok(Waited::GaveUp);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            site.count(Count::LockTimeouts);
            tracing::debug!(%key, "redis_cache: lock wait bound reached; computing without the lock");
            return Ok(Waited::GaveUp);
        }
        if !waiting {
            waiting = true;
            site.count(Count::LockWaits);
            subscription = notifier.subscribe(&lock_key, locks.connection()).await;
            // Look again at once: the holder may have finished while we subscribed.
            continue;
        }
        let poll = if subscription.is_some() {
            POLL_SUBSCRIBED
        } else {
            POLL_UNSUBSCRIBED
        };
        let wake = deadline.min(now + poll);
        match notified {
            Some(n) => {
                let _ = tokio::time::timeout_at(wake, n).await;
            }
            None => tokio::time::sleep_until(wake).await,
        }
    }
}
