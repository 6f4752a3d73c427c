//! The store protocol, in one place: a value is sealed into an envelope (header, payload, how
//! long Redis keeps it), its tags are added (each tag's set gains the key, and a tag invalidated
//! since the computation began fences the store off), then it is stored and the key's lock
//! released in one script that stores only while the lock is still this computation's (an
//! invalidation, a clear or a write-through deletes or takes over the lock, fencing the store
//! off). The release wakes the processes waiting for the lock.
//!
//! A store runs in a spawned task ([`crate::Cache::flush`] waits for it), so a caller cancelled
//! while it waits for its store does not lose it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;

use super::{Call, Ran};
use crate::cache::Cache;
use crate::codec::CodecError;
use crate::connection::{CommandError, Connection, Lua, millis};
use crate::envelope::Meta;
use crate::freshness;
use crate::policy::Policy;
use crate::site::Site;
use crate::stampede::lock::Lock;
use crate::stampede::single_flight::{Handoff, Leader};
use crate::stats::Count;
use crate::tags::{TAG_FENCE_WINDOW, tag_keys};

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

/// What a computation leaves under its key, with the release of its lock.
pub(super) enum Write {
    /// The new entry.
    Put(Envelope),
    /// No entry: the one there is removed (a refresh found nothing to store).
    Remove,
    /// Nothing changes.
    Nothing,
}

impl From<Sealed> for Write {
    fn from(sealed: Sealed) -> Write {
        sealed.map_or(Write::Nothing, Write::Put)
    }
}

/// Removes `lock`'s entry and releases it in one round trip, if the lock is still held (fenced
/// like a store: a later invalidation or write-through wins).
async fn remove(site: &'static Site, lock: Lock) {
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

/// `KEYS`: tag set, mark. `ARGV`: entry key, ms the entry lives (with [`SCORE_SLACK`]). Adds
/// the entry (scored by its expiry), drops expired members, keeps the set as long as its last
/// member; returns the mark (or false) and Redis's time, both in microseconds.
static ADD_TO_TAG: Lua = Lua::new(
    r"local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now_ms + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZADD', KEYS[1], expires, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now_ms))
return {redis.call('GET', KEYS[2]), t[1] .. string.format('%06d', tonumber(t[2]))}",
);

/// Added to a tag member's score (its entry's expiry): the entry is stored right after its tags
/// are added (a round trip or two, each bounded by the command timeout), so its expiry comes a
/// little later too, and the member must not go first.
const SCORE_SLACK: Duration = Duration::from_secs(5);

/// An encoded value and how long Redis should keep it; `None` when the policy stores nothing.
pub(super) type Sealed = Option<Envelope>;

pub(super) struct Envelope {
    pub(super) bytes: Arc<Vec<u8>>,
    /// Redis's `PX`: the TTL and the stale window.
    pub(super) keep: Duration,
    /// The entry's tags (`tags(...)`, `tags = |v| ...`), added before it is stored.
    tags: Vec<String>,
    /// When the function began: a tag invalidated after it fences the store off.
    started: Instant,
}

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// The envelope of `value` and how long Redis should keep it, if the policy stores it.
    pub(super) fn seal(&self, value: &R, ran: &Ran) -> Sealed {
        let (stored, ttl) = self.lifetime(value)?;
        let tags = self.rules.tags_for(&ran.tags, P::value(value));
        let encode = |meta, compress_above| self.codec.seal(stored, meta, compress_above);
        seal(self.site, self.cache, ttl, tags, ran, encode)
    }

    /// What of `value` the policy stores, and for how long: the attribute's `ttl` (or
    /// `none_ttl`), or what its expression or closure says for this call.
    pub(super) fn lifetime<'v>(&self, value: &'v R) -> Option<(&'v P::Stored, Duration)> {
        let (stored, ttl_secs) = P::to_store(value, &self.site.spec)?;
        let rule = match P::value(value) {
            Some(value) => self.rules.ttl_for(value),
            None => self.rules.none_ttl_for(),
        };
        let ttl = rule.map_or(Duration::from_secs(ttl_secs), bounded);
        Some((stored, ttl))
    }

    /// Whether `unless` lets `value` be stored (a `None` or an `Err` it does not judge).
    pub(super) fn keeps(&self, value: &R) -> bool {
        P::value(value).is_none_or(|value| self.rules.keeps(value))
    }

    /// Seals `value`, hands it to the followers, and returns what may be stored.
    pub(super) fn share(&self, leader: Leader<'_>, value: &R, ran: &Ran) -> Sealed {
        let sealed = self.seal(value, ran);
        leader.publish(self.handoff(value, &sealed));
        self.storable(value, sealed)
    }

    /// `sealed`, unless the attribute's `unless` says `value` is not to be stored (its
    /// followers still get it, from `sealed`).
    pub(super) fn storable(&self, value: &R, sealed: Sealed) -> Sealed {
        match self.keeps(value) {
            true => sealed,
            false => None,
        }
    }

    /// What a leader's followers get for `value`, given its envelope (if any).
    pub(super) fn handoff(&self, value: &R, sealed: &Sealed) -> Handoff {
        match sealed {
            Some(envelope) => Handoff::Entry(envelope.bytes.clone()),
            None if P::is_absent(value) => Handoff::Absent,
            None => Handoff::RunYourself,
        }
    }

    /// Stores in a spawned task, so that the store lands even if this caller is cancelled.
    pub(super) fn spawn_store(&self, sealed: Sealed, lock: Lock) -> JoinHandle<()> {
        let (site, cache) = (self.site, self.cache.clone());
        self.cache
            .tasks()
            .spawn(async move { store(site, &cache, sealed, lock).await })
    }

    /// Removes the key's entry and releases `lock`, in a spawned task, if the lock is still held.
    pub(super) fn spawn_remove(&self, lock: Lock) -> JoinHandle<()> {
        let site = self.site;
        self.cache
            .tasks()
            .spawn(async move { remove(site, lock).await })
    }

    /// Waits for a spawned store, unless the cache stores in the background. Dropping the
    /// handle (this caller cancelled) leaves the store running.
    pub(super) async fn landed(&self, storing: JoinHandle<()>) {
        if !self.cache.background_stores() {
            // A panic in the store task is not the caller's: it has its value.
            let _ = storing.await;
        }
    }
}

/// The envelope `encode` makes, to be kept `ttl` (with jitter, and the stale window) with
/// `tags`; `None` if it cannot be stored.
pub(super) fn seal(
    site: &'static Site,
    cache: &Cache,
    ttl: Duration,
    tags: Vec<String>,
    ran: &Ran,
    encode: impl FnOnce(Meta, usize) -> Result<Vec<u8>, CodecError>,
) -> Sealed {
    // Only a `ttl` or `none_ttl` expression or closure can be that short.
    if ttl < Duration::from_secs(1) {
        site.warn_short_ttl(ttl);
        return None;
    }
    let (fresh, keep) = freshness::lifetimes(ttl.as_secs(), &site.spec, fastrand::f64());
    let meta = Meta::new(SystemTime::now(), fresh, ran.took);
    match encode(meta, cache.limits().compress_above) {
        Ok(bytes) => Some(Envelope {
            bytes: Arc::new(bytes),
            keep,
            tags,
            started: ran.started,
        }),
        Err(err) => {
            site.problem(
                Count::Errors,
                "value could not be encoded; not stored",
                &err,
            );
            None
        }
    }
}

/// A TTL a `ttl` expression or closure gave: `u64::MAX` seconds is kept as long as a TTL can be
/// (and does not overflow the arithmetic that follows).
pub(super) fn bounded(ttl: Duration) -> Duration {
    ttl.min(freshness::MAX_TTL)
}

/// Stores an envelope and releases `lock` in one round trip (if the lock is still held), or just
/// releases `lock`.
pub(super) async fn store(site: &'static Site, cache: &Cache, sealed: Sealed, lock: Lock) {
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
    match site.redis(store_and_release(&lock, &bytes, keep)).await {
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
        Err(err) => {
            site.command_failed("store failed; the value was returned but not cached", &err)
        }
    }
    // Released by the script if it ran, or else by its lease.
    lock.hand_over();
}

/// [`store`] for the items of a batch: every tag added at once, then every entry stored with
/// its lock's release in one pipeline per server (one round trip), whatever their number.
pub(super) async fn store_many(site: &'static Site, cache: &Cache, items: Vec<(Write, Lock)>) {
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

/// Adds `key` to each of `tags` before its store (all at once: one round trip, whatever their
/// number); `false` if one of them was invalidated after the computation began (at `started`,
/// the body's start), or the computation ran longer than the marks are kept: then nothing may
/// be stored.
///
/// The invalidation's mark is compared with the computation's start on Redis's clock, bounded
/// from below with the add's round trip, so no two clocks are compared: the script ran at
/// `now_us`, no earlier than the add was sent, which came `sent - started` after the start.
async fn add_tags(
    conn: &Connection,
    prefix: &str,
    tags: &[String],
    key: &str,
    keep: Duration,
    started: Instant,
) -> Result<bool, CommandError> {
    let keep_ms = millis(keep.saturating_add(SCORE_SLACK)).to_string();
    let adds = tags.iter().map(|tag| {
        let keep_ms = &keep_ms;
        async move {
            let (set, mark) = tag_keys(prefix, tag);
            let sent = Instant::now();
            let reply: (Option<String>, String) = conn
                .eval(
                    &ADD_TO_TAG,
                    &[&set, &mark],
                    &[key.as_bytes(), keep_ms.as_bytes()],
                )
                .await?;
            Ok::<_, CommandError>((sent, sent.elapsed(), reply))
        }
    });
    for reply in crate::sync::join_all(adds.collect()).await {
        let (sent, round_trip, (marked, now_us)) = reply?;
        let since_start = sent.duration_since(started) + round_trip;
        // A mark lives `TAG_FENCE_WINDOW`: past that, an invalidation may have left no trace.
        if since_start >= TAG_FENCE_WINDOW {
            return Ok(false);
        }
        let Some(marked) = marked else { continue };
        let (Ok(marked), Ok(now_us)) = (marked.parse::<u64>(), now_us.parse::<u64>()) else {
            return Ok(false);
        };
        let started_us = now_us.saturating_sub(since_start.as_micros() as u64);
        if marked >= started_us {
            return Ok(false);
        }
    }
    Ok(true)
}
