//! A batch call's reads: the values of the keys single-key calls in this process are computing,
//! then one round trip for the rest.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Batch, Flight, Item, Step};
use crate::envelope::unix_ms;
use crate::flow::refresh::RefreshReason;
use crate::freshness::{self, Freshness};
use crate::stampede::single_flight::Handoff;
use crate::stats::{Count, Outcome};
use crate::sync::join_all;

impl<V> Batch<'_, V> {
    /// Awaits the keys single-key calls in this process lead. Called before this call takes any
    /// lock: such a leader never waits for anything in this process, so nothing it waits for
    /// can be waiting for this call. A key whose leader failed (an `Err`, or cancelled) is
    /// looked up and computed by this call.
    pub(super) async fn await_follows<K>(&self, items: &mut [Item<'_, K, V>]) {
        let follows: Vec<_> = items
            .iter_mut()
            .enumerate()
            .filter_map(
                |(index, item)| match std::mem::replace(&mut item.flight, Flight::Beside) {
                    Flight::Follow(follower) => Some((index, follower)),
                    other => {
                        item.flight = other;
                        None
                    }
                },
            )
            .collect();
        if follows.is_empty() {
            return;
        }
        let (indices, followers): (Vec<usize>, Vec<_>) = follows.into_iter().unzip();
        let handoffs = join_all(followers.into_iter().map(|f| f.handoff()).collect()).await;
        for (index, handoff) in indices.into_iter().zip(handoffs) {
            let item = &mut items[index];
            match handoff {
                Some(Handoff::Entry(bytes)) => {
                    if let Ok((_, value)) = self.codec.open(&bytes, self.limits()) {
                        item.serve(value, Outcome::Coalesced);
                    }
                }
                Some(Handoff::Absent) => item.serve(None, Outcome::Coalesced),
                Some(Handoff::RunYourself) | None => {}
            }
        }
    }

    /// Keys an older batch call of this process leads that this call would compute without
    /// Redis (the lookup failed, or it holds no lock of them: `lock = false`, no lock wait, a
    /// lock command that failed): their values are awaited instead, so the process computes each
    /// key once even when Redis cannot coordinate. Waits go only to older calls, which never wait
    /// for younger ones, so no two calls wait for each other.
    pub(super) async fn await_older<K>(&self, items: &mut [Item<'_, K, V>]) {
        let mut waits = Vec::new();
        for (index, item) in items.iter_mut().enumerate() {
            let unguarded = item.served.is_none()
                && item.lock.is_none()
                && matches!(item.step, Step::Compute | Step::Fallback);
            if !unguarded || !matches!(item.flight, Flight::Older(_)) {
                continue;
            }
            if let Flight::Older(follower) = std::mem::replace(&mut item.flight, Flight::Beside) {
                waits.push((index, follower));
            }
        }
        if waits.is_empty() {
            return;
        }
        let (indices, followers): (Vec<usize>, Vec<_>) = waits.into_iter().unzip();
        let handoffs = join_all(followers.into_iter().map(|f| f.handoff()).collect()).await;
        for (index, handoff) in indices.into_iter().zip(handoffs) {
            let item = &mut items[index];
            let served = match handoff {
                Some(Handoff::Entry(bytes)) => match self.codec.open(&bytes, self.limits()) {
                    Ok((_, value)) => Some(value),
                    Err(_) => None,
                },
                Some(Handoff::Absent) => Some(None),
                Some(Handoff::RunYourself) | None => None,
            };
            if let Some(value) = served {
                item.serve(value, Outcome::Coalesced);
                // Answered: nothing left to compute for it.
                item.step = Step::Look;
            }
        }
    }

    /// Reads every key not answered yet, in one round trip (per server, and per chunk): fresh
    /// entries are served (and handed to the keys' followers), entries due for an early refresh
    /// or in their stale window are served and marked for refreshing, the others are computed.
    pub(super) async fn lookup<K>(&self, items: &mut [Item<'_, K, V>]) {
        let pending: Vec<usize> = (0..items.len())
            .filter(|&index| items[index].served.is_none())
            .collect();
        if pending.is_empty() {
            return;
        }
        if let Some(local) = self.local {
            for &index in &pending {
                items[index].watch = Some(local.watch(items[index].args));
            }
        }
        let keys: Vec<&str> = pending
            .iter()
            .map(|&index| items[index].redis.as_str())
            .collect();
        let started = Instant::now();
        let found = self.conn.get_many(&keys, self.chunk).await;
        self.site.round_trip(started, &found.failures);
        for err in &found.failures {
            self.site
                .command_failed("lookup failed; the keys ran uncached", err);
        }
        let now = unix_ms(SystemTime::now());
        let spec = &self.site.spec;
        // The leaders of the keys served, landed together (each stripe of the flight table
        // locked once), and what their followers get.
        let mut landing = Vec::new();
        for (index, answer) in pending.iter().zip(found.each) {
            let item = &mut items[*index];
            let Some(answer) = answer else {
                item.step = Step::Fallback;
                continue;
            };
            let Some(bytes) = answer else {
                item.step = Step::Compute;
                continue;
            };
            let (meta, value) = match self.codec.open(&bytes, self.limits()) {
                Ok(opened) => opened,
                Err(invalid) => {
                    self.site.problem(
                        Count::Invalid,
                        "unreadable entry; recomputed and overwritten",
                        &invalid,
                    );
                    item.step = Step::Compute;
                    continue;
                }
            };
            let (outcome, refresh) = match freshness::judge_drawing(&meta, now, spec) {
                Freshness::Fresh => (Outcome::Hit, None),
                Freshness::RefreshEarly => (Outcome::Hit, Some(RefreshReason::Early)),
                Freshness::Stale => (Outcome::Stale, Some(RefreshReason::Stale)),
                Freshness::Expired => {
                    item.step = Step::Compute;
                    continue;
                }
            };
            if let (Some(local), Some(watch), None, Some(value)) =
                (self.local, item.watch, refresh, &value)
            {
                local.keep(watch, &item.redis, value, meta, bytes.len());
            }
            item.refresh = refresh.map(|why| (meta, why));
            if let Flight::Lead(leader) = std::mem::replace(&mut item.flight, Flight::Beside) {
                landing.push((leader, bytes));
            }
            item.serve(value, outcome);
        }
        let (leaders, handoffs): (Vec<_>, Vec<_>) = landing.into_iter().unzip();
        let slots = self.cache.flights().land_all(leaders);
        for (slot, bytes) in slots.into_iter().zip(handoffs) {
            if let Some(followers) = slot {
                followers.send_replace(Some(Handoff::Entry(Arc::new(bytes))));
            }
        }
    }
}
