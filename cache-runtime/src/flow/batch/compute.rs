//! A batch call's one call of the function: with every key still missing (and the entries it
//! refreshes), then each item sealed, handed to its followers and stored.

use std::time::{Duration, Instant, SystemTime};

use super::refresh::BatchRefreshJob;
use super::{Batch, BatchBody, BatchMap, BatchReturn, Item, KeyOf, Step};
use crate::envelope::{Meta, unix_ms};
use crate::flow::Ran;
use crate::flow::refresh::{FAILED_REFRESH_BACKOFF, RefreshReason};
use crate::flow::store::{self, Envelope, Sealed, Write};
use crate::stampede::single_flight::Handoff;
use crate::stats::{Count, Outcome};

impl<V> Batch<'_, V> {
    /// With `refresh = "background"` and nothing to compute in the call, hands the entries to
    /// refresh to a spawned task: the caller returns with what was served.
    pub(super) fn refresh_in_background<K: Clone, R, B>(
        &self,
        items: &mut [Item<'_, K, V>],
        body: B,
    ) -> Result<(), B>
    where
        B: BatchBody<K, R, V>,
    {
        let refreshing = items.iter().any(|item| item.refresh.is_some());
        let computing = items
            .iter()
            .any(|item| matches!(item.step, Step::Compute | Step::Fallback));
        if !refreshing || computing {
            return Err(body);
        }
        let job = BatchRefreshJob {
            site: self.site,
            cache: self.cache,
            codec: self.codec,
            rules: self.rules,
            items: items
                .iter()
                .filter_map(|item| {
                    let (meta, why) = item.refresh?;
                    Some((item.key.clone(), item.redis.clone(), meta, why))
                })
                .collect(),
        };
        body.detach(job)?;
        for item in items {
            item.refresh = None;
        }
        Ok(())
    }

    /// Calls the function once with every key this call computes, then seals, hands over and
    /// stores each item; returns the answer.
    pub(super) async fn compute<R, B>(&self, mut items: Vec<Item<'_, KeyOf<R>, V>>, body: B) -> R
    where
        R: BatchReturn,
        R::Map: BatchMap<Value = V>,
        KeyOf<R>: Clone,
        B: BatchBody<KeyOf<R>, R, V>,
    {
        let computing: Vec<usize> = (0..items.len())
            .filter(|&index| items[index].computes())
            .collect();
        if computing.is_empty() {
            return self.finish(items, None);
        }
        let keys = computing
            .iter()
            .map(|&index| items[index].key.clone())
            .collect();
        let started = Instant::now();
        let computed = {
            let held: Vec<_> = items.iter().filter_map(|item| item.lock.as_ref()).collect();
            self.locks
                .hold_all_while(&held, body.run(keys), self.chunk)
                .await
        };
        let took = started.elapsed();
        self.site.executed(took);
        let mut tags = computed.tags.into_iter();
        match computed.value.into_map() {
            Ok(map) => {
                let ran = |tags: Option<Vec<String>>| Ran {
                    started,
                    took,
                    tags: tags.unwrap_or_default(),
                };
                let stores = computing
                    .iter()
                    .filter_map(|&index| self.computed(&mut items[index], &map, ran(tags.next())))
                    .collect();
                let found = computing
                    .iter()
                    .filter(|&&index| map.get(&items[index].key).is_some())
                    .count();
                if map.len() > found {
                    self.site.warn_unrequested(map.len() - found);
                }
                self.store(stores).await;
                self.finish(items, Some(map))
            }
            Err(err) => {
                let needed = computing
                    .iter()
                    .any(|&index| items[index].step != Step::Look);
                self.failed(&mut items, &computing).await;
                if needed {
                    return R::from_error(err);
                }
                // Only refreshes failed: serve what was served (fail-safe).
                self.finish(items, None)
            }
        }
    }

    /// One item the function computed: sealed, handed to its followers, kept locally when
    /// Redis is unreachable; its envelope and lock, if it is to be stored.
    fn computed<K, M>(
        &self,
        item: &mut Item<'_, K, V>,
        map: &M,
        ran: Ran,
    ) -> Option<(Write, crate::stampede::lock::Lock)>
    where
        M: BatchMap<Key = K, Value = V>,
    {
        let value = map.get(&item.key);
        let sealed = self.seal(value, &ran);
        item.publish(|| match (&sealed, value) {
            (Some(envelope), _) => Handoff::Entry(envelope.bytes.clone()),
            (None, None) => Handoff::Absent,
            (None, Some(_)) => Handoff::RunYourself,
        });
        let keeps = value.is_none_or(|value| self.rules.keeps(value));
        let outcome = match (item.step, item.refresh) {
            (Step::Fallback, _) => Outcome::Fallback,
            // An early refresh served a fresh entry: a hit that also recomputed it (unless the
            // key is gone now: then, as in the single-key flow, a miss).
            (_, Some((_, RefreshReason::Early))) if value.is_some() => {
                self.site.count(Count::EarlyRefreshes);
                Outcome::Hit
            }
            // A miss, or a refresh in the stale window (counted as the single-key flow does).
            _ => Outcome::Miss,
        };
        // The value is in the function's map; the one served before (a refresh's) is not.
        item.serve(None, outcome);
        if let (Step::Fallback, Some(local), Some(watch), Some(value), Some(envelope), true) =
            (item.step, self.local, item.watch, value, &sealed, keeps)
        {
            // Redis is unreachable: the local tier memoizes alone, for `local_ttl` at most.
            let until = unix_ms(SystemTime::now()) + envelope_ttl_ms(envelope);
            let meta = Meta {
                fresh_until_ms: until,
                ..envelope.meta
            };
            local.keep(watch, &item.redis, value, meta, envelope.bytes.len());
        }
        let lock = item.lock.take()?;
        let encoded = sealed.is_some();
        let write = match (sealed.filter(|_| keeps), item.refresh.is_some()) {
            (Some(envelope), _) => Write::Put(envelope),
            // A refresh with nothing to store (the key absent from the map, or a value `unless`
            // refuses): the entry it refreshed goes, as in the single-key flow. A value that
            // could not be sealed (an encoding error) leaves it.
            (None, true) if value.is_none() || encoded => Write::Remove,
            (None, _) => Write::Nothing,
        };
        Some((write, lock))
    }

    /// The envelope of one item (`None`: the function did not return its key), if it is stored.
    fn seal(&self, value: Option<&V>, ran: &Ran) -> Sealed {
        let spec = &self.site.spec;
        let ttl = match value {
            Some(value) => self
                .rules
                .ttl_for(value)
                .map_or(Duration::from_secs(spec.ttl_secs), store::bounded),
            None if self.codec.stores_absent => self
                .rules
                .none_ttl_for()
                .map_or(Duration::from_secs(spec.none_ttl_secs), store::bounded),
            None => return None,
        };
        let tags = self.rules.tags_for(&ran.tags, value);
        let encode =
            |meta, compress_above, limits| self.codec.seal(value, meta, compress_above, limits);
        store::seal(
            self.site,
            self.cache,
            self.codec.codec(),
            (ttl, tags),
            ran,
            encode,
        )
    }

    /// Stores the items that have an envelope and a lock (all pipelined), in a spawned task the
    /// caller awaits (unless the cache stores in the background), so a cancelled caller's
    /// stores still land.
    async fn store(&self, stores: Vec<(Write, crate::stampede::lock::Lock)>) {
        if stores.is_empty() {
            return;
        }
        let (site, cache) = (self.site, self.cache.clone());
        let storing = self
            .cache
            .tasks()
            .spawn(async move { store::store_many(site, &cache, stores).await });
        if !self.cache.background_stores() {
            let _ = storing.await;
        }
    }

    /// The function failed (`Err`): nothing is stored, followers run the function themselves,
    /// an entry whose stale-window refresh failed keeps being served for a while.
    async fn failed<K>(&self, items: &mut [Item<'_, K, V>], computing: &[usize]) {
        let mut release = Vec::new();
        let mut back_off = Vec::new();
        for &index in computing {
            let item = &mut items[index];
            item.publish(|| Handoff::RunYourself);
            let outcome = match item.step {
                Step::Fallback => Outcome::Fallback,
                Step::Compute => Outcome::Miss,
                Step::Look => item.served.as_ref().map_or(Outcome::Miss, |(_, o)| *o),
            };
            if item.served.is_none() {
                item.serve(None, outcome);
            }
            let Some(lock) = item.lock.take() else {
                continue;
            };
            match item.refresh {
                Some((_, RefreshReason::Stale)) => back_off.push(lock),
                _ => release.push(lock),
            }
        }
        let backing_off: Vec<_> = back_off.iter().collect();
        self.locks
            .extend_many(&backing_off, FAILED_REFRESH_BACKOFF, self.chunk)
            .await;
        for lock in back_off {
            lock.hand_over();
        }
        self.locks.release_many(release, self.chunk).await;
    }

    /// A write-through refresh of a batch (the `_refresh` companion): every key's lock taken
    /// over, fencing off computations that started before, then every key computed and stored.
    pub(super) async fn write_through<R, B>(
        &self,
        mut items: Vec<Item<'_, KeyOf<R>, V>>,
        body: B,
    ) -> R
    where
        R: BatchReturn,
        R::Map: BatchMap<Value = V>,
        KeyOf<R>: Clone,
        B: BatchBody<KeyOf<R>, R, V>,
    {
        let keys: Vec<&str> = items.iter().map(|item| item.redis.as_str()).collect();
        self.conn.changed(keys.iter().copied());
        let started = Instant::now();
        let (locks, failures) = self.locks.take_over_many(&keys, self.chunk).await;
        self.site.round_trip(started, &failures);
        for err in &failures {
            self.site.command_failed(
                "refresh could not take the lock; computed and not stored",
                err,
            );
        }
        for (item, lock) in items.iter_mut().zip(locks) {
            item.step = match lock {
                Some(_) => Step::Compute,
                None => Step::Fallback,
            };
            item.lock = lock;
        }
        self.compute(items, body).await
    }
}

/// How long an envelope is fresh, in milliseconds (from its header).
fn envelope_ttl_ms(envelope: &Envelope) -> u64 {
    u64::try_from(envelope.keep.as_millis()).unwrap_or(u64::MAX)
}
