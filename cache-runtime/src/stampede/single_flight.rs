//! In-process single-flight: concurrent calls with the same key share one leader.
//!
//! The first caller of a key becomes its [`Leader`]: it does the Redis round trip and, on a miss,
//! runs the function; every caller that arrives meanwhile follows, and receives the leader's
//! [`Handoff`]: the envelope bytes the leader read or wrote (each follower decodes its own copy, so
//! the value needs no `Clone`). This holds while Redis is down too, so an outage does not
//! multiply the load on the database.
//!
//! A leader that is cancelled or panics drops its [`Leader`] without publishing: its followers see
//! the channel close and race to lead again, so nobody is stranded.
//!
//! An invalidation detaches the flights of what it invalidates ([`Flights::detach`]): a call that
//! arrives afterwards leads a new flight instead of joining one that may carry the old value, and
//! the old flight's followers start over too.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::key::{CallKey, PreHashed};

/// A call's identity: the function's namespace (see
/// [`SiteSpec::namespace`](crate::spec::SiteSpec::namespace)) and the hash of its arguments.
pub(crate) type FlightId = (u64, u128);

/// The flight of `call` to the function with `namespace`; `None` when its arguments could not
/// be hashed.
pub(crate) fn flight_id(namespace: u64, call: &CallKey) -> Option<FlightId> {
    Some((namespace, call.args()?))
}

/// What a leader hands to its followers.
#[derive(Debug, Clone)]
pub(crate) enum Handoff {
    /// An envelope (fresh, stale, or just computed): decode it.
    Entry(Arc<Vec<u8>>),
    /// The function returned the policy's empty value (`None`), which is not stored.
    Absent,
    /// The leader's value cannot be shared (an `Err`, or it could not be encoded): run the
    /// function yourself.
    RunYourself,
}

/// A flight's channel to its followers, created by the first follower: a leader nobody waits
/// for (the common case, a hit) costs one map insert and one remove, nothing else.
pub(crate) type Slot = Option<watch::Sender<Option<Handoff>>>;

/// One flight: which one (a detached flight's leader must not end its successor), its channel,
/// and which batch call leads it, if one does.
#[derive(Debug)]
struct Flight {
    serial: u64,
    slot: Slot,
    /// The batch call leading it (its serial: an older call has a smaller one), or `None` for a
    /// single-key call. Another batch call follows it only where it is older (see
    /// [`Flights::join_batch_all`]).
    batch: Option<u64>,
    /// Led from the I/O side: a blocking call, or a task of the cache's I/O runtime. A blocking
    /// call follows only such a leader: one on a runtime whose thread the blocking call may be
    /// holding could never finish.
    io_side: bool,
}

/// Stripes of the flight table: callers of different keys rarely take the same lock, so the
/// worker threads do not queue on one mutex on every call.
const STRIPES: usize = 16;

/// The calls in flight in one [`Cache`](crate::Cache).
#[derive(Debug, Default)]
pub(crate) struct Flights {
    stripes: [Stripe; STRIPES],
    serials: AtomicU64,
}

type Table = HashMap<FlightId, Flight, PreHashed>;

/// One stripe, alone on its cache lines (two, for the adjacent-line prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(Mutex<Table>);

/// The caller's role for one attempt.
pub(crate) enum Join<'a> {
    Lead(Leader<'a>),
    Follow(Follower),
}

/// A batch call's role for one of its keys.
pub(crate) enum BatchJoin<'a> {
    Lead(Leader<'a>),
    /// A single-key call leads the key: await it.
    Follow(Follower),
    /// An older batch call leads the key: await it only where this call would otherwise compute
    /// the key without Redis (see [`Flights::join_batch_all`]).
    Older(Follower),
    /// A younger batch call leads the key: never wait for it here.
    Beside,
}

impl Flights {
    /// Leads the flight for `id`, or follows the one already in the air.
    ///
    /// A blocking call that finds a flight led on a runtime leads beside it, outside the table
    /// (its landing is a no-op): the two share the key's Redis lock instead.
    pub(crate) fn join(&self, id: FlightId) -> Join<'_> {
        let io_side = crate::blocking::on_io_side();
        match self.table(id).entry(id) {
            Entry::Occupied(flight) if io_side && !flight.get().io_side => {
                Join::Lead(self.leader(id, self.serials.fetch_add(1, Relaxed)))
            }
            Entry::Occupied(mut flight) => Join::Follow(follow(flight.get_mut())),
            Entry::Vacant(vacant) => {
                let serial = self.serials.fetch_add(1, Relaxed);
                vacant.insert(Flight {
                    serial,
                    slot: None,
                    batch: None,
                    io_side,
                });
                Join::Lead(self.leader(id, serial))
            }
        }
    }

    /// [`Flights::join`] for the keys of a batch call (each stripe of the table locked once).
    ///
    /// A batch call follows a single-key call's flight: a single-key leader waits for nothing in
    /// this process while it leads (its waits are on Redis locks, which it takes only after
    /// joining, and a batch follows before taking any), so waiting for it cannot close a cycle.
    /// Two batch calls could each wait for a key the other leads; so a call may wait only for an
    /// older call's keys ([`BatchJoin::Older`]: each call takes a serial as it joins, and waits
    /// only go from a younger call to an older one), and only where it would compute the key
    /// without Redis: Redis could not be read, or there is no lock to wait on. Otherwise a key
    /// another batch call leads is looked up and locked in Redis like any key, and waited for
    /// there in a deadlock-free order.
    pub(crate) fn join_batch_all(&self, ids: &[FlightId]) -> Vec<BatchJoin<'_>> {
        let call = self.serials.fetch_add(1, Relaxed);
        let io_side = crate::blocking::on_io_side();
        let mut joins: Vec<Option<BatchJoin<'_>>> = ids.iter().map(|_| None).collect();
        for (stripe, indices) in by_stripe(ids.iter().copied()) {
            let mut table = table(&self.stripes[stripe]);
            for index in indices {
                let id = ids[index];
                joins[index] = Some(match table.entry(id) {
                    // See [`Flights::join`]: looked up and locked in Redis like any key.
                    Entry::Occupied(flight) if io_side && !flight.get().io_side => {
                        BatchJoin::Beside
                    }
                    Entry::Occupied(mut flight) => match flight.get().batch {
                        Some(leader) if leader < call => BatchJoin::Older(follow(flight.get_mut())),
                        Some(_) => BatchJoin::Beside,
                        None => BatchJoin::Follow(follow(flight.get_mut())),
                    },
                    Entry::Vacant(vacant) => {
                        let serial = self.serials.fetch_add(1, Relaxed);
                        vacant.insert(Flight {
                            serial,
                            slot: None,
                            batch: Some(call),
                            io_side,
                        });
                        BatchJoin::Lead(self.leader(id, serial))
                    }
                });
            }
        }
        joins
            .into_iter()
            .map(|join| join.expect("every id joined"))
            .collect()
    }

    /// Ends the flights of `leaders` (each stripe locked once); for each, the channel of its
    /// followers, if any follower opened one: send the handoff there.
    pub(crate) fn land_all(&self, mut leaders: Vec<Leader<'_>>) -> Vec<Slot> {
        let mut slots: Vec<Slot> = leaders.iter().map(|_| None).collect();
        let ids = leaders.iter().map(|leader| leader.id);
        for (stripe, indices) in by_stripe(ids) {
            let mut table = table(&self.stripes[stripe]);
            for index in indices {
                let leader = &mut leaders[index];
                leader.landed = true;
                if let Entry::Occupied(flight) = table.entry(leader.id)
                    && flight.get().serial == leader.serial
                {
                    slots[index] = flight.remove().slot;
                }
            }
        }
        slots
    }

    /// Leads a new flight for `id`, detaching the one in the air: for a write-through refresh,
    /// which must not hand anyone a value computed before it (`batch`: a batch call's).
    pub(crate) fn lead_anew(&self, id: FlightId, batch: bool) -> Leader<'_> {
        let serial = self.serials.fetch_add(1, Relaxed);
        // A write-through's own serial: it waits for nobody, and is younger than any call
        // in the air.
        let batch = batch.then_some(serial);
        // The old flight's channel is dropped here: its followers start over and follow us.
        let old = self.table(id).insert(
            id,
            Flight {
                serial,
                slot: None,
                batch,
                io_side: crate::blocking::on_io_side(),
            },
        );
        drop(old);
        self.leader(id, serial)
    }

    /// Detaches the flight of `id`: later calls lead anew, its followers start over, and its
    /// leader's outcome reaches nobody.
    pub(crate) fn detach(&self, id: FlightId) {
        let old = self.table(id).remove(&id);
        drop(old);
    }

    /// Detaches every flight of a function (`namespace`), or every flight when `None`.
    pub(crate) fn detach_all(&self, namespace: Option<u64>) {
        for stripe in &self.stripes {
            let mut detached = Vec::new();
            table(stripe).retain(|id, flight| {
                let keep = namespace.is_some_and(|ns| id.0 != ns);
                if !keep {
                    detached.push(flight.slot.take());
                }
                keep
            });
            // Channels close outside the stripe's lock.
            drop(detached);
        }
    }

    fn leader(&self, id: FlightId, serial: u64) -> Leader<'_> {
        Leader {
            flights: self,
            id,
            serial,
            landed: false,
        }
    }

    /// Flights in the air; zero when the process is idle.
    pub(crate) fn len(&self) -> usize {
        self.stripes.iter().map(|stripe| table(stripe).len()).sum()
    }

    /// The stripe of `id`.
    fn table(&self, id: FlightId) -> MutexGuard<'_, Table> {
        table(&self.stripes[stripe_of(id)])
    }

    /// Ends flight `serial` of `id`, unless it was detached; its channel, if any follower opened
    /// one.
    fn land(&self, id: FlightId, serial: u64) -> Slot {
        let mut map = self.table(id);
        match map.entry(id) {
            Entry::Occupied(flight) if flight.get().serial == serial => flight.remove().slot,
            _ => None,
        }
    }
}

fn stripe_of(id: FlightId) -> usize {
    id.1 as usize % STRIPES
}

/// The positions of `ids`, grouped by stripe.
fn by_stripe(ids: impl Iterator<Item = FlightId>) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (index, id) in ids.enumerate() {
        let stripe = stripe_of(id);
        match groups.iter_mut().find(|(s, _)| *s == stripe) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((stripe, vec![index])),
        }
    }
    groups
}

/// Follows `flight`, opening its channel if this is its first follower.
fn follow(flight: &mut Flight) -> Follower {
    let tx = flight.slot.get_or_insert_with(|| watch::channel(None).0);
    Follower(tx.subscribe())
}

fn table(stripe: &Stripe) -> MutexGuard<'_, Table> {
    crate::sync::guard(&stripe.0)
}

/// The caller doing the work for a key. Dropping it without [`Leader::publish`] (cancellation,
/// panic) releases the followers to try again.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    id: FlightId,
    serial: u64,
    landed: bool,
}

impl Leader<'_> {
    /// Hands `outcome` to every follower. A caller arriving afterwards starts a new flight (and
    /// finds what the leader stored).
    pub(crate) fn publish(self, outcome: Handoff) {
        self.publish_with(|| outcome);
    }

    /// [`Leader::publish`], building the outcome only if someone follows.
    pub(crate) fn publish_with(mut self, outcome: impl FnOnce() -> Handoff) {
        self.landed = true;
        if let Some(tx) = self.flights.land(self.id, self.serial) {
            tx.send_replace(Some(outcome()));
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.landed {
            // Dropping the channel closes it: the followers try again.
            self.flights.land(self.id, self.serial);
        }
    }
}

/// A caller waiting for a leader.
pub(crate) struct Follower(watch::Receiver<Option<Handoff>>);

impl Follower {
    /// The leader's outcome, or `None` if the leader went away without one.
    pub(crate) async fn handoff(mut self) -> Option<Handoff> {
        match self.0.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_outcome_and_the_table_empties() {
        let flights = Flights::default();
        let Join::Lead(leader) = flights.join((1, 7)) else {
            panic!("first caller leads")
        };
        let Join::Follow(follower) = flights.join((1, 7)) else {
            panic!("second caller follows")
        };
        assert!(matches!(flights.join((1, 8)), Join::Lead(_)), "other key");
        leader.publish(Handoff::Absent);
        assert!(matches!(follower.handoff().await, Some(Handoff::Absent)));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let flights = Flights::default();
        let leader = flights.join((1, 7));
        let Join::Follow(follower) = flights.join((1, 7)) else {
            panic!("second caller follows")
        };
        drop(leader);
        assert!(follower.handoff().await.is_none());
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join((1, 7)), Join::Lead(_)));
    }

    #[tokio::test]
    async fn a_detached_flight_neither_serves_newcomers_nor_ends_its_successor() {
        let flights = Flights::default();
        let Join::Lead(old) = flights.join((1, 7)) else {
            panic!("first caller leads")
        };
        let Join::Follow(old_follower) = flights.join((1, 7)) else {
            panic!("second caller follows")
        };
        flights.detach((1, 7));
        assert!(old_follower.handoff().await.is_none(), "starts over");
        let Join::Lead(new) = flights.join((1, 7)) else {
            panic!("a call after the detach leads anew")
        };
        let Join::Follow(new_follower) = flights.join((1, 7)) else {
            panic!("and is followed")
        };
        old.publish(Handoff::RunYourself);
        assert_eq!(
            flights.len(),
            1,
            "the old leader did not end the new flight"
        );
        new.publish(Handoff::Absent);
        assert!(matches!(
            new_follower.handoff().await,
            Some(Handoff::Absent)
        ));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_batch_leads_what_is_free_follows_single_calls_and_may_await_older_batches() {
        let flights = Flights::default();
        let Join::Lead(single) = flights.join((1, 2)) else {
            panic!("a single call leads 2")
        };
        let first = flights.join_batch_all(&[(1, 1), (1, 2), (1, 17)]);
        assert!(matches!(first[0], BatchJoin::Lead(_)));
        assert!(
            matches!(first[1], BatchJoin::Follow(_)),
            "a single call's key"
        );
        assert!(matches!(first[2], BatchJoin::Lead(_)));
        let second = flights.join_batch_all(&[(1, 1), (1, 3)]);
        assert!(
            matches!(second[0], BatchJoin::Older(_)),
            "an older batch's key"
        );
        assert!(matches!(second[1], BatchJoin::Lead(_)));
        // A single call follows a batch's key.
        let Join::Follow(follower) = flights.join((1, 17)) else {
            panic!("follows the batch")
        };
        let mut leaders = Vec::new();
        for join in first.into_iter().chain(second) {
            if let BatchJoin::Lead(leader) = join {
                leaders.push(leader);
            }
        }
        let slots = flights.land_all(leaders);
        // Key 17 (a single call follows it) and key 1 (the younger batch may await it).
        assert_eq!(slots.iter().filter(|slot| slot.is_some()).count(), 2);
        for slot in slots.into_iter().flatten() {
            slot.send_replace(Some(Handoff::Absent));
        }
        assert!(matches!(follower.handoff().await, Some(Handoff::Absent)));
        single.publish(Handoff::Absent);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn detaching_a_function_leaves_the_others_in_flight() {
        let flights = Flights::default();
        let _a = flights.join((1, 7));
        let _b = flights.join((2, 7));
        flights.detach_all(Some(1));
        assert_eq!(flights.len(), 1);
        assert!(matches!(flights.join((2, 7)), Join::Follow(_)));
        flights.detach_all(None);
        assert_eq!(flights.len(), 0);
    }
}
