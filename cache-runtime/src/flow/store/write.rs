//! Storing and releasing: the entry and its lock's release in one script that stores only
//! while the lock is still this computation's (or the entry's removal, for a refresh that found
//! nothing to store), for one key or a batch's keys in one pipeline per server.

use std::time::{Duration, Instant};

use super::tags::add_tags;
use super::{Sealed, Write};
use crate::cache::Cache;
use crate::connection::{CommandError, Lua, millis};
use crate::site::Site;
use crate::stampede::lock::Lock;
use crate::stats::Count;

/// `KEYS`: entry, lock. `ARGV`: envelope, PX ms, token. If the lock is still ours: stores,
/// releases, wakes the waiters and returns 1. Otherwise (invalidated, taken over, lapsed) stores
/// nothing and returns 0.
static STORE_AND_RELEASE: Lua = Lua::new(
    r"if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[2], '1')
return 1",
);

/// `KEYS`: entry, lock. `ARGV`: token. If the lock is still ours: removes the entry, releases,
/// wakes the waiters and returns 1; otherwise 0.
static REMOVE_AND_RELEASE: Lua = Lua::new(
    r"if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[2], '1')
return 1",
);

/// Removes `lock`'s entry and releases it in one round trip, if the lock is still held (fenced
/// like a store: a later invalidation or write-through wins).
pub(super) async fn remove(site: &'static Site, lock: Lock) {
    // A replica still has the entry: read the key from the primary until it catches up.
    lock.connection().changed([lock.key()]);
    let (keys, token) = ([lock.key(), lock.lock_key()], [lock.token().as_bytes()]);
    let removed = lock
        .connection()
        .eval::<i64>(&REMOVE_AND_RELEASE, &keys, &token);
    if let Err(err) = site.redis(removed).await {
        site.command_failed(
            "removing a refreshed entry failed; it expires with its TTL",
            &err,
        );
    }
    lock.hand_over();
}

/// Stores an envelope and releases `lock` in one round trip (if the lock is still held), or just
/// releases `lock`.
/// `true` if it stored.
pub(in crate::flow) async fn store(
    site: &'static Site,
    cache: &Cache,
    sealed: Sealed,
    lock: Lock,
) -> bool {
    let max_bytes = cache.limits().max_bytes;
    let envelope = match sealed {
        Some(envelope) if envelope.bytes.len() > max_bytes => {
            site.count(Count::Oversize);
            site.warn_oversize(envelope.bytes.len(), max_bytes);
            lock.release().await;
            return false;
        }
        Some(envelope) => envelope,
        None => {
            lock.release().await;
            return false;
        }
    };
    if !envelope.tags.is_empty() {
        let added = add_tags(
            lock.connection(),
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
                lock.release().await;
                return false;
            }
            Err(err) => {
                site.command_failed(
                    "tagging failed; the value was returned but not cached",
                    &err,
                );
                lock.release().await;
                return false;
            }
        }
    }
    let (bytes, keep) = (envelope.bytes, envelope.keep);
    let stored = site.redis(store_and_release(&lock, &bytes, keep)).await;
    match &stored {
        Ok(true) => {
            site.count(Count::Writes);
            lock.connection().write_succeeded();
        }
        Ok(false) => {
            site.count(Count::Fenced);
            tracing::debug!(
                key = lock.key(),
                "redis_cache: the key was invalidated or refreshed while this value was computed; \
                 not stored"
            );
        }
        Err(err) => site.command_failed("store failed; the value was returned but not cached", err),
    }
    // Released by the script if it ran, or else by its lease.
    lock.hand_over();
    matches!(stored, Ok(true))
}

/// [`store`] for the items of a batch: every tag added at once, then every entry stored with
/// its lock's release in one pipeline per server (one round trip), whatever their number.
pub(in crate::flow) async fn store_many(
    site: &'static Site,
    cache: &Cache,
    items: Vec<(Write, Lock)>,
) {
    let (Some(locks), chunk) = (cache.locks(), cache.limits().batch_chunk) else {
        return;
    };
    let max_bytes = cache.limits().max_bytes;
    let mut release = Vec::new();
    let mut removing = Vec::new();
    let mut tagged = Vec::new();
    let mut ready = Vec::new();
    for (write, lock) in items {
        match write {
            Write::Put(envelope) if envelope.bytes.len() > max_bytes => {
                site.count(Count::Oversize);
                site.warn_oversize(envelope.bytes.len(), max_bytes);
                release.push(lock);
            }
            Write::Put(envelope) if !envelope.tags.is_empty() => tagged.push((envelope, lock)),
            Write::Put(envelope) => ready.push((envelope, lock)),
            Write::Remove => removing.push(lock),
            Write::Nothing => release.push(lock),
        }
    }
    if !removing.is_empty() {
        locks
            .connection()
            .changed(removing.iter().map(|lock| lock.key()));
        let calls: Vec<(Vec<&str>, Vec<&[u8]>)> = removing
            .iter()
            .map(|lock| {
                (
                    vec![lock.key(), lock.lock_key()],
                    vec![lock.token().as_bytes()],
                )
            })
            .collect();
        let removed = locks
            .connection()
            .eval_many::<i64>(&REMOVE_AND_RELEASE, &calls, chunk)
            .await;
        for err in &removed.failures {
            site.command_failed(
                "removing a refreshed entry failed; it expires with its TTL",
                err,
            );
        }
        for lock in removing {
            lock.hand_over();
        }
    }
    if !tagged.is_empty() {
        let adds = tagged.iter().map(|(envelope, lock)| {
            let added = add_tags(
                lock.connection(),
                cache.prefix(),
                &envelope.tags,
                lock.key(),
                envelope.keep,
                envelope.started,
            );
            site.redis(added)
        });
        let held: Vec<&Lock> = tagged.iter().map(|(_, lock)| lock).collect();
        let added = locks
            .hold_all_while(&held, crate::sync::join_all(adds.collect()), chunk)
            .await;
        for ((envelope, lock), added) in tagged.into_iter().zip(added) {
            match added {
                Ok(true) => ready.push((envelope, lock)),
                Ok(false) => {
                    site.count(Count::Fenced);
                    release.push(lock);
                }
                Err(err) => {
                    site.command_failed(
                        "tagging failed; the value was returned but not cached",
                        &err,
                    );
                    release.push(lock);
                }
            }
        }
    }
    let keeps: Vec<String> = ready
        .iter()
        .map(|(envelope, _)| millis(envelope.keep).to_string())
        .collect();
    let calls: Vec<(Vec<&str>, Vec<&[u8]>)> = ready
        .iter()
        .zip(&keeps)
        .map(|((envelope, lock), keep)| {
            (
                vec![lock.key(), lock.lock_key()],
                vec![
                    envelope.bytes.as_slice(),
                    keep.as_bytes(),
                    lock.token().as_bytes(),
                ],
            )
        })
        .collect();
    if !calls.is_empty() {
        let started = Instant::now();
        let stored = locks
            .connection()
            .eval_many::<i64>(&STORE_AND_RELEASE, &calls, chunk)
            .await;
        site.round_trip(started, &stored.failures);
        for err in &stored.failures {
            site.command_failed("store failed; the value was returned but not cached", err);
        }
        let writes = stored.each.iter().filter(|s| **s == Some(1)).count() as u64;
        let fenced = stored.each.iter().filter(|s| **s == Some(0)).count() as u64;
        site.count_many(Count::Writes, writes);
        site.count_many(Count::Fenced, fenced);
        if writes > 0 {
            locks.connection().write_succeeded();
        }
    }
    // Released by the script where it ran, or else by their leases.
    for (_, lock) in ready {
        lock.hand_over();
    }
    locks.release_many(release, chunk).await;
}

/// Stores `envelope` for `keep` under `lock`'s key, releases the lock and wakes its waiters, in
/// one round trip, if the lock is still `lock`'s. `Ok(false)`: it was not (the key was
/// invalidated, cleared or refreshed meanwhile, or the lease lapsed), and nothing was stored.
async fn store_and_release(
    lock: &Lock,
    envelope: &[u8],
    keep: Duration,
) -> Result<bool, CommandError> {
    lock.connection()
        .eval::<i64>(
            &STORE_AND_RELEASE,
            &[lock.key(), lock.lock_key()],
            &[
                envelope,
                millis(keep).to_string().as_bytes(),
                lock.token().as_bytes(),
            ],
        )
        .await
        .map(|stored| stored == 1)
}
