//! A batch call's locks: the misses' and the refreshes', in one round trip.
//!
//! Most of the time every lock is free and that is all. A key whose lock another process holds
//! (it computes that key) is awaited, not recomputed; but a batch waiting while it holds locks
//! could wait for another batch that waits for it. So a call that finds a lock taken first
//! releases every lock it holds, then takes its misses' locks again in one global order (their
//! Redis keys, sorted), waiting for each taken one in turn: a call then only ever waits for a
//! key while holding keys before it in that order, which no cycle of waits can satisfy. Single-
//! key calls hold at most one lock and never wait while they hold it.

use std::time::{Instant, SystemTime};

use super::{Batch, Item, Step};
use crate::envelope::unix_ms;
use crate::freshness::{self, Freshness};
use crate::stampede::lock::{Attempt, Lock};
use crate::stampede::{self, Waited};
use crate::stats::Outcome;

/// What one lock attempt decided for a key.
enum Decision {
    /// The lock is this call's: compute (and store) the key.
    Locked,
    /// Another process holds it.
    Taken,
    /// Settled: served (an entry stored meanwhile), or computed without a lock.
    Settled,
}

impl<V> Batch<'_, V> {
    /// Takes the locks of the keys to compute and of the entries to refresh.
    pub(super) async fn lock<K>(&self, items: &mut [Item<'_, K, V>]) {
        let wanted: Vec<usize> = (0..items.len())
            .filter(|&index| items[index].step == Step::Compute || items[index].refresh.is_some())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let attempts = self.attempt(items, &wanted).await;
        let mut taken = Vec::new();
        let mut release = Vec::new();
        for (index, attempt) in wanted.into_iter().zip(attempts) {
            if let Decision::Taken = self.decide(&mut items[index], attempt, &mut release) {
                taken.push(index);
            }
        }
        self.locks.release_many(release, self.chunk).await;
        if taken.is_empty() {
            return;
        }
        // `lock = false`, or no waiting allowed: compute without the locks, their holders store.
        if !self.site.spec.wait_for_lock || self.locks.settings().wait.is_zero() {
            for index in taken {
                items[index].step = Step::Compute;
            }
            return;
        }
        // Wait in order, holding nothing out of it: first let go of everything.
        let mut release = Vec::new();
        for item in items.iter_mut() {
            if let Some(lock) = item.lock.take() {
                release.push(lock);
            }
            // A refresh is left for a later call.
            item.refresh = None;
        }
        self.locks.release_many(release, self.chunk).await;
        let mut order: Vec<usize> = (0..items.len())
            .filter(|&index| items[index].step == Step::Compute && items[index].served.is_none())
            .collect();
        order.sort_by(|&a, &b| items[a].redis.cmp(&items[b].redis));
        self.lock_in_order(items, &order).await;
    }

    /// Takes the locks of `order` (sorted by key): in one round trip up to the first one taken by
    /// another process, whose holder is then awaited (the locks after it are let go), and so on.
    ///
    /// The locks taken are renewed while the call waits, and the waits share one deadline: the
    /// call waits at most `lock_wait` in all.
    async fn lock_in_order<K>(&self, items: &mut [Item<'_, K, V>], mut order: &[usize]) {
        let deadline = tokio::time::Instant::now() + self.locks.settings().wait;
        while !order.is_empty() {
            let attempts = self.attempt(items, order).await;
            let mut release = Vec::new();
            let mut waits_at = None;
            for (position, (&index, attempt)) in order.iter().zip(attempts).enumerate() {
                if waits_at.is_some() {
                    release.extend(attempt.and_then(|attempt| attempt.lock));
                    continue;
                }
                if let Decision::Taken = self.decide(&mut items[index], attempt, &mut release) {
                    waits_at = Some(position);
                }
            }
            self.locks.release_many(release, self.chunk).await;
            let Some(position) = waits_at else { return };
            // Out of the items while the call waits, renewed meanwhile: a wait longer than the
            // lease must not let them lapse.
            let held: Vec<(usize, Lock)> = items
                .iter_mut()
                .enumerate()
                .filter_map(|(index, item)| Some((index, item.lock.take()?)))
                .collect();
            let renewed: Vec<&Lock> = held.iter().map(|(_, lock)| lock).collect();
            let waiting = self.wait(&mut items[order[position]], deadline);
            self.locks
                .hold_all_while(&renewed, waiting, self.chunk)
                .await;
            drop(renewed);
            for (index, lock) in held {
                items[index].lock = Some(lock);
            }
            order = &order[position + 1..];
        }
    }

    /// Waits for the holder of `item`'s lock to store it (or takes the lock once it is free),
    /// until `deadline`.
    async fn wait<K>(&self, item: &mut Item<'_, K, V>, deadline: tokio::time::Instant) {
        let (spec, codec, limits) = (&self.site.spec, self.codec, self.limits());
        let waited = stampede::lock_or_wait_until(
            self.locks,
            self.cache.notifier(),
            self.site,
            &item.redis,
            deadline,
            |bytes| {
                let (meta, value) = codec.open(bytes, limits).ok()?;
                let now = unix_ms(SystemTime::now());
                (freshness::judge(&meta, now, spec, 1.0) != Freshness::Expired)
                    .then_some((meta, value))
            },
        )
        .await;
        match waited {
            Ok(Waited::Lock(lock)) => item.lock = Some(lock),
            Ok(Waited::Entry((meta, value), bytes)) => self.served_stored(item, meta, value, bytes),
            Ok(Waited::GaveUp) => {}
            Err(err) => self
                .site
                .command_failed("lock failed; computed without it and not stored", &err),
        }
    }

    /// One attempt at the locks of `indices`, in one round trip.
    async fn attempt<K>(
        &self,
        items: &[Item<'_, K, V>],
        indices: &[usize],
    ) -> Vec<Option<Attempt>> {
        let keys: Vec<&str> = indices
            .iter()
            .map(|&index| items[index].redis.as_str())
            .collect();
        let started = Instant::now();
        let (attempts, failures) = self.locks.try_acquire_many(&keys, self.chunk).await;
        self.site.round_trip(started, &failures);
        for err in &failures {
            self.site
                .command_failed("lock failed; computed without it and not stored", err);
        }
        attempts
    }

    /// What `attempt` (`None`: it failed) means for `item`. A lock this call does not keep goes
    /// to `release`.
    fn decide<K>(
        &self,
        item: &mut Item<'_, K, V>,
        attempt: Option<Attempt>,
        release: &mut Vec<Lock>,
    ) -> Decision {
        let Some(Attempt { lock, entry }) = attempt else {
            // Unreachable for this key: a refresh waits for a later call, a miss is computed
            // without the lock (and not stored).
            item.refresh = None;
            return Decision::Settled;
        };
        let opened = entry.and_then(|bytes| {
            let (meta, value) = self.codec.open(&bytes, self.limits()).ok()?;
            Some((meta, value, bytes))
        });
        if let Some((served, _)) = item.refresh {
            let newer = opened.filter(|(meta, ..)| meta.computed_at_ms > served.computed_at_ms);
            if let Some((_, value, _)) = newer {
                // Refreshed by someone between our read and this attempt: serve theirs.
                release.extend(lock);
                item.serve(value, Outcome::Hit);
                item.refresh = None;
                return Decision::Settled;
            }
            match lock {
                Some(lock) => item.lock = Some(lock),
                // Another process refreshes it.
                None => item.refresh = None,
            }
            return Decision::Settled;
        }
        if let Some((meta, value, bytes)) = opened {
            let now = unix_ms(SystemTime::now());
            if freshness::judge(&meta, now, &self.site.spec, 1.0) != Freshness::Expired {
                // Stored by someone between our read and this attempt: nothing to compute.
                release.extend(lock);
                self.served_stored(item, meta, value, bytes);
                return Decision::Settled;
            }
        }
        match lock {
            Some(lock) => {
                item.lock = Some(lock);
                Decision::Locked
            }
            None => Decision::Taken,
        }
    }

    /// Serves an entry another caller just stored.
    fn served_stored<K>(
        &self,
        item: &mut Item<'_, K, V>,
        meta: crate::envelope::Meta,
        value: Option<V>,
        bytes: Vec<u8>,
    ) {
        if let (Some(local), Some(watch), Some(value)) = (self.local, item.watch, &value) {
            local.keep(watch, &item.redis, value, meta, bytes.len());
        }
        item.publish(|| crate::stampede::single_flight::Handoff::Entry(std::sync::Arc::new(bytes)));
        item.step = Step::Look;
        item.serve(value, Outcome::Hit);
    }
}
